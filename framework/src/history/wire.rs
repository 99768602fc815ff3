//! The stored form of run records: one JSON [`RunRecord`] per line, its `transitions` left out
//! when the record's own times say it all.
//!
//! Most records are of runs that went queued → running → their final state, and their
//! transitions repeat `queued_at`, `started_at` and `finished_at`: close to a third of the
//! record. The server's cost of the history grows with its bytes, so such a record is stored
//! without `transitions`, and readers rebuild them: `queued` at `queued_at`, `running` at
//! `started_at`, then the record's state at `finished_at` (with the record's `error` for
//! `retrying` and `dead_lettered`), each only when its time is there.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunRecord, RunState, Transition, time_format};

/// The fields of a record as stored.
#[derive(Serialize)]
struct Stored<'a> {
    group: &'a str,
    tenant: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    attempt: u32,
    max_attempts: u32,
    state: RunState,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    queued_at: Option<DateTime<Utc>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    started_at: Option<DateTime<Utc>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    retry_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<&'a super::ProgressReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    sla_breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    transitions: &'a [Transition],
}

/// The transitions a record without them stands for, as (state, time, error).
fn implied(r: &RunRecord) -> impl Iterator<Item = (RunState, DateTime<Utc>, Option<&str>)> {
    let last = (!matches!(r.state, RunState::Queued | RunState::Running)).then(|| {
        let error = r.state.is_failure().then_some(r.error.as_deref()).flatten();
        (r.state, r.finished_at, error)
    });
    [
        Some((RunState::Queued, r.queued_at, None)),
        Some((RunState::Running, r.started_at, None)),
        last,
    ]
    .into_iter()
    .flatten()
    .filter_map(|(state, at, error)| at.map(|at| (state, at, error)))
}

/// True when the record's transitions are the ones its times imply.
fn is_plain(r: &RunRecord) -> bool {
    let mut implied = implied(r);
    r.transitions.iter().all(|t| {
        implied.next().is_some_and(|(state, at, error)| {
            t.state == state && t.at == at && t.error.as_deref() == error
        })
    }) && implied.next().is_none()
}

/// Appends one record as a stored line (ending in a newline) to `out`; on failure `out` is
/// left as it was.
pub(super) fn encode_into(r: &RunRecord, out: &mut Vec<u8>) -> bool {
    let plain = is_plain(r);
    let stored = Stored {
        group: &r.group,
        tenant: &r.tenant,
        event_id: &r.event_id,
        event_type: &r.event_type,
        attempt: r.attempt,
        max_attempts: r.max_attempts,
        state: r.state,
        queued_at: r.queued_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        duration_ms: r.duration_ms,
        retry_at: r.retry_at,
        error: r.error.as_deref(),
        progress: r.progress.as_ref(),
        expected_ms: r.expected_ms,
        sla_breached: r.sla_breached,
        trace_id: r.trace_id.as_deref(),
        transitions: if plain { &[] } else { &r.transitions },
    };
    let len = out.len();
    if serde_json::to_writer(&mut *out, &stored).is_err() {
        out.truncate(len);
        return false;
    }
    out.push(b'\n');
    true
}

/// The run records in one message of [`HISTORY_STREAM`](super::HISTORY_STREAM), in the order
/// they were written (see the module for the stored form). A line that is not a record is
/// skipped with a warning.
pub fn decode_batch(payload: &[u8]) -> impl Iterator<Item = RunRecord> + '_ {
    payload
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| match serde_json::from_slice::<RunRecord>(line) {
            Ok(mut r) => {
                if r.transitions.is_empty() {
                    r.transitions = implied(&r)
                        .map(|(state, at, error)| Transition {
                            state,
                            at,
                            error: error.map(str::to_owned),
                        })
                        .collect();
                }
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable run record skipped");
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &RunRecord) -> (RunRecord, String) {
        let mut line = b"garbage".to_vec();
        assert!(encode_into(r, &mut line));
        let line = line.split_off(7);
        let text = String::from_utf8(line.clone()).unwrap();
        let back: Vec<RunRecord> = decode_batch(&line).collect();
        assert_eq!(back.len(), 1);
        (back.into_iter().next().unwrap(), text)
    }

    #[test]
    fn plain_runs_are_stored_without_transitions_and_read_back_whole() {
        let mut r = super::super::sample();
        let t1 = Utc::now();
        r.started_at = Some(t1);
        r.transition(RunState::Running, t1, None);
        let (back, text) = round_trip(&r);
        assert_eq!(back, r);
        assert!(!text.contains("transitions"), "{text}");

        let t2 = Utc::now();
        r.finished_at = Some(t2);
        r.error = Some("upstream 503".into());
        r.transition(RunState::Retrying, t2, Some("upstream 503".into()));
        let (back, text) = round_trip(&r);
        assert_eq!(back, r);
        assert!(!text.contains("transitions"), "{text}");
        assert!(!text.contains("sla_breached"), "{text}");
    }

    #[test]
    fn other_paths_keep_their_transitions() {
        let mut r = super::super::sample();
        // Cancelled before it ran: no `running`, and an error on the transition.
        let t1 = Utc::now();
        r.finished_at = Some(t1);
        r.transition(RunState::Cancelled, t1, Some("cancelled by ops".into()));
        let (back, text) = round_trip(&r);
        assert_eq!(back, r);
        assert!(text.contains("transitions"), "{text}");

        // An event without a time: its `queued` transition has none of the record's times.
        let mut r = super::super::sample();
        r.queued_at = None;
        let (back, text) = round_trip(&r);
        assert_eq!(back, r);
        assert!(text.contains("transitions"), "{text}");

        let mut r = super::super::sample();
        r.sla_breached = true;
        let (back, text) = round_trip(&r);
        assert_eq!(back, r);
        assert!(text.contains(r#""sla_breached":true"#), "{text}");
    }
}
