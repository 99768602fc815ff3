//! Reading the run history: the latest record of each attempt in a part of `HISTORY`.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{HISTORY_STREAM, HistoryError, HistoryErrorKind, RunRecord, decode_batch, unavailable};
use crate::connection::Connection;
use crate::error::Error;
use crate::subject::history_shard;

/// Messages asked for per pull (each holds up to a few hundred records).
const PULL_BATCH: usize = 64;

/// Which part of the history to read.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Scan<'a> {
    /// Only this group's subjects.
    pub(super) group: Option<&'a str>,
    /// Only the shard of this event id.
    pub(super) event_id: Option<&'a str>,
    /// Only messages stored at or after this time.
    pub(super) since: Option<DateTime<Utc>>,
}

impl Scan<'_> {
    fn filter_subject(&self) -> String {
        let shard = self
            .event_id
            .map_or_else(|| "*".to_owned(), |id| format!("{:02}", history_shard(id)));
        format!("history.{}.{shard}", self.group.unwrap_or("*"))
    }
}

/// Every recorded attempt at `event_id`, in every group, ordered by group and attempt.
pub async fn runs_of_event(
    conn: &Connection,
    event_id: &str,
) -> Result<Vec<RunRecord>, HistoryError> {
    let scan = Scan {
        event_id: Some(event_id),
        ..Scan::default()
    };
    let mut runs = read(conn, scan, |r| r.event_id == event_id).await?;
    runs.sort_by(|a, b| (&a.group, a.attempt).cmp(&(&b.group, b.attempt)));
    Ok(runs)
}

/// The events of `group` (and `tenant`, if given) whose latest attempt failed (`retrying` or
/// `dead_lettered`), newest first, at most `limit`. Reads the history back from its newest
/// records, at most [`FIND_MAX_BYTES`](super::FIND_MAX_BYTES) of them.
pub async fn recent_failures(
    conn: &Connection,
    group: &str,
    tenant: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, HistoryError> {
    let scan = Scan {
        group: Some(group),
        ..Scan::default()
    };
    let keep = |r: &RunRecord| r.group == group && tenant.is_none_or(|t| t == r.tenant);
    newest_runs(conn, scan, keep, |r| r.state.is_failure(), limit).await
}

/// The latest attempt of each event (per group and tenant) among `runs`.
fn latest_attempts<'a>(runs: impl Iterator<Item = &'a RunRecord>) -> Vec<&'a RunRecord> {
    let mut latest: HashMap<(&str, &str, &str), &RunRecord> = HashMap::new();
    for run in runs {
        let slot = latest
            .entry((&run.group, &run.tenant, &run.event_id))
            .or_insert(run);
        if run.attempt > slot.attempt {
            *slot = run;
        }
    }
    latest.into_values().collect()
}

/// An attempt: group, tenant, event id, attempt number.
type AttemptKey = (String, String, String, u32);

fn attempt_key(r: &RunRecord) -> AttemptKey {
    (
        r.group.clone(),
        r.tenant.clone(),
        r.event_id.clone(),
        r.attempt,
    )
}

