//! Cluster-wide concurrency limits: at most N runs at once for a whole group, per tenant, or per
//! key derived from the event (Trigger.dev's `concurrencyKey`), across every worker process.
//!
//! The runs of a key are leases in the key-value bucket [`CONCURRENCY_BUCKET`] (key
//! `<group>.<scope>`), one JSON value per key holding the running leases (each with its expiry:
//! the handler's timeout plus a margin, so a crashed process's lease frees itself) and the
//! events waiting for room, updated with compare-and-set. A delivery that finds its key full is
//! acked and waits as a delayed copy for its group (see [`crate::delay`]), so it holds no
//! handler slot and no `max_ack_pending` slot; it is put in the key's queue, and the run that
//! ends next makes the first waiting copy fire at once (its schedule replaced by one due now).
//! A copy also fires after [`ROOM_RECHECK`] whatever happens, and asks again. Waiting is not an
//! attempt, and an event is never dropped or dead-lettered for waiting.
//!
//! A limit of 1 per tenant gives "one run per tenant at a time" (an API that takes one call per
//! account, daily reports that must not overlap).
//!
//! ```
//! use conveyor::{Group, concurrency::ConcurrencyLimit};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct Sync { shop: String }
//! # impl conveyor::Event for Sync { const TYPE: &'static str = "shop.sync"; }
//! # async fn sync(_: Sync, _: conveyor::Context) -> conveyor::HandlerResult { Ok(()) }
//! // One sync per shop at a time, across every worker.
//! let group = Group::new("shop-sync")
//!     .concurrency_limit(ConcurrencyLimit::per_key(1, |e| {
//!         let data: serde_json::Value = serde_json::from_str(e.data.get()).ok()?;
//!         data["shop"].as_str().map(str::to_owned)
//!     }))
//!     .handle(sync);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::connection::Connection;
use crate::error::Error;
pub use crate::scope::{KeyFn, KeyInput, Scope};

/// The bucket of running leases and waiting events.
pub const CONCURRENCY_BUCKET: &str = "conveyor_concurrency";
/// How long a key's state is kept without a change.
pub const CONCURRENCY_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a waiting copy waits at most before it fires and asks for room again (in case the
/// run that should have woken it ended with its process).
pub const ROOM_RECHECK: Duration = Duration::from_secs(30);
/// How much longer than the handler's timeout a lease lives.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Compare-and-set attempts before a contended key is an error (with growing, jittered pauses
/// between them: at most about 2 s in all).
const CAS_TRIES: u32 = 64;

/// A cluster-wide limit of concurrent runs of a group, for the whole group, each tenant or each
/// key derived from the event.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    /// Runs at once (at least 1).
    pub limit: u32,
    /// Whose runs are counted.
    pub scope: Scope,
}

impl PartialEq for ConcurrencyLimit {
    fn eq(&self, other: &Self) -> bool {
        self.limit == other.limit
            && std::mem::discriminant(&self.scope) == std::mem::discriminant(&other.scope)
    }
}

impl ConcurrencyLimit {
    /// At most `limit` runs at once for the whole group, across every process.
    pub fn per_group(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            scope: Scope::Group,
        }
    }

    /// At most `limit` runs at once for each tenant.
    pub fn per_tenant(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            scope: Scope::Tenant,
        }
    }

    /// At most `limit` runs at once for each key that `key` derives from an event (counted
    /// within each tenant); events it gives no key are not limited.
    pub fn per_key(
        limit: u32,
        key: impl Fn(KeyInput<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            limit: limit.max(1),
            scope: Scope::Key(Arc::new(key)),
        }
    }
}

/// The stored state of one key.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Room {
    /// Running leases: lease id → expiry (ms since the epoch).
    #[serde(default)]
    running: BTreeMap<String, i64>,
    /// Schedule subjects of waiting copies, first come first.
    #[serde(default)]
    waiting: Vec<String>,
}

impl Room {
    fn prune(&mut self, now_ms: i64) {
        self.running.retain(|_, expires| *expires > now_ms);
    }
}

/// Why the limit's state could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConcurrencyErrorKind {
    /// The bucket could not be read or written, or stayed contended.
    Unavailable,
}

impl fmt::Display for ConcurrencyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("concurrency limit state unavailable")
    }
}

/// A failed use of a concurrency limit's state.
pub type ConcurrencyError = Error<ConcurrencyErrorKind>;

fn unavailable(what: &str, key: &str, e: &dyn fmt::Display) -> ConcurrencyError {
    Error::new(
        ConcurrencyErrorKind::Unavailable,
        format!("{what} concurrency key {key:?}: {e}"),
    )
}

/// A run's lease on its key.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) key: String,
    pub(crate) id: String,
}

/// A group's concurrency limiter.
pub(crate) struct Limiter {
    conn: Connection,
    limit: ConcurrencyLimit,
    store: OnceCell<kv::Store>,
}

impl Limiter {
    pub(crate) fn new(conn: Connection, limit: ConcurrencyLimit) -> Self {
        Self {
            conn,
            limit,
            store: OnceCell::new(),
        }
    }

    pub(crate) fn limit(&self) -> &ConcurrencyLimit {
        &self.limit
    }

