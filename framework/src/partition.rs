//! Tenant partitions: how `EVENTS` spreads tenants over a fixed number of partitions, and the
//! names and filters of a group's partition consumers.
//!
//! Apps publish to `events.<tenant>.<type>`. The `EVENTS` stream stores every event under a
//! marker token and its tenant's partition, computed by the server from the tenant alone (a
//! subject transform, [`SUBJECT_TRANSFORM_DESTINATION`]):
//!
//! ```text
//! published  events.acme.order.created
//! stored     events.~.15.acme.order.created      15 = FNV-1a-32("acme") mod 16
//! ```
//!
//! Each handler group binds one durable consumer per partition (`<group>~p00` ... `<group>~p15`)
//! and a worker serves them in turn, each with its own `max_ack_pending`. A tenant with a
//! backlog of 100 000 events fills its own partition; a tenant in another partition is served
//! at the next free handler slot. Two tenants share a partition with a probability of
//! 1 / [`PARTITIONS`]; within a partition events are served in stream order.
//!
//! The partition comes before the tenant so that a consumer's filter
//! (`events.~.<p>.*.<type>`) starts with literal tokens: the server finds a partition's events
//! without looking at every tenant's subjects (BENCHMARKS.md, "Subject layout"). The marker
//! `~` is never a tenant id, so a stored subject is never mistaken for one of the earlier
//! layouts: `events.<tenant>.<partition>.<type>` and, from before partitions,
//! `events.<tenant>.<type>` (see [`crate::layout`]).
//!
//! The number of consumers depends on the groups, never on the number of tenants:
//! `groups × PARTITIONS`.

use std::fmt;

use async_nats::jetstream::consumer::{PullConsumer, pull};

use crate::connection::Connection;
use crate::envelope::LANE_MARKER;
use crate::error::Error;
use crate::subject::split_dot;
use crate::topology::EVENTS_STREAM;

/// The number of partitions of `EVENTS`. Part of the wire contract: the stream's subject
/// transform and every worker use it.
pub const PARTITIONS: u32 = 16;

/// Source of the `EVENTS` subject transform: every published event subject.
pub const SUBJECT_TRANSFORM_SOURCE: &str = "events.*.>";

/// The second token of every stored event subject, before its partition:
/// `events.~.<partition>.<tenant>.<type>`. Tenant ids are `[A-Za-z0-9_-]`, so no published
/// subject (and no subject of an earlier layout) has it there.
pub const STORED_MARKER: &str = "~";

/// Destination of the `EVENTS` subject transform: the marker, the partition of the tenant
/// token, the tenant, then the rest of the subject.
pub const SUBJECT_TRANSFORM_DESTINATION: &str = "events.~.{{partition(16,1)}}.{{wildcard(1)}}.>";

/// The partition of `tenant`, as the server computes it: FNV-1a (32 bit) of the tenant id,
/// modulo [`PARTITIONS`].
///
/// ```
/// assert_eq!(conveyor::partition::partition_of("acme"), 15);
/// assert_eq!(conveyor::partition::partition_of("globex"), 14);
/// ```
pub fn partition_of(tenant: &str) -> u32 {
    // The server's `{{partition(n,1)}}` (subject_transform.go, getHashPartition): FNV-1a 32
    // over the token's bytes. Reproduced here for tests and tools; no crate needed for 4 lines.
    let mut hash: u32 = 0x811c_9dc5;
    for b in tenant.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % PARTITIONS
}

/// The separator between a group's name and its partition in consumer names. Group names are
/// `[A-Za-z0-9_-]`, so no group name can be mistaken for a partition consumer.
const CONSUMER_SEPARATOR: &str = "~p";

/// The durable consumer of `group` for `partition`: `<group>~p<NN>`.
///
/// ```
/// assert_eq!(conveyor::partition::consumer_name("billing", 3), "billing~p03");
/// ```
pub fn consumer_name(group: &str, partition: u32) -> String {
    format!("{group}{CONSUMER_SEPARATOR}{partition:02}")
}

/// Every consumer of `group`, partition 0 first.
pub fn consumer_names(group: &str) -> impl Iterator<Item = String> + '_ {
    (0..PARTITIONS).map(move |p| consumer_name(group, p))
}

