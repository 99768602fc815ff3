//! Each tenant's backlog in each group: its events a group has not been delivered yet.
//!
//! A group's partition consumer knows its backlog (`num_pending`) but not whose it is. The
//! server counts a tenant's share when asked for a consumer on the tenant's subjects alone: for
//! each group whose consumer on the tenant's partition has a backlog, a short-lived consumer is
//! created with the group's filters narrowed to the tenant, starting after the last event the
//! group was delivered, and its `num_pending` is read at once (it is deleted right after, and
//! expires by itself otherwise). Nothing is read from the stream: the server answers from its
//! per-subject index. A tenant whose partition has no backlog costs no request.
//!
//! ```no_run
//! # async fn run(conn: &conveyor::Connection) -> Result<(), conveyor::status::StatusError> {
//! let acme = conveyor::TenantId::parse("acme").expect("valid");
//! for b in conveyor::status::tenant_backlogs(conn, &[acme]).await? {
//!     println!("{} in {}: {:?} waiting", b.tenant, b.group, b.pending);
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{StatusError, unavailable};
use crate::connection::Connection;
use crate::partition::{STORED_MARKER, group_of_consumer, partition_of};
use crate::tenant::TenantId;
use crate::topology::EVENTS_STREAM;

/// The most tenant and group pairs counted in one call; pairs beyond it are returned with
/// `pending: None` (narrow the tenants to count them).
pub const MAX_BACKLOG_LOOKUPS: usize = 256;

/// How many counts are asked at once.
const CONCURRENT_LOOKUPS: usize = 8;

/// One tenant's backlog in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantBacklog {
    /// The tenant.
    pub tenant: String,
    /// The group.
    pub group: String,
    /// The tenant's events the group has not been delivered yet; `None` when it was not
    /// counted (more than [`MAX_BACKLOG_LOOKUPS`] pairs had a backlog).
    pub pending: Option<u64>,
}

/// What is needed of a group consumer to count a tenant's share of its backlog.
struct GroupConsumer {
    group: String,
    partition: Option<u32>,
    filters: Vec<String>,
    /// The last stream sequence it delivered.
    delivered: u64,
    pending: u64,
}

/// One count to ask the server for.
struct Lookup {
    tenant: String,
    group: String,
    /// The group consumer's next stream sequence.
    start: u64,
    /// The group consumer's whole backlog.
    at_most: u64,
    filters: Vec<String>,
}

/// Each of `tenants`' backlog in each group that has one for it (pairs without a backlog are
/// left out). See the module for how it is counted.
pub async fn tenant_backlogs(
    conn: &Connection,
    tenants: &[TenantId],
) -> Result<Vec<TenantBacklog>, StatusError> {
    let stream = conn
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read EVENTS".into(), e))?;
    let consumers: Vec<GroupConsumer> = stream
        .consumers()
        .map_err(|e| unavailable("cannot list the consumers".into(), e))
        .try_filter_map(|info| async move {
            // Ephemeral consumers (a `conveyor tail`, another count) are no groups.
            if info.config.durable_name.is_none() || info.num_pending == 0 {
                return Ok(None);
            }
            let (group, partition) = group_of_consumer(&info.name);
            let mut filters = info.config.filter_subjects.clone();
            if !info.config.filter_subject.is_empty() {
                filters.push(info.config.filter_subject.clone());
            }
            Ok(Some(GroupConsumer {
                group: group.to_owned(),
                partition,
                filters,
                delivered: info.delivered.stream_sequence,
                pending: info.num_pending,
            }))
        })
        .try_collect()
        .await?;
    let mut lookups = Vec::new();
    for tenant in tenants {
        let p = partition_of(tenant.as_str());
        for c in consumers
            .iter()
            .filter(|c| c.partition.is_none_or(|cp| cp == p))
        {
            let filters = narrowed(&c.filters, tenant.as_str());
            if !filters.is_empty() {
                lookups.push(Lookup {
                    tenant: tenant.as_str().to_owned(),
                    group: c.group.clone(),
                    start: c.delivered + 1,
                    at_most: c.pending,
                    filters,
                });
            }
        }
    }
    let stream = &stream;
    let mut counted: Vec<TenantBacklog> = futures::stream::iter(lookups.into_iter().enumerate())
        .map(|(i, lookup)| async move {
            let pending = if i < MAX_BACKLOG_LOOKUPS {
                Some(count(stream, &lookup).await?)
            } else {
                None
            };
            Ok::<_, StatusError>(TenantBacklog {
                tenant: lookup.tenant,
                group: lookup.group,
                pending,
            })
        })
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .try_filter(|b| std::future::ready(b.pending != Some(0)))
        .try_collect()
        .await?;
    // A group with one consumer per lane and partition is summed per tenant.
    counted.sort_by(|a, b| (&a.tenant, &a.group).cmp(&(&b.tenant, &b.group)));
    counted.dedup_by(|later, first| {
        let same = later.tenant == first.tenant && later.group == first.group;
        if same {
            first.pending = first.pending.zip(later.pending).map(|(a, b)| a + b);
        }
        same
    });
    Ok(counted)
}

