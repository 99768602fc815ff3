//! Run history: what happened to each event in each group, attempt by attempt.
//!
//! A group with history on ([`Group::history`](crate::Group::history)) writes one record per
//! attempt into the key-value bucket [`HISTORY_BUCKET`], under the key
//! `<group>.<tenant>.<event id>.<attempt>` (the id escaped with [`escape_token`]). A record
//! holds the attempt's state transitions (`queued` when the event entered the stream, `running`,
//! then `succeeded`, `retrying` with the error and when the next attempt is due,
//! `dead_lettered`, `cancelled` or `handed_back`), its duration, the last progress report and
//! the error. The bucket's `max_age` bounds how long records are kept (7 days by default).
//!
//! History costs two key-value writes per attempt; keep it off for high-volume groups and on
//! for long jobs. `conveyor runs show <event-id>` and `conveyor runs failed --group <g>` read
//! it; so do [`runs_of_event`] and [`recent_failures`].

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::error::Error;

/// Key-value bucket of the run history.
pub const HISTORY_BUCKET: &str = "conveyor_history";
/// How long run records are kept when the worker creates the bucket itself.
pub const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting in the stream.
    Queued,
    /// A handler is running it.
    Running,
    /// The handler succeeded; the event was acked.
    Succeeded,
    /// The attempt failed; another one follows at `retry_at`.
    Retrying,
    /// The event went to the dead letters.
    DeadLettered,
    /// The event was cancelled for the group.
    Cancelled,
    /// A worker shutdown handed the event back; the next attempt follows.
    HandedBack,
}

impl RunState {
    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Cancelled => "cancelled",
            Self::HandedBack => "handed_back",
        }
    }

    /// True for the states that end an attempt in failure (`retrying`, `dead_lettered`).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Retrying | Self::DeadLettered)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The new state.
    pub state: RunState,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// The error that caused it, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last progress a handler reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// 0 to 100.
    pub percent: u8,
    /// What the handler is doing.
    pub message: String,
    /// When it reported.
    pub at: DateTime<Utc>,
}

/// The record of one attempt at one event in one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The handler group.
    pub group: String,
    /// The event's tenant.
    pub tenant: String,
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Attempts the handler allows.
    pub max_attempts: u32,
    /// The current state.
    pub state: RunState,
    /// When the event entered the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When the handler started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the handler ran, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When the next attempt is due (state `retrying`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last progress report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressReport>,
    /// The handler's expected duration, in milliseconds, if it declared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ms: Option<u64>,
    /// True when the run took longer than expected.
    #[serde(default)]
    pub sla_breached: bool,
    /// The trace id of the run (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Every state change, oldest first.
    pub transitions: Vec<Transition>,
}

impl RunRecord {
    /// Moves to `state` now, recording `error` with it.
    pub(crate) fn transition(&mut self, state: RunState, error: Option<String>) {
        let at = Utc::now();
        self.state = state;
        if error.is_some() {
            self.error.clone_from(&error);
        }
        self.transitions.push(Transition { state, at, error });
    }

    /// The key of this record in [`HISTORY_BUCKET`].
    pub fn key(&self) -> String {
        run_key(&self.group, &self.tenant, &self.event_id, self.attempt)
    }

    /// When the record last changed.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.transitions.last().map(|t| t.at)
    }
}

pub use crate::subject::{escape_token, unescape_token};

mod query;
pub use query::{RunQuery, find};

/// The history key of one attempt.
pub fn run_key(group: &str, tenant: &str, event_id: &str, attempt: u32) -> String {
    format!("{group}.{tenant}.{}.{attempt}", escape_token(event_id))
}

/// Why reading the run history failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HistoryErrorKind {
    /// The history bucket does not exist: no group has recorded history yet.
    NoBucket,
    /// The server could not be asked (timeout, permissions, connection).
    Unavailable,
}

impl fmt::Display for HistoryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoBucket => "no run history",
            Self::Unavailable => "run history unavailable",
        })
    }
}

/// A failed read of the run history.
pub type HistoryError = Error<HistoryErrorKind>;

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> HistoryError {
    Error::with_source(
        HistoryErrorKind::Unavailable,
        "could not read the run history",
        e,
    )
}

/// Every recorded attempt at `event_id`, in every group, ordered by group and attempt.
pub async fn runs_of_event(
    conn: &Connection,
    event_id: &str,
) -> Result<Vec<RunRecord>, HistoryError> {
    let mut runs = read(conn, &format!("*.*.{}.*", escape_token(event_id))).await?;
    runs.sort_by(|a, b| (&a.group, a.attempt).cmp(&(&b.group, b.attempt)));
    Ok(runs)
}

