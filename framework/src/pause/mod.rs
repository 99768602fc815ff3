//! Pausing a tenant: its events are kept and not run, every other tenant is unaffected, and
//! resuming runs the kept events in their order.
//!
//! [`pause`] (or `conveyor tenants pause acme [--group G]`) stores the pause in the key-value
//! bucket [`PAUSED_BUCKET`] under `<tenant>.<group>` (`<tenant>.=all` for every group), so it
//! survives restarts. Every worker watches the bucket. A delivery of a paused tenant's event is
//! not run: the worker stores a copy in the `PARKED` stream, on
//! `parked.<group>.<tenant>.<type>` (plus the lane token), and acks the event. Parked events
//! wait outside the group's consumers, so they hold no handler slot and no `max_ack_pending`
//! slot: other tenants, even those in the same partition, are served as usual.
//!
//! [`resume`] removes the pause, then re-publishes the tenant's parked events in the order they
//! were parked, each for the group that parked it only (header
//! [`REPLAY_FOR_HEADER`](crate::dlq::REPLAY_FOR_HEADER): other groups ack it without running),
//! and removes them from `PARKED`. The envelope (and so the event id) is unchanged; the run
//! starts again at attempt 1.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::envelope::{LANE_MARKER, event_lane, split_event_subject};
use crate::error::Error;
use crate::kvwatch::{Bucket, Watched};
use crate::tenant::TenantId;

/// Key-value bucket of paused tenants.
pub const PAUSED_BUCKET: &str = "conveyor_paused";
/// The stream holding the events of paused tenants (`parked.>`).
pub const PARKED_STREAM: &str = "PARKED";
/// The group token of a pause that applies to every group.
pub const ALL_GROUPS: &str = crate::control::ALL_GROUPS;

mod group;
mod park;

pub use group::{pause_group, resume_group};
pub(crate) use park::park;
use park::unpark;

const BUCKET: Bucket = Bucket {
    name: PAUSED_BUCKET,
    description: "Conveyor paused tenants",
    max_age: Duration::ZERO,
};

/// A stored pause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// The paused tenant.
    pub tenant: String,
    /// The group it is paused for; `None`: every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Since when.
    pub paused_at: DateTime<Utc>,
}

/// Why pausing or resuming failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PauseErrorKind {
    /// The group name breaks the `[A-Za-z0-9_-]{1,64}` rule.
    InvalidGroup,
    /// The group has no consumers (no worker has run it yet).
    UnknownGroup,
    /// The server could not store, read or re-publish.
    Unavailable,
}

impl fmt::Display for PauseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidGroup => "invalid group",
            Self::UnknownGroup => "unknown group",
            Self::Unavailable => "pause store unavailable",
        })
    }
}

/// A pause or resume that failed.
pub type PauseError = Error<PauseErrorKind>;

fn unavailable(what: &str, e: impl fmt::Display) -> PauseError {
    Error::new(PauseErrorKind::Unavailable, format!("{what}: {e}"))
}

/// The pause key of `tenant` for `group` (`None`: every group): `<tenant>.<group>`.
pub fn pause_key(tenant: &TenantId, group: Option<&str>) -> String {
    format!("{tenant}.{}", group.unwrap_or(ALL_GROUPS))
}

fn check_group(group: Option<&str>) -> Result<(), PauseError> {
    if let Some(g) = group {
        crate::subject::validate_group_name(g)
            .map_err(|e| Error::restate(PauseErrorKind::InvalidGroup, e))?;
    }
    Ok(())
}

/// Pauses `tenant` for `group` (`None`: every group). Workers see it within moments; events
/// already running finish.
///
/// ```no_run
/// # async fn run(conn: conveyor::Connection) -> Result<(), Box<dyn std::error::Error>> {
/// let acme = conveyor::TenantId::parse("acme")?;
/// conveyor::pause::pause(&conn, &acme, None, "migration").await?;
/// // ...
/// let resumed = conveyor::pause::resume(&conn, &acme, None).await?;
/// println!("{resumed} parked events run again");
/// # Ok(()) }
/// ```
pub async fn pause(
    conn: &Connection,
    tenant: &TenantId,
    group: Option<&str>,
    reason: &str,
) -> Result<Pause, PauseError> {
    check_group(group)?;
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the pause bucket", e))?;
    let pause = Pause {
        tenant: tenant.as_str().to_owned(),
        group: group.map(str::to_owned),
        reason: reason.to_owned(),
        paused_at: Utc::now(),
    };
    let body = serde_json::to_vec(&pause).map_err(|e| unavailable("cannot encode", e))?;
    store
        .put(pause_key(tenant, group), Bytes::from(body))
        .await
        .map_err(|e| unavailable("the server did not store the pause", e))?;
    Ok(pause)
}

/// Every stored pause.
pub async fn paused(conn: &Connection) -> Result<Vec<Pause>, PauseError> {
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the pause bucket", e))?;
    let mut keys = store
        .keys()
        .await
        .map_err(|e| unavailable("cannot list pauses", e))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| unavailable("cannot list pauses", e))?;
        if let Some(value) = store
            .get(&key)
            .await
            .map_err(|e| unavailable("cannot read a pause", e))?
            && let Ok(p) = serde_json::from_slice::<Pause>(&value)
        {
            out.push(p);
        }
    }
    Ok(out)
}