/// The tenant's events among a group consumer's backlog: the server's `num_pending` of a
/// consumer on the same filters narrowed to the tenant, from the group's next sequence.
async fn count(
    stream: &async_nats::jetstream::stream::Stream,
    lookup: &Lookup,
) -> Result<u64, StatusError> {
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subjects: lookup.filters.clone(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: lookup.start,
            },
            ack_policy: AckPolicy::None,
            memory_storage: true,
            // Deleted below; this removes it should the delete not arrive.
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot count the backlog of {}", lookup.group), e))?;
    let info = consumer.cached_info();
    let pending = info.num_pending.min(lookup.at_most);
    if let Err(e) = stream.delete_consumer(&info.name).await {
        tracing::debug!(error = %e, "backlog count consumer left to expire");
    }
    Ok(pending)
}

/// A group consumer's filters narrowed to one tenant: the tenant token (`*`) replaced by the
/// tenant, filters for another tenant dropped, `events.>` (or no filter) made the tenant's
/// subjects in every layout.
fn narrowed(filters: &[String], tenant: &str) -> Vec<String> {
    let all = || {
        let p = partition_of(tenant);
        vec![
            format!("events.{STORED_MARKER}.{p}.{tenant}.>"),
            format!("events.{tenant}.>"),
        ]
    };
    if filters.is_empty() {
        return all();
    }
    let mut narrowed: Vec<String> = Vec::new();
    for f in filters {
        let Some(rest) = f.strip_prefix("events.") else {
            continue;
        };
        // The stored layout puts a marker and the partition before the tenant.
        let (head, rest) = match rest
            .strip_prefix(STORED_MARKER)
            .and_then(|r| r.strip_prefix('.'))
        {
            Some(r) => match r.split_once('.') {
                Some((p, r)) => (format!("events.{STORED_MARKER}.{p}."), r),
                None => continue,
            },
            None => ("events.".to_owned(), rest),
        };
        let (token, tail) = rest.split_once('.').unwrap_or((rest, ""));
        match token {
            ">" if head == "events." => narrowed.extend(all()),
            "*" if !tail.is_empty() => narrowed.push(format!("{head}{tenant}.{tail}")),
            t if t == tenant && !tail.is_empty() => narrowed.push(f.clone()),
            _ => {}
        }
    }
    narrowed
}

#[cfg(test)]
mod tests {
    use super::narrowed;

    #[test]
    fn filters_are_narrowed_to_the_tenant() {
        let filters = [
            "events.~.15.*.order.created".to_owned(),
            "events.~.15.globex.order.created".to_owned(),
            "events.*.15.order.created".to_owned(),
            "events.*.order.created.~bulk".to_owned(),
            "events.globex.15.invoice.paid".to_owned(),
            "events.acme.15.invoice.paid".to_owned(),
            "other.*.x".to_owned(),
        ];
        assert_eq!(
            narrowed(&filters, "acme"),
            [
                "events.~.15.acme.order.created",
                "events.acme.15.order.created",
                "events.acme.order.created.~bulk",
                "events.acme.15.invoice.paid",
            ]
        );
        let all = ["events.~.15.acme.>", "events.acme.>"];
        assert_eq!(narrowed(&["events.>".to_owned()], "acme"), all);
        assert_eq!(narrowed(&[], "acme"), all);
        assert!(narrowed(&["events.*".to_owned()], "acme").is_empty());
    }
}