/// The group and partition of a consumer name; a name without a partition suffix (a group's
/// consumer from before partitions) is the group itself, with no partition.
///
/// ```
/// use conveyor::partition::group_of_consumer;
/// assert_eq!(group_of_consumer("billing~p03"), ("billing", Some(3)));
/// assert_eq!(group_of_consumer("billing"), ("billing", None));
/// ```
pub fn group_of_consumer(name: &str) -> (&str, Option<u32>) {
    if let Some((group, p)) = name.rsplit_once(CONSUMER_SEPARATOR)
        && !group.is_empty()
        && p.len() == 2
        && let Ok(p) = p.parse::<u32>()
        && p < PARTITIONS
    {
        return (group, Some(p));
    }
    (name, None)
}

/// The filter subjects of a group's consumer for `partition`: one per event type, on `lane`
/// (`None`: the default lane), `events.~.<p>.*.<type>[.~<lane>]`. While the stream may hold
/// events of an earlier layout, [`crate::layout::earlier_filters`] are added.
///
/// ```
/// assert_eq!(
///     conveyor::partition::filter_subjects(["order.created"], None, 3),
///     ["events.~.3.*.order.created"]
/// );
/// ```
pub fn filter_subjects<'a>(
    event_types: impl IntoIterator<Item = &'a str>,
    lane: Option<&str>,
    partition: u32,
) -> Vec<String> {
    let lane = lane_suffix(lane);
    let mut filters: Vec<String> = event_types
        .into_iter()
        .map(|t| format!("events.{STORED_MARKER}.{partition}.*.{t}{lane}"))
        .collect();
    filters.sort();
    filters
}

/// The last token of a filter on `lane` (`.~<lane>`), empty for the default lane.
pub(crate) fn lane_suffix(lane: Option<&str>) -> String {
    lane.map(|l| format!(".{LANE_MARKER}{l}"))
        .unwrap_or_default()
}

/// The filter of the stored events of `tenant` (`None`: every tenant) and `event_type` (`None`:
/// every type), on the default lane when a type is given.
///
/// ```
/// use conveyor::partition::stored_filter;
/// assert_eq!(stored_filter(Some("acme"), None), "events.~.15.acme.>");
/// assert_eq!(stored_filter(None, Some("order.created")), "events.~.*.*.order.created");
/// assert_eq!(stored_filter(None, None), "events.~.>");
/// ```
pub fn stored_filter(tenant: Option<&str>, event_type: Option<&str>) -> String {
    match (tenant, event_type) {
        (Some(t), ty) => format!(
            "events.{STORED_MARKER}.{}.{t}.{}",
            partition_of(t),
            ty.unwrap_or(">")
        ),
        (None, Some(ty)) => format!("events.{STORED_MARKER}.*.*.{ty}"),
        (None, None) => format!("events.{STORED_MARKER}.>"),
    }
}

/// The published form of a stored event subject: the marker and partition removed
/// (`events.~.15.acme.order.created` → `events.acme.order.created`, and the earlier
/// `events.acme.15.order.created` likewise); other subjects unchanged.
pub fn published_subject(stored: &str) -> std::borrow::Cow<'_, str> {
    match split_stored(stored) {
        Some(s) if s.partition.is_some() => {
            std::borrow::Cow::Owned(format!("events.{}.{}", s.tenant, s.rest))
        }
        _ => std::borrow::Cow::Borrowed(stored),
    }
}

/// True for a subject or filter in the stored form `events.~. ...`, false for the published
/// form and the earlier layouts.
pub fn is_stored_form(subject: &str) -> bool {
    subject
        .strip_prefix("events.")
        .and_then(|rest| rest.strip_prefix(STORED_MARKER))
        .is_some_and(|rest| rest.starts_with('.'))
}

/// An event subject taken apart: tenant, partition (if it has one) and what follows (the type
/// and lane token). No token is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredSubject<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) partition: Option<u32>,
    pub(crate) rest: &'a str,
}

/// Splits an event subject of any layout: stored (`events.~.<p>.<tenant>.<rest>`), the
/// earlier `events.<tenant>.<p>.<rest>` or published (`events.<tenant>.<rest>`); `None` when
/// it is not an event subject. Event types start with a letter, so a numeric token after the
/// tenant is a partition.
pub(crate) fn split_stored(subject: &str) -> Option<StoredSubject<'_>> {
    let rest = subject.strip_prefix("events.")?;
    let (first, rest) = split_dot(rest)?;
    let partition_of_token = |t: &str| {
        (!t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    let split = if first == STORED_MARKER {
        let (p, rest) = split_dot(rest)?;
        let (tenant, rest) = split_dot(rest)?;
        StoredSubject {
            tenant,
            partition: Some(partition_of_token(p)?),
            rest,
        }
    } else {
        match split_dot(rest) {
            Some((p, tail)) if partition_of_token(p).is_some() => StoredSubject {
                tenant: first,
                partition: partition_of_token(p),
                rest: tail,
            },
            _ => StoredSubject {
                tenant: first,
                partition: None,
                rest,
            },
        }
    };
    (!split.tenant.is_empty() && !split.rest.is_empty()).then_some(split)
}

/// A group's consumer counts, summed over its partition consumers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Events not yet delivered.
    pub pending: u64,
    /// Deliveries without an ack.
    pub ack_pending: u64,
    /// Deliveries that are redeliveries.
    pub redelivered: u64,
    /// Outstanding pull requests.
    pub waiting: u64,
    /// Partition consumers that exist.
    pub consumers: u32,
}