    async fn store(&self) -> Result<&kv::Store, ConcurrencyError> {
        self.store
            .get_or_try_init(|| async {
                BUCKET.open(&self.conn).await.map_err(|e| {
                    Error::new(
                        ConcurrencyErrorKind::Unavailable,
                        format!("cannot open the concurrency bucket {CONCURRENCY_BUCKET}: {e}"),
                    )
                })
            })
            .await
    }

    /// Reads `key`'s room, applies `change`, and stores it with compare-and-set, retrying on
    /// conflicts. `change` returns what the caller gets, or `None` to store nothing.
    async fn update<T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Room, i64) -> Option<T>,
    ) -> Result<Option<T>, ConcurrencyError> {
        let store = self.store().await?;
        for attempt in 0..CAS_TRIES {
            crate::kvwatch::contention_pause(attempt).await;
            let entry = store
                .entry(key)
                .await
                .map_err(|e| unavailable("cannot read", key, &e))?;
            let live = entry.as_ref().filter(|e| e.operation == kv::Operation::Put);
            let mut room: Room = live
                .and_then(|e| serde_json::from_slice(&e.value).ok())
                .unwrap_or_default();
            let now = Utc::now().timestamp_millis();
            room.prune(now);
            let Some(out) = change(&mut room, now) else {
                return Ok(None);
            };
            let value = Bytes::from(
                serde_json::to_vec(&room).map_err(|e| unavailable("cannot encode", key, &e))?,
            );
            let written = match live {
                Some(e) => match store.update(key, value, e.revision).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => return Err(unavailable("cannot write", key, &e)),
                },
                None => match store.create(key, value).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(unavailable("cannot write", key, &e)),
                },
            };
            if written {
                return Ok(Some(out));
            }
        }
        Err(Error::new(
            ConcurrencyErrorKind::Unavailable,
            format!("concurrency key {key:?} stayed contended for {CAS_TRIES} tries"),
        ))
    }

    /// Takes a lease on `key` for a run that may last `timeout`: `None` when the key is full.
    /// `came_from`, the schedule of a waiting copy that fired, leaves the key's queue when the
    /// lease is taken (and keeps its place when it is not).
    pub(crate) async fn acquire(
        &self,
        key: &str,
        timeout: Duration,
        came_from: Option<&str>,
    ) -> Result<Option<Lease>, ConcurrencyError> {
        let id = crate::envelope::new_event_id();
        let ttl =
            i64::try_from(timeout.saturating_add(LEASE_MARGIN).as_millis()).unwrap_or(i64::MAX / 2);
        let limit = usize::try_from(self.limit.limit).unwrap_or(usize::MAX);
        let taken = self
            .update(key, |room, now| {
                (room.running.len() < limit).then(|| {
                    room.running.insert(id.clone(), now.saturating_add(ttl));
                    if let Some(subject) = came_from {
                        room.waiting.retain(|w| w != subject);
                    }
                })
            })
            .await?;
        Ok(taken.map(|()| Lease {
            key: key.to_owned(),
            id,
        }))
    }

    /// Queues the copy scheduled on `subject` to be woken when `key` has room; true when the
    /// key has room already (the copy should be woken at once).
    pub(crate) async fn wait(&self, key: &str, subject: &str) -> Result<bool, ConcurrencyError> {
        let limit = usize::try_from(self.limit.limit).unwrap_or(usize::MAX);
        let mut room_now = false;
        self.update(key, |room, _| {
            room_now = room.running.len() < limit;
            if !room.waiting.iter().any(|w| w == subject) {
                room.waiting.push(subject.to_owned());
            }
            Some(())
        })
        .await?;
        Ok(room_now)
    }

    /// Ends `lease` and takes the first waiting copy off the key's queue, to be woken.
    pub(crate) async fn release(&self, lease: &Lease) -> Result<Option<String>, ConcurrencyError> {
        let next = self
            .update(&lease.key, |room, _| {
                room.running.remove(&lease.id);
                Some((!room.waiting.is_empty()).then(|| room.waiting.remove(0)))
            })
            .await?;
        Ok(next.flatten())
    }

    /// Takes the next waiting copy off `key`'s queue (the one popped before had fired already).
    pub(crate) async fn next_waiting(&self, key: &str) -> Result<Option<String>, ConcurrencyError> {
        let next = self
            .update(key, |room, _| {
                (!room.waiting.is_empty()).then(|| room.waiting.remove(0))
            })
            .await?;
        Ok(next)
    }
}

const BUCKET: crate::kvwatch::Bucket = crate::kvwatch::Bucket {
    name: CONCURRENCY_BUCKET,
    description: "Conveyor running leases and waiting events per concurrency key",
    max_age: CONCURRENCY_MAX_AGE,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_leases_free_their_room() {
        let mut room = Room::default();
        room.running.insert("a".into(), 1_000);
        room.running.insert("b".into(), 3_000);
        room.prune(2_000);
        assert_eq!(room.running.keys().collect::<Vec<_>>(), ["b"]);
        let json = serde_json::to_string(&room).unwrap();
        assert_eq!(serde_json::from_str::<Room>(&json).unwrap(), room);
    }
}
