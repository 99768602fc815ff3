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

/// Deletes the run marker `key` on behalf of the event stored on `subject` with `body`: the
/// run it stands for has finished. The header is set by whoever published the event, so it is
/// checked first: the key must be `<schedule>.<tenant>` for the event's own tenant, and the
/// marker must name this very event (cron event ids are unguessable). A tenant can therefore
/// only end its own runs, never another tenant's or schedule's. A missing bucket or key is not
/// an error (the schedule does not track runs, or the marker expired).
pub async fn finish_run(conn: &Connection, key: &str, subject: &str, body: &[u8]) {
    let Some((tenant, _)) = crate::envelope::split_event_subject(subject) else {
        return;
    };
    let Ok(event) = crate::envelope::RawEnvelope::parse(body) else {
        return;
    };
    if key.rsplit_once('.').map(|(_, t)| t) != Some(tenant) || event.tenantid != tenant {
        tracing::warn!(key, subject, "run key of another tenant ignored");
        return;
    }
    let store = match conn.jetstream().get_key_value(RUNS_BUCKET).await {
        Ok(store) => store,
        Err(e) => {
            tracing::debug!(key, error = %e, "no run bucket");
            return;
        }
    };
    match store.get(key).await {
        Ok(Some(marker)) if marker.as_ref() == event.id.as_bytes() => {
            if let Err(e) = store.purge(key).await {
                tracing::warn!(key, error = %e, "could not clear the run marker");
            }
        }
        Ok(_) => tracing::debug!(key, "the run marker names another event; left"),
        Err(e) => tracing::warn!(key, error = %e, "could not read the run marker"),
    }
}
