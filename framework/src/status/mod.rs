//! The operator's overview of a deployment: streams, groups (their partition consumers summed),
//! dead letters, the scheduler's leader, paused tenants and waiting schedules. `conveyor
//! status` prints it and the dashboard shows it, from this one function. Each tenant's share of
//! the groups' backlogs: [`tenant_backlogs`].
//!
//! ```no_run
//! # async fn run(conn: &conveyor::Connection) -> Result<(), conveyor::status::StatusError> {
//! let overview = conveyor::status::overview(conn).await?;
//! for g in &overview.groups {
//!     println!("{}: {} pending, {} dead letters", g.group, g.pending, g.dead_letters);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::connection::Connection;
use crate::error::Error;
use crate::pause::Pause;
use crate::topology::{DLQ_STREAM, EVENTS_STREAM, LEASES_BUCKET};

mod tenants;
mod workers;
pub use tenants::{MAX_BACKLOG_LOOKUPS, TenantBacklog, tenant_backlogs};
pub use workers::{WorkerProcess, workers};

/// Why the overview could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusErrorKind {
    /// A stream of the topology is missing (run `conveyor setup`).
    NoStream,
    /// NATS could not be read.
    Unavailable,
}

impl fmt::Display for StatusErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoStream => "stream missing",
            Self::Unavailable => "status unavailable",
        })
    }
}

/// A failed overview.
pub type StatusError = Error<StatusErrorKind>;

/// One stream's size and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    /// Its name.
    pub stream: String,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Its age limit in seconds (0: none).
    pub max_age_secs: u64,
    /// Its size limit in bytes (-1: none).
    pub max_bytes: i64,
}

/// One group, summed over its partition consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// The group.
    pub group: String,
    /// Events not yet delivered.
    pub pending: u64,
    /// Events delivered and not yet acknowledged (running or waiting for a retry).
    pub ack_pending: u64,
    /// Events delivered more than once.
    pub redelivered: u64,
    /// Outstanding pull requests (bound worker processes keep some).
    pub waiting: u64,
    /// Worker processes running the group, as they announce themselves ([`workers`]); `None`
    /// where not read ([`backlogs`]).
    pub processes: Option<u64>,
    /// Of those, the ones bound to every partition consumer of the group.
    pub bound_processes: Option<u64>,
    /// Its consumers (16 per lane).
    pub consumers: u64,
    /// True when a consumer of the group is paused.
    pub paused: bool,
    /// The last delivery or ack of any of its consumers.
    pub last_active: Option<String>,
    /// Its dead letters in `DLQ`.
    pub dead_letters: u64,
    /// Events the stream removed (retention limits) before the group handled them, when
    /// sampled.
    #[serde(rename = "removed_unhandled", skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    /// True when `removed` is a lower bound.
    #[serde(rename = "removed_at_least", skip_serializing_if = "Option::is_none")]
    pub removed_at_least: Option<bool>,
}

/// The scheduler's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    /// Its node id.
    pub node: String,
    /// Since when it leads.
    pub since: Option<DateTime<Utc>>,
}

/// Everything `conveyor status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// `EVENTS` and `DLQ`.
    pub streams: Vec<StreamStatus>,
    /// Every group with a durable consumer on `EVENTS`, by name.
    pub groups: Vec<GroupStatus>,
    /// The scheduler's leader, if one holds the lease.
    pub scheduler_leader: Option<Leader>,
    /// Paused tenants.
    pub paused: Vec<Pause>,
    /// Events waiting in schedules (delays, debounces, retries, limits), when readable.
    pub scheduled: Option<u64>,
    /// Dead letters the `DLQ` limits removed, when counted.
    pub dead_letters_removed: Option<u64>,
    /// The worker processes running the groups ([`workers`]).
    pub workers: Vec<WorkerProcess>,
}

fn unavailable(what: String, e: impl std::error::Error + Send + Sync + 'static) -> StatusError {
    Error::with_source(StatusErrorKind::Unavailable, what, e)
}

