//! Announcing which worker processes run which groups: one key per group and process in the
//! bucket [`WORKERS_BUCKET`], written every [`PRESENCE_INTERVAL`] and deleted at shutdown.
//!
//! The bucket's values live [`WORKERS_MAX_AGE`]: a process that is killed disappears from it
//! by itself. `conveyor status`, the dashboard and [`crate::status::workers`] read it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::runtime::GroupRuntime;
use crate::connection::Connection;
use crate::status::WorkerProcess;

/// The bucket of worker processes: key `<group>.<instance>`, value a JSON
/// [`WorkerProcess`].
pub const WORKERS_BUCKET: &str = "conveyor_workers";
/// How often a worker process writes its keys.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a key lives without being written again (three intervals).
pub const WORKERS_MAX_AGE: Duration = Duration::from_secs(30);

/// This host's name, as the kernel has it (`HOSTNAME` elsewhere), or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes the keys of this process's groups until `shutdown`, then deletes them. A process
/// that may not write them (no bucket, no permission) runs as usual, with one warning.
pub(super) async fn announce<S: Clone + Send + Sync + 'static>(
    conn: Connection,
    groups: Vec<Arc<GroupRuntime<S>>>,
    shutdown: CancellationToken,
) {
    let store = match conn.jetstream().get_key_value(WORKERS_BUCKET).await {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(error = %e, bucket = WORKERS_BUCKET, "worker process not announced (run `conveyor setup`)");
            return;
        }
    };
    let instance = uuid::Uuid::now_v7().simple().to_string();
    let (host, pid, started_at) = (host_name(), std::process::id(), Utc::now());
    let key = |group: &str| format!("{group}.{instance}");
    // Checked every second: a group that binds (or loses its consumers) is announced at once,
    // the others every interval.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut announced: Vec<Option<(bool, tokio::time::Instant)>> = vec![None; groups.len()];
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        for (g, last) in groups.iter().zip(announced.iter_mut()) {
            let bound = g.bound()();
            if last.is_some_and(|(was, at)| was == bound && at.elapsed() < PRESENCE_INTERVAL) {
                continue;
            }
            *last = Some((bound, tokio::time::Instant::now()));
            let process = WorkerProcess {
                group: g.name().to_owned(),
                instance: instance.clone(),
                host: host.clone(),
                pid,
                started_at,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                concurrency: g.concurrency(),
                bound,
            };
            let Ok(value) = serde_json::to_vec(&process) else {
                continue;
            };
            if let Err(e) = store.put(key(g.name()), value.into()).await
                && !std::mem::replace(&mut warned, true)
            {
                tracing::warn!(error = %e, bucket = WORKERS_BUCKET, "worker process not announced");
            }
        }
    }
    for g in &groups {
        if let Err(e) = store.delete(key(g.name())).await {
            tracing::debug!(error = %e, "worker process key left to expire");
        }
    }
}