/// The events of `group` (and `tenant`, if given) whose latest attempt failed (`retrying` or
/// `dead_lettered`), newest first, at most `limit`.
pub async fn recent_failures(
    conn: &Connection,
    group: &str,
    tenant: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, HistoryError> {
    let filter = format!("{group}.{}.*.*", tenant.unwrap_or("*"));
    let runs = read(conn, &filter).await?;
    let mut latest: std::collections::HashMap<(String, String), RunRecord> =
        std::collections::HashMap::new();
    for run in runs {
        let key = (run.tenant.clone(), run.event_id.clone());
        match latest.get(&key) {
            Some(seen) if seen.attempt >= run.attempt => {}
            _ => {
                latest.insert(key, run);
            }
        }
    }
    let mut failed: Vec<RunRecord> = latest
        .into_values()
        .filter(|r| r.state.is_failure())
        .collect();
    failed.sort_by_key(|r| std::cmp::Reverse(r.updated_at()));
    failed.truncate(limit);
    Ok(failed)
}

/// Reads the latest value of every key matching `filter` (a key pattern with `*` tokens).
pub(super) async fn read(conn: &Connection, filter: &str) -> Result<Vec<RunRecord>, HistoryError> {
    let stream_name = format!("KV_{HISTORY_BUCKET}");
    let stream = match conn.jetstream().get_stream(&stream_name).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.code() == 404
            ) =>
        {
            return Err(Error::new(
                HistoryErrorKind::NoBucket,
                format!(
                    "no run history: the bucket {HISTORY_BUCKET} does not exist (turn history on for a group with Group::history)"
                ),
            ));
        }
        Err(e) => return Err(unavailable(e)),
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: format!("$KV.{HISTORY_BUCKET}.{filter}"),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(unavailable)?;
    let mut pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    while pending > 0 {
        let want = usize::try_from(pending.min(1000)).unwrap_or(1000);
        let mut batch = consumer
            .batch()
            .max_messages(want)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(unavailable)?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| {
                Error::new(
                    HistoryErrorKind::Unavailable,
                    format!("could not read the run history: {e}"),
                )
            })?;
            got += 1;
            let deleted = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some();
            if deleted {
                continue;
            }
            match serde_json::from_slice::<RunRecord>(&msg.payload) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "unreadable run record skipped");
                }
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
    Ok(out)
}

/// Writes run records of one group.
#[derive(Debug, Clone)]
pub(crate) struct HistoryWriter {
    conn: Connection,
}

impl HistoryWriter {
    pub(crate) fn new(conn: Connection) -> Self {
        Self { conn }
    }

    fn subject(record: &RunRecord) -> String {
        format!("$KV.{HISTORY_BUCKET}.{}", record.key())
    }

    /// Sends a record without waiting for the server: it travels ahead of the event's ack on
    /// the same connection.
    pub(crate) async fn put_nowait(&self, record: &RunRecord) {
        let Ok(body) = serde_json::to_vec(record) else {
            return;
        };
        if let Err(e) = self
            .conn
            .client()
            .publish(Self::subject(record), Bytes::from(body))
            .await
        {
            tracing::warn!(error = %e, "could not write the run record");
        }
    }

    /// Creates the history bucket when it is missing.
    pub(crate) async fn ensure_bucket(&self) {
        let js = self.conn.jetstream();
        if js.get_key_value(HISTORY_BUCKET).await.is_ok() {
            return;
        }
        let created = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: HISTORY_BUCKET.into(),
                description: "Conveyor run history".into(),
                history: 1,
                max_age: DEFAULT_HISTORY_MAX_AGE,
                ..Default::default()
            })
            .await;
        if let Err(e) = created
            && js.get_key_value(HISTORY_BUCKET).await.is_err()
        {
            tracing::warn!(error = %e, "could not create the run history bucket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for id in [
            "0190c8a4-7b1e-7cc0-8d1e-2f6f3a3b9c11",
            "cron:daily:acme:1700000000",
            "a.b*c>d e",
            "ünïcode",
        ] {
            let t = escape_token(id);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='),
                "{t}"
            );
            assert_eq!(unescape_token(&t).as_deref(), Some(id), "{t}");
        }
        assert_eq!(unescape_token("bad=G1"), None);
    }

    #[test]
    fn record_json_round_trips() {
        let mut r = RunRecord {
            group: "g".into(),
            tenant: "acme".into(),
            event_id: "e-1".into(),
            event_type: "order.created".into(),
            attempt: 1,
            max_attempts: 3,
            state: RunState::Queued,
            queued_at: Some(Utc::now()),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            retry_at: None,
            error: None,
            progress: None,
            expected_ms: None,
            sla_breached: false,
            trace_id: None,
            transitions: vec![],
        };
        r.transition(RunState::Running, None);
        r.transition(RunState::Retrying, Some("boom".into()));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""state":"retrying""#), "{json}");
        let back: RunRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.key(), "g.acme.e-1.1");
        assert!(r.state.is_failure());
    }
}
