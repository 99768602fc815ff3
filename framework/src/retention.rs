//! Work that retention limits removed: events a group had not handled when `EVENTS` dropped them
//! (its `max_age` or `max_bytes`), and dead letters `DLQ` dropped.
//!
//! `EVENTS` uses Limits retention: every group reads the same stream, and the oldest events go
//! when a limit is reached whether or not every group has handled them. The server keeps no
//! count of what it removed and does not say which group had not handled it, so the count is
//! taken by sampling ([`sample`]): for each group's consumer, a mark of where it was (last
//! delivered sequence, events pending after it, the stream's last sequence). When the stream's
//! first sequence later passes a mark that had pending events, the events of the consumer's
//! filter still present between the mark and its last sequence are counted (short-lived
//! consumers); the pending events no longer present, less those the consumer delivered since
//! the mark, were removed unhandled. Events published after one sample and removed before the
//! next cannot be counted: the count is then marked "at least". The scheduler's leader samples every few seconds and `conveyor status` samples
//! too; totals and marks live in the `conveyor_retention` bucket, so any process can continue
//! where another left off.
//!
//! Dead letters need no sampling: every message of `DLQ` is a letter, so the letters removed by
//! its limits are those stored (its last sequence) minus those still there minus those that
//! [`crate::dlq::replay`] and [`crate::dlq::purge`] deleted (counted in the same bucket).
//!
//! ```no_run
//! # async fn run(conn: conveyor::Connection) -> Result<(), conveyor::retention::RetentionError> {
//! let report = conveyor::retention::sample(&conn).await?;
//! for g in &report.groups {
//!     if g.removed > 0 {
//!         println!("{}: {}{} events removed unhandled", g.group, if g.at_least { "at least " } else { "" }, g.removed);
//!     }
//! }
//! println!("{} dead letters removed by DLQ limits", report.dead_letters_removed);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::error::Error;
use crate::kvwatch::Bucket;
use crate::topology::{DLQ_STREAM, EVENTS_STREAM};

/// The bucket holding each group's marks and totals, and the count of deleted dead letters.
pub const RETENTION_BUCKET: &str = "conveyor_retention";

pub(crate) const BUCKET: Bucket = Bucket {
    name: RETENTION_BUCKET,
    description: "Conveyor work removed by retention limits",
    max_age: Duration::ZERO,
};

const DLQ_KEY: &str = "dlq";

/// Why sampling or reading the counts failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetentionErrorKind {
    /// A stream, consumer or the bucket could not be read or written (server unreachable,
    /// missing permission, stream not provisioned).
    Unavailable,
}

impl fmt::Display for RetentionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "retention counts unavailable",
        })
    }
}

/// A failed sampling or reading of the retention counts.
pub type RetentionError = Error<RetentionErrorKind>;

fn unavailable(
    what: &str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> RetentionError {
    Error::with_source(RetentionErrorKind::Unavailable, what.to_owned(), e)
}

/// Events of one group that `EVENTS` removed before the group handled them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRemoval {
    /// The group.
    pub group: String,
    /// How many, counted since the group's consumers were first sampled.
    pub removed: u64,
    /// True when some removal could not be counted (events published and removed between two
    /// samples): the group lost at least `removed` events.
    pub at_least: bool,
}

/// What retention limits removed, per group, and from the dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Every group with consumers on `EVENTS`, by name.
    pub groups: Vec<GroupRemoval>,
    /// Dead letters removed by `DLQ`'s `max_age` or `max_bytes` (not by a replay or a purge).
    pub dead_letters_removed: u64,
}

/// Where one consumer was at the last sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    /// Stream sequence of the last event delivered to it.
    delivered: u64,
    /// Events of its filter after `delivered`, up to `last`.
    pending: u64,
    /// The stream's last sequence when the mark was taken.
    last: u64,
    /// Deliveries the consumer had made (its consumer sequence).
    #[serde(default)]
    deliveries: u64,
}

/// One group's entry in the bucket (`events.<group>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct GroupEntry {
    removed: u64,
    at_least: bool,
    consumers: BTreeMap<String, Mark>,
}

/// The dead-letter entry (`dlq`): letters deleted on purpose, for the `DLQ` created at `created`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DlqEntry {
    deleted: u64,
    created: String,
}

fn group_key(group: &str) -> String {
    format!("events.{group}")
}