/// Why a group's counts could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CountsErrorKind {
    /// None of the group's partition consumers exists.
    NotFound,
    /// The server did not answer.
    Unavailable,
}

impl fmt::Display for CountsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "group not found",
            Self::Unavailable => "jetstream unavailable",
        })
    }
}

/// A group's counts that could not be read.
pub type CountsError = Error<CountsErrorKind>;

/// Reads the counts of every partition consumer of `group` (one consumer-info request each;
/// needs only `$JS.API.CONSUMER.INFO.EVENTS.<consumer>`) and sums them.
pub async fn group_counts(conn: &Connection, group: &str) -> Result<GroupCounts, CountsError> {
    let js = conn.jetstream();
    let reads = consumer_names(group).map(|name| {
        let js = js.clone();
        async move {
            js.get_consumer_from_stream::<pull::Config, _, _>(name, EVENTS_STREAM)
                .await
                .map(|c: PullConsumer| c.cached_info().clone())
        }
    });
    let mut counts = GroupCounts::default();
    let mut last_error = None;
    for read in futures::future::join_all(reads).await {
        match read {
            Ok(info) => {
                counts.consumers += 1;
                counts.pending += info.num_pending;
                counts.ack_pending += info.num_ack_pending as u64;
                counts.redelivered += info.num_redelivered as u64;
                counts.waiting += info.num_waiting as u64;
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) if counts.consumers == 0 => {
            let kind = if matches!(e.kind(), async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j) if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND)
            {
                CountsErrorKind::NotFound
            } else {
                CountsErrorKind::Unavailable
            };
            Err(Error::with_source(
                kind,
                format!("cannot read the consumers of group {group:?}"),
                e,
            ))
        }
        _ => Ok(counts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transform_uses_the_partition_count() {
        assert!(
            SUBJECT_TRANSFORM_DESTINATION.contains(&format!("{{{{partition({PARTITIONS},1)}}}}"))
        );
    }

    #[test]
    fn partition_names_and_filters() {
        assert_eq!(consumer_names("g").count(), PARTITIONS as usize);
        assert_eq!(group_of_consumer("a~p~p15"), ("a~p", Some(15)));
        assert_eq!(group_of_consumer("a~p16"), ("a~p16", None));
        assert_eq!(group_of_consumer("~p01"), ("~p01", None));
        assert_eq!(
            filter_subjects(["order.created"], None, 3),
            vec!["events.~.3.*.order.created"]
        );
        assert_eq!(
            filter_subjects(["b.x", "a.x"], Some("high"), 0),
            vec!["events.~.0.*.a.x.~high", "events.~.0.*.b.x.~high"]
        );
    }

    #[test]
    fn stored_subjects() {
        for stored in [
            "events.~.15.acme.order.created",
            "events.acme.15.order.created",
            "events.acme.order.created",
        ] {
            assert_eq!(published_subject(stored), "events.acme.order.created");
        }
        let split = |s| split_stored(s).map(|s| (s.tenant, s.partition, s.rest));
        assert_eq!(
            split("events.~.7.acme.a.~high"),
            Some(("acme", Some(7), "a.~high"))
        );
        assert_eq!(split("events.acme.7.a"), Some(("acme", Some(7), "a")));
        assert_eq!(split("events.7.a"), Some(("7", None, "a")));
        // A numeric tenant in the stored form is the tenant, not a partition.
        assert_eq!(split("events.~.3.42.a"), Some(("42", Some(3), "a")));
        assert_eq!(split("events.~.x.acme.a"), None);
        assert_eq!(split("events.~.7.acme"), None);
        assert_eq!(split("events.acme"), None);
        assert_eq!(split("dlq.acme.7.x"), None);
        assert!(is_stored_form("events.~.7.acme.a"));
        assert!(!is_stored_form("events.acme.7.a"));
        assert!(!is_stored_form("events.~x.7.a"));
    }
}
