//! Recording one run in the history: its record, changed and written in one place.

use super::*;
use crate::history::Full;

/// One run's record and where it is written. Every change goes through [`RunRecorder::write`]
/// (an intermediate state) or [`RunRecorder::store`] (the final state). Neither waits for the
/// server: the record is handed to the group's history flusher, which appends it with others
/// within [`crate::history::FLUSH_INTERVAL`].
pub(super) struct RunRecorder {
    history: HistoryWriter,
    record: Mutex<RunRecord>,
}

impl RunRecorder {
    /// The record of `attempt` at `env`, queued, and running unless it is cancelled already.
    pub(super) fn start(
        history: HistoryWriter,
        group: &str,
        routed: &Routed<'_, '_, impl Clone + Send + Sync + 'static>,
        attempt: u32,
        trace: &TraceParent,
        running: bool,
    ) -> Self {
        let env = &routed.env;
        let options = &routed.route.options;
        let mut record = RunRecord {
            group: group.to_owned(),
            tenant: routed.tenant.as_str().to_owned(),
            event_id: env.id.to_string(),
            event_type: env.event_type.to_string(),
            attempt,
            max_attempts: options.retry.max_attempts,
            state: RunState::Queued,
            queued_at: env.time,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            retry_at: None,
            error: None,
            progress: None,
            expected_ms: options
                .expected_duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            sla_breached: false,
            trace_id: Some(trace.trace_id_hex()),
            transitions: Vec::with_capacity(3),
        };
        // Room for the usual three: queued, running, the final state.
        record.transitions.push(Transition {
            state: RunState::Queued,
            at: env.time.unwrap_or_else(Utc::now),
            error: None,
        });
        // The `running` state is written once the handler first waits (see `run_handler`): a
        // handler that finishes at once gets one write, with every transition in it.
        if running {
            let now = Utc::now();
            record.started_at = Some(now);
            record.transition(RunState::Running, now, None);
        }
        Self {
            history,
            record: Mutex::new(record),
        }
    }

    /// Changes the record and adds it to the history's batch; returns the batch if it is full.
    fn change(&self, f: impl FnOnce(&mut RunRecord)) -> Option<Full> {
        self.record.lock().ok().and_then(|mut r| {
            f(&mut r);
            self.history.add(&r)
        })
    }

    /// Changes the record and writes it without waiting for the server.
    pub(super) async fn write(&self, f: impl FnOnce(&mut RunRecord)) {
        if let Some(full) = self.change(f) {
            self.history.publish_full(full).await;
        }
    }

    /// Records how the run ended and sends it.
    pub(super) async fn store(&self, outcome: &Outcome, started: Option<tokio::time::Instant>) {
        let snapshot = self.change(|r| {
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
        });
        if let Some(full) = snapshot {
            self.history.publish_full(full).await;
        }
    }
}
