//! Run history: what happened to each event in each group, attempt by attempt.
//!
//! Every group records its runs unless it turns history off
//! ([`Group::history`](crate::Group::history)). A record holds one attempt's state transitions
//! (`queued` when the event entered the stream, `running`, then `succeeded`, `retrying` with the
//! error and when the next attempt is due, `dead_lettered`, `cancelled` or `handed_back`), its
//! duration, the last progress report and the error.
//!
//! Records are appended in batches to the stream [`HISTORY_STREAM`]: a worker collects the
//! records of a group for up to [`FLUSH_INTERVAL`] and publishes them as one message per
//! shard, on `history.<group>.<shard>` (see [`crate::subject::history_shard`]), one JSON
//! [`RunRecord`] per line. A record is written when an attempt ends (and at each progress
//! report, and at the first flush after a handler first waits if it still runs then); a later
//! record of the same attempt replaces the earlier one for readers. The stream's `max_age` and `max_bytes` bound how much is kept (7 days
//! and 1 GiB by default, see [`crate::topology::Topology::history`]).
//!
//! Records follow the event's ack by up to [`FLUSH_INTERVAL`]: a worker that is killed loses
//! the records of its last interval (never the events: those are settled first). A graceful
//! shutdown writes every record.
//!
//! `conveyor runs show <event-id>` and `conveyor runs failed --group <g>` read it; so do
//! [`runs_of_event`], [`recent_failures`] and [`find`].

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The stream of the run history (`history.>`).
pub const HISTORY_STREAM: &str = "HISTORY";
/// How long run records are kept by default.
pub const DEFAULT_HISTORY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many bytes of run records are kept by default (the oldest go first): 1 GiB.
pub const DEFAULT_HISTORY_MAX_BYTES: i64 = 1 << 30;
/// How long a worker collects a group's run records before it appends them.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

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
    #[serde(serialize_with = "time_format::time")]
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
    #[serde(serialize_with = "time_format::time")]
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub queued_at: Option<DateTime<Utc>>,
    /// When the handler started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub started_at: Option<DateTime<Utc>>,
    /// When the attempt ended.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the handler ran, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When the next attempt is due (state `retrying`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
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
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sla_breached: bool,
    /// The trace id of the run (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Every state change, oldest first.
    #[serde(default)]
    pub transitions: Vec<Transition>,
}

impl RunRecord {
    /// Moves to `state` at `at`, recording `error` with it (as a worker's run recorder does).
    #[cfg(test)]
    pub(crate) fn transition(&mut self, state: RunState, at: DateTime<Utc>, error: Option<String>) {
        self.state = state;
        if error.is_some() {
            self.error.clone_from(&error);
        }
        self.transitions.push(Transition { state, at, error });
    }

    /// The subject this record is appended to in [`HISTORY_STREAM`].
    pub fn subject(&self) -> String {
        crate::subject::history_subject(&self.group, crate::subject::history_shard(&self.event_id))
    }

    /// When the record last changed.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.transitions.last().map(|t| t.at)
    }
}

pub use crate::subject::{escape_token, unescape_token};

mod query;
mod read;
mod time_format;
mod wire;
mod writer;
pub use query::{FIND_MAX_BYTES, RunQuery, find};
pub use read::{recent_failures, runs_of_event};
pub(crate) use wire::RecordView;
pub use wire::decode_batch;
pub(crate) use writer::{Deferred, Full, HistoryWriter};

/// Why reading the run history failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HistoryErrorKind {
    /// The history stream does not exist: no group has recorded history yet.
    NoHistory,
    /// The server could not be asked (timeout, permissions, connection).
    Unavailable,
}

impl fmt::Display for HistoryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoHistory => "no run history",
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

/// A queued record of event `e-1` (tenant `acme`, group `g`), for tests.
#[cfg(test)]
pub(crate) fn sample() -> RunRecord {
    let t0 = Utc::now();
    RunRecord {
        group: "g".into(),
        tenant: "acme".into(),
        event_id: "e-1".into(),
        event_type: "order.created".into(),
        attempt: 1,
        max_attempts: 3,
        state: RunState::Queued,
        queued_at: Some(t0),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        retry_at: None,
        error: None,
        progress: None,
        expected_ms: None,
        sla_breached: false,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        transitions: vec![Transition {
            state: RunState::Queued,
            at: t0,
            error: None,
        }],
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
        let mut r = sample();
        r.transitions.clear();
        r.transition(RunState::Running, Utc::now(), None);
        r.transition(RunState::Retrying, Utc::now(), Some("boom".into()));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""state":"retrying""#), "{json}");
        let back: RunRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            r.subject(),
            format!("history.g.{:02}", crate::subject::history_shard("e-1"))
        );
        let mut batch = serde_json::to_vec(&r).unwrap();
        batch.extend_from_slice(b"\nnot json\n");
        batch.extend(serde_json::to_vec(&r).unwrap());
        assert_eq!(decode_batch(&batch), vec![r.clone(), r.clone()]);
        assert!(r.state.is_failure());
    }
}