async fn history_stream(
    conn: &Connection,
) -> Result<async_nats::jetstream::stream::Stream, HistoryError> {
    match conn.jetstream().get_stream(HISTORY_STREAM).await {
        Ok(s) => Ok(s),
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.code() == 404
            ) =>
        {
            Err(Error::new(
                HistoryErrorKind::NoHistory,
                format!(
                    "no run history: the stream {HISTORY_STREAM} does not exist (no group has recorded a run yet)"
                ),
            ))
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// What one pass over part of the stream found.
#[derive(Default)]
struct Window {
    /// The latest record of each attempt seen.
    latest: HashMap<AttemptKey, RunRecord>,
    /// Bytes of records read.
    bytes: usize,
    /// When the first message read was stored.
    oldest: Option<DateTime<Utc>>,
}

/// Reads the messages `scan` names from `start` on, up to stream sequence `last` (the end of
/// the stream if `None`), into a [`Window`].
async fn read_window(
    stream: &async_nats::jetstream::stream::Stream,
    scan: &Scan<'_>,
    start: DeliverPolicy,
    last: Option<u64>,
    keep: &mut impl FnMut(&RunRecord) -> bool,
) -> Result<Window, HistoryError> {
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: scan.filter_subject(),
            deliver_policy: start,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let mut pending = consumer.cached_info().num_pending;
    // Later records of an attempt replace earlier ones: the stream keeps the order a worker
    // wrote them in, and one attempt is recorded by one worker.
    let mut window = Window::default();
    let failed = |e: &dyn std::fmt::Display| {
        Error::new(
            HistoryErrorKind::Unavailable,
            format!("could not read the run history: {e}"),
        )
    };
    'pull: while pending > 0 {
        let want = usize::try_from(pending).map_or(PULL_BATCH, |p| p.min(PULL_BATCH));
        let mut batch = consumer
            .batch()
            .max_messages(want)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(unavailable)?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| failed(&e))?;
            got += 1;
            let info = msg.info().map_err(|e| failed(&e))?;
            if last.is_some_and(|last| info.stream_sequence > last) {
                break 'pull;
            }
            window.oldest.get_or_insert(info.published);
            window.bytes += msg.payload.len();
            for record in decode_batch(&msg.payload).into_iter().filter(|r| keep(r)) {
                window.latest.insert(attempt_key(&record), record);
            }
        }
        if got == 0 {
            break;
        }
        pending = pending.saturating_sub(got);
    }
    let name = consumer.cached_info().name.clone();
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(error = %e, "could not delete the history reader");
    }
    Ok(window)
}

/// The latest record of every attempt in the part of the history `scan` names, among those
/// `keep` accepts. `keep` sees every record of an attempt, so it may test only what they share
/// (group, tenant, event id, type, attempt), not the state.
pub(super) async fn read(
    conn: &Connection,
    scan: Scan<'_>,
    mut keep: impl FnMut(&RunRecord) -> bool,
) -> Result<Vec<RunRecord>, HistoryError> {
    let stream = history_stream(conn).await?;
    let start = scan.since.map_or(DeliverPolicy::All, |start_time| {
        DeliverPolicy::ByStartTime { start_time }
    });
    let window = read_window(&stream, &scan, start, None, &mut keep).await?;
    Ok(window.latest.into_values().collect())
}

/// Stream sequences in the first (newest) window [`newest_runs`] reads; each next one is twice
/// as long.
const FIRST_WINDOW: u64 = 64;

/// The latest attempt of each event in the part of the history `scan` names (among the records
/// `keep` accepts, see [`read`]) that `matches` accepts, newest first, at most `limit`.
///
/// The stream is read back from its end in windows until `limit` runs are found, the start of
/// `scan` (its `since`, or the stream's first message) is passed, or
/// [`FIND_MAX_BYTES`](super::FIND_MAX_BYTES) of records were read.
pub(super) async fn newest_runs(
    conn: &Connection,
    scan: Scan<'_>,
    mut keep: impl FnMut(&RunRecord) -> bool,
    matches: impl Fn(&RunRecord) -> bool,
    limit: usize,
) -> Result<Vec<RunRecord>, HistoryError> {
    let mut stream = history_stream(conn).await?;
    let state = stream.info().await.map_err(unavailable)?.state.clone();
    let (first, mut last) = (state.first_sequence, state.last_sequence);
    let mut found: HashMap<AttemptKey, RunRecord> = HashMap::new();
    let (mut bytes, mut size) = (0, FIRST_WINDOW);
    let mut complete = state.messages == 0;
    while !complete {
        let start = last.saturating_sub(size - 1).max(first).max(1);
        let window = read_window(
            &stream,
            &scan,
            DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            Some(last),
            &mut keep,
        )
        .await?;
        // A newer window's record of an attempt is its latest.
        for (key, record) in window.latest {
            found.entry(key).or_insert(record);
        }
        bytes += window.bytes;
        let before_since = matches!((scan.since, window.oldest), (Some(s), Some(o)) if o < s);
        complete = start <= first || before_since;
        let enough = || {
            latest_attempts(found.values())
                .into_iter()
                .filter(|r| matches(r))
                .count()
                >= limit
        };
        if complete || bytes >= super::FIND_MAX_BYTES || enough() {
            break;
        }
        last = start - 1;
        size = size.saturating_mul(2);
    }
    let mut runs: Vec<RunRecord> = latest_attempts(found.values())
        .into_iter()
        .filter(|r| matches(r))
        .cloned()
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.updated_at()));
    runs.truncate(limit);
    Ok(runs)
}
