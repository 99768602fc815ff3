//! Tenant partitions: how `EVENTS` spreads tenants over a fixed number of partitions, and the
//! names and filters of a group's partition consumers.
//!
//! Apps publish to `events.<tenant>.<type>`. The `EVENTS` stream stores every event with a
//! partition token after the tenant, computed by the server from the tenant alone (a subject
//! transform, [`SUBJECT_TRANSFORM_DESTINATION`]):
//!
//! ```text
//! published  events.acme.order.created
//! stored     events.acme.15.order.created      15 = FNV-1a-32("acme") mod 16
//! ```
//!
//! Each handler group binds one durable consumer per partition (`<group>~p00` ... `<group>~p15`)
//! and a worker serves them in turn, each with its own `max_ack_pending`. A tenant with a
//! backlog of 100 000 events fills its own partition; a tenant in another partition is served
//! at the next free handler slot. Two tenants share a partition with a probability of
//! 1 / [`PARTITIONS`]; within a partition events are served in stream order.
//!
//! The number of consumers depends on the groups, never on the number of tenants:
//! `groups × PARTITIONS`.

use std::fmt;

use async_nats::jetstream::consumer::{PullConsumer, pull};

use crate::connection::Connection;
use crate::envelope::LANE_MARKER;
use crate::error::Error;
use crate::topology::EVENTS_STREAM;

/// The number of partitions of `EVENTS`. Part of the wire contract: the stream's subject
/// transform and every worker use it.
pub const PARTITIONS: u32 = 16;

/// Source of the `EVENTS` subject transform: every published event subject.
pub const SUBJECT_TRANSFORM_SOURCE: &str = "events.*.>";

/// Destination of the `EVENTS` subject transform: the tenant token, then its partition, then
/// the rest of the subject.
pub const SUBJECT_TRANSFORM_DESTINATION: &str = "events.{{wildcard(1)}}.{{partition(16,1)}}.>";

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
/// (`None`: the default lane). Partition 0 also takes the unpartitioned form
/// `events.*.<type>`: events stored before the stream had its transform (or by a stream
/// provisioned without it) are still handled, by partition 0. Event types start with a letter,
/// so the two forms never match each other's subjects.
pub fn filter_subjects<'a>(
    event_types: impl IntoIterator<Item = &'a str>,
    lane: Option<&str>,
    partition: u32,
) -> Vec<String> {
    let lane = lane.map(|l| format!(".{LANE_MARKER}{l}"));
    let lane = lane.as_deref().unwrap_or("");
    let mut filters = Vec::new();
    for t in event_types {
        filters.push(format!("events.*.{partition}.{t}{lane}"));
        if partition == 0 {
            filters.push(format!("events.*.{t}{lane}"));
        }
    }
    filters.sort();
    filters
}

/// The published form of a stored event subject: the partition token removed
/// (`events.acme.15.order.created` → `events.acme.order.created`); other subjects unchanged.
pub fn published_subject(stored: &str) -> std::borrow::Cow<'_, str> {
    match split_partition(stored) {
        Some((head, _, tail)) => std::borrow::Cow::Owned(format!("{head}.{tail}")),
        None => std::borrow::Cow::Borrowed(stored),
    }
}

/// Splits a stored subject `events.<tenant>.<partition>.<rest>` into `events.<tenant>`, the
/// partition and `<rest>`; `None` for a subject without a partition token.
pub(crate) fn split_partition(subject: &str) -> Option<(&str, u32, &str)> {
    let rest = subject.strip_prefix("events.")?;
    let (tenant, rest) = rest.split_once('.')?;
    let (token, tail) = rest.split_once('.')?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) || tail.is_empty() {
        return None;
    }
    let p = token.parse().ok()?;
    Some((&subject[..7 + tenant.len()], p, tail))
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
            vec!["events.*.3.order.created"]
        );
        assert_eq!(
            filter_subjects(["b.x", "a.x"], Some("high"), 0),
            vec![
                "events.*.0.a.x.~high",
                "events.*.0.b.x.~high",
                "events.*.a.x.~high",
                "events.*.b.x.~high"
            ]
        );
    }

    #[test]
    fn stored_subjects() {
        assert_eq!(
            published_subject("events.acme.15.order.created"),
            "events.acme.order.created"
        );
        assert_eq!(
            published_subject("events.acme.order.created"),
            "events.acme.order.created"
        );
        assert_eq!(
            split_partition("events.acme.7.a.~high"),
            Some(("events.acme", 7, "a.~high"))
        );
        assert_eq!(split_partition("events.acme.7"), None);
        assert_eq!(split_partition("dlq.acme.7.x"), None);
    }
}