/// Reads the overview. Also samples what retention limits removed (as the scheduler's leader
/// does), or reads the leader's counts when this user may not sample.
pub async fn overview(conn: &Connection) -> Result<Overview, StatusError> {
    let js = conn.jetstream();
    let mut streams = Vec::new();
    for name in [EVENTS_STREAM, DLQ_STREAM] {
        let mut s = js.get_stream(name).await.map_err(|e| {
            Error::with_source(
                StatusErrorKind::NoStream,
                format!("stream {name} not found; run `conveyor setup`"),
                e,
            )
        })?;
        let info = s
            .info()
            .await
            .map_err(|e| unavailable(format!("cannot read stream {name}"), e))?;
        streams.push(StreamStatus {
            stream: name.to_owned(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            max_age_secs: info.config.max_age.as_secs(),
            max_bytes: info.config.max_bytes,
        });
    }
    let dead = dead_letters_by_group(conn).await?;
    let mut by_group = consumers_by_group(conn).await?;
    let processes = workers(conn).await?;
    for row in by_group.values_mut() {
        row.dead_letters = dead.get(&row.group).copied().unwrap_or(0);
        let of_group = processes.iter().filter(|p| p.group == row.group);
        row.processes = Some(of_group.clone().count() as u64);
        row.bound_processes = Some(of_group.filter(|p| p.bound).count() as u64);
    }
    // Sampling here too keeps the counts going where no scheduler runs; a user who may not
    // sample reads what the scheduler's leader counted.
    let retention = match crate::retention::sample(conn).await {
        Ok(r) => Some(r),
        Err(_) => crate::retention::report(conn).await.ok(),
    };
    if let Some(r) = &retention {
        for g in &r.groups {
            if let Some(row) = by_group.get_mut(&g.group) {
                row.removed = Some(g.removed);
                row.removed_at_least = Some(g.at_least);
            }
        }
    }
    let scheduler_leader = match js.get_key_value(LEASES_BUCKET).await {
        Ok(store) => store
            .get("scheduler")
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Leader>(&v).ok()),
        Err(_) => None,
    };
    Ok(Overview {
        streams,
        groups: by_group.into_values().collect(),
        scheduler_leader,
        paused: crate::pause::paused(conn).await.unwrap_or_default(),
        scheduled: crate::delay::scheduled_count(conn, None).await.ok(),
        dead_letters_removed: retention.as_ref().map(|r| r.dead_letters_removed),
        workers: processes,
    })
}

/// Each group's backlog and in-flight events, summed over its partition consumers: the part of
/// the [`overview`] that reads consumer state only (no dead-letter scan, no sampling), for
/// callers that poll it often.
pub async fn backlogs(conn: &Connection) -> Result<Vec<GroupStatus>, StatusError> {
    Ok(consumers_by_group(conn).await?.into_values().collect())
}

/// Every group with a durable consumer on `EVENTS`, its consumers summed (dead letters and
/// removals not filled in).
async fn consumers_by_group(
    conn: &Connection,
) -> Result<BTreeMap<String, GroupStatus>, StatusError> {
    let events = conn
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read EVENTS".into(), e))?;
    let mut by_group: BTreeMap<String, GroupStatus> = BTreeMap::new();
    let mut infos = events.consumers();
    while let Some(info) = infos.next().await {
        let info = info.map_err(|e| unavailable("cannot list the consumers".into(), e))?;
        // Ephemeral consumers (a `conveyor tail`, a schedule listing) are no groups.
        if info.config.durable_name.is_none() {
            continue;
        }
        let (group, _) = crate::partition::group_of_consumer(&info.name);
        let row = by_group
            .entry(group.to_owned())
            .or_insert_with(|| GroupStatus {
                group: group.to_owned(),
                pending: 0,
                ack_pending: 0,
                redelivered: 0,
                waiting: 0,
                processes: None,
                bound_processes: None,
                consumers: 0,
                paused: false,
                last_active: None,
                dead_letters: 0,
                removed: None,
                removed_at_least: None,
            });
        row.pending += info.num_pending;
        row.ack_pending += info.num_ack_pending as u64;
        row.redelivered += info.num_redelivered as u64;
        row.waiting += info.num_waiting as u64;
        row.consumers += 1;
        row.paused |= info.paused;
        if let Some(t) = info.delivered.last_active {
            let t = t.to_string();
            if row.last_active.as_deref().is_none_or(|last| *last < *t) {
                row.last_active = Some(t);
            }
        }
    }
    Ok(by_group)
}

/// How many dead letters each group has.
async fn dead_letters_by_group(conn: &Connection) -> Result<BTreeMap<String, u64>, StatusError> {
    let mut out = BTreeMap::new();
    let mut letters = std::pin::pin!(crate::dlq::letters(conn, false));
    while let Some(stored) = letters.next().await {
        let stored = stored.map_err(|e| unavailable("cannot read the dead letters".into(), e))?;
        *out.entry(stored.letter.group).or_insert(0) += 1;
    }
    Ok(out)
}
