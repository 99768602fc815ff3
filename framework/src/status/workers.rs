//! The worker processes running each group, as they announce themselves (see
//! [`crate::worker::WORKERS_BUCKET`]).
//!
//! ```no_run
//! # async fn run(conn: &conveyor::Connection) -> Result<(), conveyor::status::StatusError> {
//! for p in conveyor::status::workers(conn).await? {
//!     println!("{} on {} (pid {}), bound: {}", p.group, p.host, p.pid, p.bound);
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{StatusError, unavailable};
use crate::connection::Connection;
use crate::worker::WORKERS_BUCKET;

/// One worker process running one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProcess {
    /// The group.
    pub group: String,
    /// The process's id, new at every start.
    pub instance: String,
    /// Its host's name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The framework's version it runs.
    pub version: String,
    /// The group's handler slots in it.
    pub concurrency: usize,
    /// True when it is bound to every partition consumer of the group.
    pub bound: bool,
}

/// Every worker process that announced itself within the last
/// [`WORKERS_MAX_AGE`](crate::worker::WORKERS_MAX_AGE), by group and host. Empty when the bucket
/// does not exist (no `conveyor setup` yet).
pub async fn workers(conn: &Connection) -> Result<Vec<WorkerProcess>, StatusError> {
    let Ok(store) = conn.jetstream().get_key_value(WORKERS_BUCKET).await else {
        return Ok(Vec::new());
    };
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(|e| unavailable("cannot list the worker processes".into(), e))?
        .try_collect()
        .await
        .map_err(|e| unavailable("cannot list the worker processes".into(), e))?;
    let store = &store;
    let mut out: Vec<WorkerProcess> = futures::stream::iter(keys)
        .map(|key| async move { store.get(&key).await })
        .buffer_unordered(16)
        .filter_map(|value| async move {
            // A key deleted meanwhile, or a value that is not a process, is left out.
            serde_json::from_slice(&value.ok()??).ok()
        })
        .collect()
        .await;
    out.sort_by(|a, b| (&a.group, &a.host, a.pid).cmp(&(&b.group, &b.host, b.pid)));
    Ok(out)
}
