//! The stored form of run records: one JSON [`RunRecord`] per line, its `transitions` left out
//! when the record's own times say it all.
//!
//! Most records are of runs that went queued → running → their final state, and their
//! transitions repeat `queued_at`, `started_at` and `finished_at`: close to a third of the
//! record. The server's cost of the history grows with its bytes, so such a record is stored
//! without `transitions`, and readers rebuild them: `queued` at `queued_at`, `running` at
//! `started_at`, then the record's state at `finished_at` (with the record's `error` for
//! `retrying` and `dead_lettered`), each only when its time is there.
//!
//! A message's lines are compressed as one [LZ4 frame] (it starts with the frame's magic
//! number, bytes `04 22 4D 18`; a message that does not is plain lines). The records of a batch
//! repeat their keys, group, type and most of their times, and the server's cost of storing
//! them grows with their bytes: compressed they take about a fifth, and a group's history costs
//! the server no more than its acks (`conveyor-bench observability`). LZ4 is the fastest of the
//! common formats to write, and every language reads it.
//!
//! [LZ4 frame]: https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md

use std::io::{Read, Write};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunRecord, RunState, Transition, time_format};

/// A record as it is stored, borrowed: from a [`RunRecord`] (`From`), or from a running
/// delivery's own fields, so recording a run copies none of its strings.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RecordView<'a> {
    pub(crate) group: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) event_id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) state: RunState,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub(crate) queued_at: Option<DateTime<Utc>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub(crate) started_at: Option<DateTime<Utc>>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub(crate) finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "time_format::optional_time"
    )]
    pub(crate) retry_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) progress: Option<&'a super::ProgressReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expected_ms: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) sla_breached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trace_id: Option<&'a str>,
    /// Every transition; left out of the stored line when the times imply them.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(crate) transitions: &'a [Transition],
}

impl<'a> From<&'a RunRecord> for RecordView<'a> {
    fn from(r: &'a RunRecord) -> Self {
        Self {
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
            transitions: &r.transitions,
        }
    }
}

/// The times and final error of a record, from which its plain transitions follow.
#[derive(Clone, Copy)]
struct Times<'a> {
    state: RunState,
    queued_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<&'a str>,
}

/// The transitions a record without them stands for, as (state, time, error).
fn implied(t: Times<'_>) -> impl Iterator<Item = (RunState, DateTime<Utc>, Option<&str>)> {
    let last = (!matches!(t.state, RunState::Queued | RunState::Running)).then(|| {
        let error = t.state.is_failure().then_some(t.error).flatten();
        (t.state, t.finished_at, error)
    });
    [
        Some((RunState::Queued, t.queued_at, None)),
        Some((RunState::Running, t.started_at, None)),
        last,
    ]
    .into_iter()
    .flatten()
    .filter_map(|(state, at, error)| at.map(|at| (state, at, error)))
}

/// True when the record's transitions are the ones its times imply.
fn is_plain(r: &RecordView<'_>) -> bool {
    let mut implied = implied(Times {
        state: r.state,
        queued_at: r.queued_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        error: r.error,
    });
    r.transitions.iter().all(|t| {
        implied.next().is_some_and(|(state, at, error)| {
            t.state == state && t.at == at && t.error.as_deref() == error
        })
    }) && implied.next().is_none()
}

/// Appends one record as a stored line (ending in a newline) to `out`; on failure `out` is
/// left as it was.
pub(crate) fn encode_into(r: &RecordView<'_>, out: &mut Vec<u8>) -> bool {
    let stored = RecordView {
        transitions: if is_plain(r) { &[] } else { r.transitions },
        ..*r
    };
    let len = out.len();
    if serde_json::to_writer(&mut *out, &stored).is_err() {
        out.truncate(len);
        return false;
    }
    out.push(b'\n');
    true
}

/// The magic number an LZ4 frame starts with (little-endian `0x184D2204`).
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4D, 0x18];

/// The most bytes one message's lines are read to: a batch is published at 128 KiB, so only a
/// damaged or foreign message comes near it.
const MAX_LINES_BYTES: u64 = 16 << 20;

/// A batch's lines as the payload of one message: an LZ4 frame, or the lines themselves in the
/// unlikely case that compressing fails.
pub(super) fn compress(lines: Vec<u8>) -> Bytes {
    let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(lines.len() / 3));
    let frame = encoder
        .write_all(&lines)
        .map_err(lz4_flex::frame::Error::from)
        .and_then(|()| encoder.finish());
    match frame {
        Ok(frame) => Bytes::from(frame),
        Err(e) => {
            tracing::warn!(error = %e, "run records sent uncompressed");
            Bytes::from(lines)
        }
    }
}

/// The lines of one message: the payload itself, or what its LZ4 frame holds.
fn lines(payload: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !payload.starts_with(&LZ4_MAGIC) {
        return payload.into();
    }
    let mut lines = Vec::with_capacity(payload.len().saturating_mul(4));
    let read = lz4_flex::frame::FrameDecoder::new(payload)
        .take(MAX_LINES_BYTES)
        .read_to_end(&mut lines);
    if let Err(e) = read {
        // The records before the damage are still read.
        tracing::warn!(error = %e, "damaged run records skipped");
    }
    lines.into()
}

/// The run records in one message of [`HISTORY_STREAM`](super::HISTORY_STREAM), in the order
/// they were written (see the module for the stored form). A line that is not a record is
/// skipped with a warning.
pub fn decode_batch(payload: &[u8]) -> Vec<RunRecord> {
    lines(payload)
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| match serde_json::from_slice::<RunRecord>(line) {
            Ok(mut r) => {
                if r.transitions.is_empty() {
                    r.transitions = implied(Times {
                        state: r.state,
                        queued_at: r.queued_at,
                        started_at: r.started_at,
                        finished_at: r.finished_at,
                        error: r.error.as_deref(),
                    })
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &RunRecord) -> (RunRecord, String) {
        let mut line = b"garbage".to_vec();
        assert!(encode_into(&r.into(), &mut line));
        let line = line.split_off(7);
        let text = String::from_utf8(line.clone()).unwrap();
        let back = decode_batch(&line);
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
    fn batches_are_compressed_and_read_back() {
        let mut lines = Vec::new();
        let records: Vec<RunRecord> = (0..300)
            .map(|i| {
                let mut r = super::super::sample();
                r.event_id = format!("0193a1b2-c3d4-7e5f-8a9b-{i:012}");
                r
            })
            .collect();
        for r in &records {
            assert!(encode_into(&r.into(), &mut lines));
        }
        let frame = compress(lines.clone());
        assert!(frame.starts_with(&LZ4_MAGIC));
        assert!(
            frame.len() * 4 < lines.len(),
            "{} of {}",
            frame.len(),
            lines.len()
        );
        assert_eq!(decode_batch(&frame), records);
        // Plain lines (as older workers wrote them) are read as they are.
        assert_eq!(decode_batch(&lines), records);
        // A cut frame yields what it holds before the cut, and nothing panics.
        let cut = &frame[..frame.len() / 2];
        assert!(decode_batch(cut).len() <= records.len());
        assert!(decode_batch(&LZ4_MAGIC).is_empty());
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