/// How many of `tenant`'s events wait in `PARKED` (for any group).
pub async fn parked_count(conn: &Connection, tenant: &TenantId) -> Result<u64, PauseError> {
    let stream = match conn.jetstream().get_stream(PARKED_STREAM).await {
        Ok(s) => s,
        // Nothing was ever parked.
        Err(_) => return Ok(0),
    };
    let mut subjects = stream
        .info_with_subjects(format!("parked.*.{tenant}.>"))
        .await
        .map_err(|e| unavailable("cannot read PARKED", e))?;
    let mut total = 0u64;
    while let Some(entry) = subjects.next().await {
        let (_, n) = entry.map_err(|e| unavailable("cannot read PARKED", e))?;
        total += n as u64;
    }
    Ok(total)
}

/// Removes the pause of `tenant` for `group` (`None`: the pause for every group), then
/// re-publishes the tenant's events parked by that group (`None`: by any group), oldest first,
/// and removes them from `PARKED`. Returns how many were re-published. A pause for every group
/// still holds the tenant's events after `resume(.., Some(group))`.
pub async fn resume(
    conn: &Connection,
    tenant: &TenantId,
    group: Option<&str>,
) -> Result<u64, PauseError> {
    check_group(group)?;
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the pause bucket", e))?;
    store
        .purge(pause_key(tenant, group))
        .await
        .map_err(|e| unavailable("the server did not remove the pause", e))?;
    // Workers that parked an event just before they saw the resume: one more pass after the
    // watch has had time to reach them.
    let mut total = unpark(conn, tenant, group).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    total += unpark(conn, tenant, group).await?;
    Ok(total)
}

/// What a worker knows about paused tenants: (tenant, group token) pairs.
#[derive(Debug, Default)]
pub(crate) struct Pauses {
    stored: RwLock<HashSet<(String, String)>>,
    count: AtomicUsize,
    ready: crate::kvwatch::Ready,
}

impl Pauses {
    /// True when `tenant` is paused for `group`.
    pub(crate) fn is_paused(&self, group: &str, tenant: &str) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Ok(stored) = self.stored.read() else {
            return false;
        };
        stored
            .iter()
            .any(|(t, g)| t == tenant && (g == group || g == ALL_GROUPS))
    }

    /// Waits until the stored pauses are loaded, at most `timeout`.
    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        self.ready.wait(timeout, "paused tenants").await;
    }

    /// Watches the bucket until `shutdown`, re-watching after errors.
    pub(crate) async fn watch(self: Arc<Self>, conn: Connection, shutdown: CancellationToken) {
        crate::kvwatch::watch(self, conn, BUCKET, shutdown).await;
    }
}

impl Watched for Pauses {
    fn apply(&self, key: &str, present: bool) {
        let Some((tenant, group)) = key.split_once('.') else {
            return;
        };
        if let Ok(mut stored) = self.stored.write() {
            let entry = (tenant.to_owned(), group.to_owned());
            if present {
                tracing::info!(tenant, group, "tenant paused");
                stored.insert(entry);
            } else {
                stored.remove(&entry);
            }
            self.count.store(stored.len(), Ordering::Release);
        }
    }

    fn set_ready(&self) {
        self.ready.set();
    }
}

#[cfg(test)]
mod tests {
    use super::park::{events_subject, parked_subject};
    use super::*;

    #[test]
    fn pauses_apply_per_group_or_to_all() {
        let acme = TenantId::parse("acme").unwrap();
        let p = Pauses::default();
        assert!(!p.is_paused("g", "acme"));
        p.apply(&pause_key(&acme, Some("g")), true);
        assert!(p.is_paused("g", "acme"));
        assert!(!p.is_paused("h", "acme"));
        assert!(!p.is_paused("g", "globex"));
        p.apply(&pause_key(&acme, None), true);
        assert!(p.is_paused("h", "acme"));
        p.apply(&pause_key(&acme, None), false);
        p.apply(&pause_key(&acme, Some("g")), false);
        assert!(!p.is_paused("g", "acme"));
    }

    #[test]
    fn parked_subjects_round_trip_and_refuse_forgeries() {
        for stored in [
            "events.~.15.acme.order.created.~high",
            "events.acme.15.order.created.~high",
        ] {
            let parked = parked_subject("billing", stored).unwrap();
            assert_eq!(parked, "parked.billing.acme.order.created.~high");
        }
        let parked = parked_subject("billing", "events.~.15.acme.order.created.~high").unwrap();
        assert_eq!(
            events_subject(&parked),
            Some(("billing", "events.acme.order.created.~high".to_owned()))
        );
        assert_eq!(events_subject("parked.billing.acme.$JS.API.x"), None);
        assert_eq!(events_subject("parked.bil*ling.acme.order.created"), None);
        assert_eq!(events_subject("parked.billing.acme"), None);
    }
}