/// Samples every group's consumers against `EVENTS`, adds what was removed since the last
/// sample to the stored totals, stores the new marks, and returns the totals. Safe to run from
/// several processes at once: a group another process sampled meanwhile is left to it.
pub async fn sample(conn: &Connection) -> Result<RetentionReport, RetentionError> {
    collect(conn, true).await
}

/// The stored totals, without sampling (what the last [`sample`] found).
pub async fn report(conn: &Connection) -> Result<RetentionReport, RetentionError> {
    collect(conn, false).await
}

async fn collect(conn: &Connection, sampling: bool) -> Result<RetentionReport, RetentionError> {
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the retention bucket", e))?;
    let js = conn.jetstream();
    let events = js
        .get_stream_no_info(EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read the EVENTS stream", e))?;
    // Consumers first, the stream after: events published in between are in neither the marks'
    // pending counts nor (being above their `last`) the counts of the next sample's check, so
    // the count errs low, never high.
    let mut by_group: BTreeMap<String, Vec<pull::Config>> = BTreeMap::new();
    let mut infos: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut list = events.consumers();
    while let Some(info) = list.next().await {
        let info = info.map_err(|e| unavailable("cannot list the EVENTS consumers", e))?;
        // Ephemeral consumers (a `conveyor tail`, a listing, this module's counts) are no groups.
        if info.config.durable_name.is_none() {
            continue;
        }
        let (group, _) = crate::partition::group_of_consumer(&info.name);
        infos.insert(
            info.name.clone(),
            (
                info.delivered.stream_sequence,
                info.num_pending,
                info.delivered.consumer_sequence,
            ),
        );
        by_group
            .entry(group.to_owned())
            .or_default()
            .push(pull::Config {
                durable_name: Some(info.name.clone()),
                filter_subject: info.config.filter_subject.clone(),
                filter_subjects: info.config.filter_subjects.clone(),
                ..Default::default()
            });
    }
    let state = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read the EVENTS stream", e))?
        .cached_info()
        .state
        .clone();
    let mut report = RetentionReport::default();
    for (group, consumers) in by_group {
        let key = group_key(&group);
        let entry = store
            .entry(&key)
            .await
            .map_err(|e| unavailable("cannot read the retention bucket", e))?;
        let (mut stored, revision) = match &entry {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice::<GroupEntry>(&e.value).unwrap_or_default(),
                Some(e.revision),
            ),
            Some(e) => (GroupEntry::default(), Some(e.revision)),
            None => (GroupEntry::default(), None),
        };
        if sampling {
            let mut next = stored.clone();
            next.consumers.clear();
            for config in consumers {
                let name = config.durable_name.clone().unwrap_or_default();
                let Some(&(delivered, pending, deliveries)) = infos.get(&name) else {
                    continue;
                };
                let now = Mark {
                    delivered,
                    pending,
                    last: state.last_sequence,
                    deliveries,
                };
                if let Some(mark) = stored.consumers.get(&name) {
                    let (removed, uncounted) =
                        removed_since(&events, &config, mark, &now, state.first_sequence).await?;
                    next.removed += removed;
                    next.at_least |= uncounted;
                    if removed > 0 {
                        tracing::warn!(
                            %group, consumer = %name, removed,
                            "EVENTS removed events this group had not handled (retention limits)"
                        );
                    }
                }
                next.consumers.insert(name, now);
            }
            let body = serde_json::to_vec(&next).unwrap_or_default();
            let written = match revision {
                Some(r) => store
                    .update(&key, body.into(), r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => store
                    .create(&key, body.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => stored = next,
                // Another process sampled this group meanwhile: its totals stand.
                Err(e) => tracing::debug!(%group, error = %e, "retention sample not stored"),
            }
        }
        report.groups.push(GroupRemoval {
            group,
            removed: stored.removed,
            at_least: stored.at_least,
        });
    }
    report.dead_letters_removed = dead_letters_removed(conn, &store).await?;
    Ok(report)
}

/// Events of `consumer`'s filter that were pending at `mark` and were removed, now that the
/// stream starts at `first`, without being delivered; and whether events published after the
/// mark may have gone uncounted.
///
/// Of the events pending at the mark, those no longer stored are gone; some of them may have
/// been delivered (and handled) before they went. The consumer delivers in stream order, so its
/// first deliveries since the mark went to the oldest events first: the deliveries since the
/// mark, less those of events still stored up to its current position, were deliveries of the
/// gone ones. (A redelivery is taken for a first delivery, so the count errs low.)
async fn removed_since(
    events: &Stream<()>,
    consumer: &pull::Config,
    mark: &Mark,
    now: &Mark,
    first: u64,
) -> Result<(u64, bool), RetentionError> {
    // Everything after the mark's last sequence, and maybe some of the group's, was removed.
    let uncounted = first > mark.last.saturating_add(1);
    if mark.pending == 0 || first <= mark.delivered.saturating_add(1) {
        return Ok((0, uncounted));
    }
    let from_first = count_from(events, consumer, first).await?;
    let after_mark = count_from(events, consumer, mark.last + 1).await?;
    let gone = mark
        .pending
        .saturating_sub(from_first.saturating_sub(after_mark));
    if gone == 0 {
        return Ok((0, uncounted));
    }
    let delivered_since = now.deliveries.saturating_sub(mark.deliveries);
    let delivered_stored = if now.delivered >= first && delivered_since > 0 {
        from_first.saturating_sub(count_from(events, consumer, now.delivered + 1).await?)
    } else {
        0
    };
    let delivered_gone = delivered_since.saturating_sub(delivered_stored);
    Ok((gone.saturating_sub(delivered_gone), uncounted))
}

/// Events of `consumer`'s filter stored from sequence `start` on, read from a short-lived
/// consumer's pending count.
async fn count_from(
    events: &Stream<()>,
    consumer: &pull::Config,
    start: u64,
) -> Result<u64, RetentionError> {
    let counter = events
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ack_policy: AckPolicy::None,
            filter_subject: consumer.filter_subject.clone(),
            filter_subjects: consumer.filter_subjects.clone(),
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("cannot count the events of a consumer", e))?;
    let n = counter.cached_info().num_pending;
    if let Err(e) = events.delete_consumer(&counter.cached_info().name).await {
        tracing::debug!(error = %e, "counting consumer not deleted; it expires by itself");
    }
    Ok(n)
}

async fn dlq_entry(store: &kv::Store) -> Result<(DlqEntry, Option<u64>), RetentionError> {
    let entry = store
        .entry(DLQ_KEY)
        .await
        .map_err(|e| unavailable("cannot read the retention bucket", e))?;
    Ok(match entry {
        Some(e) if e.operation == kv::Operation::Put => (
            serde_json::from_slice(&e.value).unwrap_or_default(),
            Some(e.revision),
        ),
        Some(e) => (DlqEntry::default(), Some(e.revision)),
        None => (DlqEntry::default(), None),
    })
}

async fn dead_letters_removed(conn: &Connection, store: &kv::Store) -> Result<u64, RetentionError> {
    let dlq = conn
        .jetstream()
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| unavailable("cannot read the DLQ stream", e))?;
    let info = dlq.cached_info();
    let (entry, _) = dlq_entry(store).await?;
    // Deletions counted for an earlier DLQ (deleted and created again) do not apply.
    let deleted = if entry.created == info.created.to_string() {
        entry.deleted
    } else {
        0
    };
    Ok(info
        .state
        .last_sequence
        .saturating_sub(info.state.messages)
        .saturating_sub(deleted))
}

/// Counts `n` dead letters deleted on purpose (replayed or purged), so they are not taken for
/// letters the `DLQ` limits removed.
pub(crate) async fn count_deleted_letters(conn: &Connection, n: u64) -> Result<(), RetentionError> {
    if n == 0 {
        return Ok(());
    }
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the retention bucket", e))?;
    let created = conn
        .jetstream()
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| unavailable("cannot read the DLQ stream", e))?
        .cached_info()
        .created
        .to_string();
    let mut attempt = 0;
    loop {
        crate::kvwatch::contention_pause(attempt).await;
        let (mut entry, revision) = dlq_entry(&store).await?;
        if entry.created != created {
            entry = DlqEntry {
                deleted: 0,
                created: created.clone(),
            };
        }
        entry.deleted += n;
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        let written = match revision {
            Some(r) => store
                .update(DLQ_KEY, body.into(), r)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => store
                .create(DLQ_KEY, body.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        match written {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= 8 => {
                return Err(unavailable("cannot count deleted dead letters", e));
            }
            Err(_) => attempt += 1,
        }
    }
}
