//! Job control: cancelling events, and the progress updates long handlers publish.
//!
//! # Cancellation
//!
//! [`cancel`] (or `conveyor cancel <event-id> --tenant <t> --group <g>`) stores a cancellation in
//! the key-value bucket [`CANCEL_BUCKET`] under `<group>.<tenant>.<event id>` (`=all` for every
//! group). The tenant is part of the key: event ids are chosen by publishers, so a cancellation
//! of one tenant's `order-1001` never touches another tenant's event with the same id. Every
//! worker watches the bucket: a handler already running for the event sees
//! [`Context::is_cancelled`](crate::Context::is_cancelled) turn true and
//! [`Context::cancelled`](crate::Context::cancelled) complete, and is stopped after its
//! cancel grace if it has not returned by then; an event not yet started is skipped. Either
//! way the event is acked and counted as `cancelled` (in metrics and run history), never
//! dead-lettered. Cancellations are kept for the bucket's `max_age` (7 days by default).
//!
//! # Progress
//!
//! [`Context::progress`](crate::Context::progress) publishes a [`ProgressUpdate`] on
//! `progress.<tenant>.<group>.<event id>` (the id escaped with
//! [`escape_token`]), so an app can subscribe to
//! `progress.<tenant>.>` and push updates to a browser. It is plain NATS (not stored): a
//! subscriber sees the updates sent while it listens; the run history keeps the last one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::error::Error;
use crate::history::escape_token;
use crate::tenant::TenantId;

/// Key-value bucket of cancellations.
pub const CANCEL_BUCKET: &str = "conveyor_cancel";
/// The group token of a cancellation that applies to every group.
pub const ALL_GROUPS: &str = "=all";
/// How long cancellations are kept when the bucket is created on demand.
pub const DEFAULT_CANCEL_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A stored cancellation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The tenant of the cancelled event.
    pub tenant: String,
    /// The cancelled event.
    pub event_id: String,
    /// The group it is cancelled for; `None`: every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// How many schedules of the event (a delayed event, delayed retries; see
    /// [`crate::delay`]) [`cancel`] removed before they fired; `None` when they could not be
    /// removed (they are then skipped as cancelled when they fire). Not stored.
    #[serde(skip)]
    pub unscheduled: Option<u64>,
}

/// Why a cancellation could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelErrorKind {
    /// The group name breaks the `[A-Za-z0-9_-]{1,64}` rule.
    InvalidGroup,
    /// The tenant id breaks the tenant rules.
    InvalidTenant,
    /// The event id is empty.
    InvalidEventId,
    /// The server could not store it.
    Unavailable,
}

impl fmt::Display for CancelErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidGroup => "invalid group",
            Self::InvalidTenant => "invalid tenant",
            Self::InvalidEventId => "invalid event id",
            Self::Unavailable => "cancellation not stored",
        })
    }
}

/// A cancellation that could not be stored.
pub type CancelError = Error<CancelErrorKind>;

/// The cancellation key of `tenant`'s event for a group (`None`: every group):
/// `<group>.<tenant>.<escaped event id>`.
pub fn cancel_key(group: Option<&str>, tenant: &TenantId, event_id: &str) -> String {
    format!(
        "{}.{tenant}.{}",
        group.unwrap_or(ALL_GROUPS),
        escape_token(event_id)
    )
}

/// Cancels `tenant`'s event `event_id` for `group` (`None`: for every group). Running handlers
/// are told within moments; deliveries not yet started are skipped; the event's schedules that
/// have not fired (a delayed event, delayed retries) are removed.
///
/// ```no_run
/// # async fn run(conn: conveyor::Connection) -> Result<(), Box<dyn std::error::Error>> {
/// let acme = conveyor::TenantId::parse("acme")?;
/// conveyor::control::cancel(&conn, &acme, "0190c8a4-7b1e-7cc0-8d1e-2f6f3a3b9c11", Some("analysis"), "customer asked").await?;
/// # Ok(()) }
/// ```
pub async fn cancel(
    conn: &Connection,
    tenant: &TenantId,
    event_id: &str,
    group: Option<&str>,
    reason: &str,
) -> Result<Cancellation, CancelError> {
    crate::envelope::validate_event_id(event_id)
        .map_err(|e| Error::restate(CancelErrorKind::InvalidEventId, e))?;
    if let Some(g) = group {
        crate::subject::validate_group_name(g)
            .map_err(|e| Error::restate(CancelErrorKind::InvalidGroup, e))?;
    }
    let store = BUCKET.open(conn).await.map_err(|e| {
        Error::new(
            CancelErrorKind::Unavailable,
            format!("cannot open the cancellation bucket {CANCEL_BUCKET}: {e}"),
        )
    })?;
    let cancellation = Cancellation {
        tenant: tenant.as_str().to_owned(),
        event_id: event_id.to_owned(),
        group: group.map(str::to_owned),
        reason: reason.to_owned(),
        requested_at: Utc::now(),
        unscheduled: None,
    };
    let body = serde_json::to_vec(&cancellation)
        .map_err(|e| Error::with_source(CancelErrorKind::Unavailable, "cannot encode", e))?;
    store
        .put(cancel_key(group, tenant, event_id), Bytes::from(body))
        .await
        .map_err(|e| {
            Error::with_source(
                CancelErrorKind::Unavailable,
                "the server did not store the cancellation",
                e,
            )
        })?;
    let mut cancellation = cancellation;
    match crate::delay::unschedule(conn, tenant, event_id, group).await {
        Ok(n) => cancellation.unscheduled = Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cancellation stored; the event's schedules stay until they fire and are skipped")
        }
    }
    Ok(cancellation)
}

