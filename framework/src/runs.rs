//! Run markers: how the scheduler's "skip a tick while the previous run is still going" policy
//! learns that a run has finished.
//!
//! When a schedule skips overlapping runs, the scheduler writes a marker for (schedule, tenant)
//! into the [`RUNS_BUCKET`] key-value bucket and sends the cron event with the header
//! [`RUN_KEY_HEADER`] naming that key. The worker deletes the marker once the event is settled:
//! acked after a successful run, or dead-lettered. The first group to settle the event ends the
//! run.

use crate::connection::Connection;

/// Key-value bucket holding the markers of running scheduled runs.
pub const RUNS_BUCKET: &str = "conveyor_runs";
/// Header of a cron event naming its run marker.
pub const RUN_KEY_HEADER: &str = "Conveyor-Run-Key";

/// Deletes the run marker `key`: the run it stands for has finished. A missing bucket or key is
/// not an error (the schedule does not track runs, or the marker expired).
pub async fn finish_run(conn: &Connection, key: &str) {
    match conn.jetstream().get_key_value(RUNS_BUCKET).await {
        Ok(store) => {
            if let Err(e) = store.purge(key).await {
                tracing::warn!(key, error = %e, "could not clear the run marker");
            }
        }
        Err(e) => tracing::debug!(key, error = %e, "no run bucket"),
    }
}
