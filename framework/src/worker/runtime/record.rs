//! Recording one run in the history: its record, changed and written in one place.

use super::*;
use crate::history::{Deferred, Full, RecordView};
use chrono::DateTime;

/// What changes in a run's record; the rest is the delivery's (see [`RunRecorder`]).
#[derive(Debug)]
pub(super) struct Run {
    pub(super) state: RunState,
    pub(super) started_at: Option<DateTime<Utc>>,
    pub(super) finished_at: Option<DateTime<Utc>>,
    pub(super) duration_ms: Option<u64>,
    pub(super) retry_at: Option<DateTime<Utc>>,
    pub(super) error: Option<String>,
    pub(super) progress: Option<ProgressReport>,
    pub(super) sla_breached: bool,
    /// Inline: most runs have three (queued, running, their final state), and a vector of
    /// them was one more allocation per run.
    pub(super) transitions: smallvec::SmallVec<[Transition; 3]>,
}

impl Run {
    /// Moves to `state` at `at`, recording `error` with it.
    fn transition(&mut self, state: RunState, at: DateTime<Utc>, error: Option<String>) {
        self.state = state;
        if error.is_some() {
            self.error.clone_from(&error);
        }
        self.transitions.push(Transition { state, at, error });
    }
}

/// One run's record and where it is written. Every change goes through [`RunRecorder::write`]
/// (an intermediate state) or [`RunRecorder::store`] (the final state). Neither waits for the
/// server: the record is encoded into the group's history batch, which is appended with others
/// within [`crate::history::FLUSH_INTERVAL`].
///
/// The record's fixed part (group, tenant, ids, type, attempts, trace) is read from the
/// delivery when it is encoded, not copied: a run costs its encoding, not a set of strings.
#[derive(Debug)]
pub(super) struct RunRecorder {
    history: HistoryWriter,
    delivery: Arc<Delivery>,
    expected_ms: Option<u64>,
    run: Mutex<Run>,
}

impl RunRecorder {
    /// The record of `delivery`, queued, and running unless it is cancelled already.
    pub(super) fn start(
        history: HistoryWriter,
        delivery: Arc<Delivery>,
        options: &crate::HandlerOptions,
        running: bool,
    ) -> Self {
        let mut run = Run {
            state: RunState::Queued,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            retry_at: None,
            error: None,
            progress: None,
            sla_breached: false,
            transitions: smallvec::SmallVec::new(),
        };
        run.transitions.push(Transition {
            state: RunState::Queued,
            at: delivery.time.unwrap_or_else(Utc::now),
            error: None,
        });
        // The `running` state is written at the group's next history flush after the handler
        // first waits, if it still runs then ([`RunRecorder::write_running`]): a handler that
        // finishes within the interval gets one write, with every transition in it.
        if running {
            let now = Utc::now();
            run.started_at = Some(now);
            run.transition(RunState::Running, now, None);
        }
        Self {
            history,
            delivery,
            expected_ms: options
                .expected_duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            run: Mutex::new(run),
        }
    }

    /// Changes the record and adds it to the history's batch; returns the batch if it is full.
    fn change(&self, f: impl FnOnce(&mut Run)) -> Option<Full> {
        let mut run = self.run.lock().ok()?;
        f(&mut run);
        let d = &*self.delivery;
        let mut hex = [0u8; 32];
        let view = RecordView {
            group: &d.group,
            tenant: d.tenant.as_str(),
            event_id: &d.event_id,
            event_type: d.event_type,
            attempt: d.attempt,
            max_attempts: d.max_attempts,
            state: run.state,
            queued_at: d.time,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_ms: run.duration_ms,
            retry_at: run.retry_at,
            error: run.error.as_deref(),
            progress: run.progress.as_ref(),
            expected_ms: self.expected_ms,
            sla_breached: run.sla_breached,
            trace_id: Some(d.trace.write_trace_id(&mut hex)),
            transitions: &run.transitions,
        };
        self.history.add(&view)
    }

    /// Writes the `running` record at the group's next history flush unless the run has ended
    /// by then (its final record says it all) or its record is gone.
    pub(super) fn write_running(recorder: &Arc<Self>) {
        let deferred: std::sync::Weak<dyn Deferred> =
            Arc::downgrade(recorder) as std::sync::Weak<Self>;
        recorder.history.defer(deferred);
    }

    /// Changes the record and writes it without waiting for the server.
    pub(super) async fn write(&self, f: impl FnOnce(&mut Run)) {
        if let Some(full) = self.change(f) {
            self.history.publish_full(full).await;
        }
    }

    /// Records how the run ended in the history's batch; returns the batch if that filled it
    /// (publish it with [`HistoryWriter::publish_full`]). Synchronous: the final record of
    /// every run is written here, and a future for it would be one more allocation per run.
    pub(super) fn finish(
        &self,
        outcome: &Outcome,
        started: Option<tokio::time::Instant>,
    ) -> Option<Full> {
        self.change(|r| {
            let now = Utc::now();
            if let Some(started) = started {
                r.duration_ms =
                    Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            r.finished_at = Some(now);
            if let Outcome::Retry { delay, .. } = outcome {
                r.retry_at = chrono::Duration::from_std(*delay)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d));
            }
            if let Some((state, error)) = outcome.run_state() {
                r.transition(state, now, error);
            }
        })
    }

    /// The history this run is recorded in.
    pub(super) fn history(&self) -> &HistoryWriter {
        &self.history
    }
}

impl Deferred for RunRecorder {
    fn write_deferred(&self) -> Option<Full> {
        let running = self.run.lock().is_ok_and(|r| r.state == RunState::Running);
        if running { self.change(|_| {}) } else { None }
    }
}