/// The cancellation bucket, created on demand.
const BUCKET: crate::kvwatch::Bucket = crate::kvwatch::Bucket {
    name: CANCEL_BUCKET,
    description: "Conveyor cancelled events",
    max_age: DEFAULT_CANCEL_MAX_AGE,
};

/// A progress report of a running handler, as published on its progress subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressUpdate {
    /// The event being handled.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// Its tenant.
    pub tenant: String,
    /// The group handling it.
    pub group: String,
    /// The attempt.
    pub attempt: u32,
    /// 0 to 100.
    pub percent: u8,
    /// What the handler is doing.
    pub message: String,
    /// When it was reported.
    pub at: DateTime<Utc>,
}

pub use crate::subject::progress_subject;

/// What the worker knows about cancellations: those stored in the bucket, and a generation
/// that moves with every new one, so running deliveries know when to look.
#[derive(Debug)]
pub(crate) struct Cancellations {
    /// Event id → the (tenant, group token) pairs it is cancelled for (a lookup by `&str`
    /// allocates nothing).
    stored: RwLock<HashMap<String, HashSet<(String, String)>>>,
    count: AtomicUsize,
    generation: tokio::sync::watch::Sender<u64>,
    ready: crate::kvwatch::Ready,
}

impl Default for Cancellations {
    fn default() -> Self {
        Self {
            stored: RwLock::default(),
            count: AtomicUsize::new(0),
            generation: tokio::sync::watch::Sender::new(0),
            ready: crate::kvwatch::Ready::default(),
        }
    }
}

impl Cancellations {
    /// True when `tenant`'s event `event_id` is cancelled for `group`.
    pub(crate) fn is_cancelled(&self, group: &str, tenant: &str, event_id: &str) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Ok(stored) = self.stored.read() else {
            return false;
        };
        stored.get(event_id).is_some_and(|entries| {
            entries
                .iter()
                .any(|(t, g)| t == tenant && (g == group || g == ALL_GROUPS))
        })
    }

    /// A receiver that sees a change whenever a cancellation arrives; a running delivery then
    /// checks [`is_cancelled`](Self::is_cancelled). Subscribe before the first check, so a
    /// cancellation arriving in between is not missed.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn apply(&self, key: &str, cancelled: bool) {
        let mut tokens = key.splitn(3, '.');
        let (Some(group), Some(tenant), Some(id)) = (tokens.next(), tokens.next(), tokens.next())
        else {
            return;
        };
        let Some(event_id) = crate::history::unescape_token(id) else {
            return;
        };
        if let Ok(mut stored) = self.stored.write() {
            if cancelled {
                stored
                    .entry(event_id.clone())
                    .or_default()
                    .insert((tenant.to_owned(), group.to_owned()));
            } else if let Some(groups) = stored.get_mut(&event_id) {
                groups.remove(&(tenant.to_owned(), group.to_owned()));
                if groups.is_empty() {
                    stored.remove(&event_id);
                }
            }
            self.count.store(stored.len(), Ordering::Release);
        }
        if cancelled {
            tracing::debug!(group, tenant, %event_id, "cancellation received");
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Waits until the stored cancellations are loaded, at most `timeout`.
    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        self.ready.wait(timeout, "cancellations").await;
    }

    /// Watches the bucket until `shutdown`, re-watching after errors.
    pub(crate) async fn watch(self: Arc<Self>, conn: Connection, shutdown: CancellationToken) {
        crate::kvwatch::watch(self, conn, BUCKET, shutdown).await;
    }
}

impl crate::kvwatch::Watched for Cancellations {
    fn apply(&self, key: &str, present: bool) {
        Cancellations::apply(self, key, present);
    }

    fn set_ready(&self) {
        self.ready.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_cancellations_and_signals_running_deliveries() {
        let acme = TenantId::parse("acme").unwrap();
        let c = Cancellations::default();
        let mut rx = c.subscribe();
        assert!(!c.is_cancelled("g", "acme", "e:1"));
        c.apply(&cancel_key(Some("g"), &acme, "e:1"), true);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(c.is_cancelled("g", "acme", "e:1"));
        assert!(!c.is_cancelled("h", "acme", "e:1"));
        assert!(
            !c.is_cancelled("g", "globex", "e:1"),
            "another tenant's event with the same id"
        );
        c.apply(&cancel_key(None, &acme, "e:1"), true);
        assert!(rx.has_changed().unwrap());
        assert!(c.is_cancelled("h", "acme", "e:1"));
        assert!(!c.is_cancelled("h", "globex", "e:1"));
        c.apply(&cancel_key(None, &acme, "e:1"), false);
        c.apply(&cancel_key(Some("g"), &acme, "e:1"), false);
        assert!(!c.is_cancelled("g", "acme", "e:1"));
        assert!(!c.is_cancelled("h", "acme", "e:1"));
    }
}
