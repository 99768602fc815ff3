//! Leader election with a lease in a key-value bucket whose `max_age` is the lease TTL.
//!
//! Campaign: `create` the key (fails while someone holds it). Renew: `update` with the revision
//! of the last write (fails if anyone else wrote). The bucket's `max_age` expires a lease that
//! is not renewed. The leader acts only until its last successful renewal's *send* time plus 80%
//! of the TTL, so a leader that cannot renew stops before the server lets a follower in; it
//! stops at once when a renewal fails, and deletes the key on graceful shutdown so a follower
//! takes over without waiting for the TTL.

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The key-value bucket holding the scheduler lease.
pub const LEASE_BUCKET: &str = conveyor::topology::LEASES_BUCKET;
/// The lease key.
pub const LEASE_KEY: &str = "scheduler";
/// How often a follower tries to take the lease.
pub const CAMPAIGN_EVERY: Duration = Duration::from_millis(200);

/// Who holds the lease, as stored in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The leader's node id.
    pub node: String,
    /// When it became leader.
    pub since: DateTime<Utc>,
}

/// This process's view of its leadership.
#[derive(Debug)]
pub struct Leadership {
    forced: bool,
    state: Mutex<Option<(Instant, DateTime<Utc>)>>,
}

impl Leadership {
    pub(crate) fn new(forced: bool) -> Self {
        Self {
            forced,
            state: Mutex::new(None),
        }
    }

    /// True while this process may act as leader.
    pub fn is_leader(&self) -> bool {
        self.forced
            || self
                .state
                .lock()
                .is_ok_and(|s| s.is_some_and(|(until, _)| Instant::now() < until))
    }

    /// The term of this process's leadership: when it acquired the lease it still holds (or
    /// last held: a renewal that is late but succeeds keeps the term). A new acquisition is a new
    /// term; `None` before the first one, after losing the lease, and for a forced leader.
    pub(crate) fn term(&self) -> Option<DateTime<Utc>> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.map(|(_, since)| since))
    }

    pub(crate) fn set(&self, until: Instant, since: DateTime<Utc>) {
        if let Ok(mut s) = self.state.lock() {
            *s = Some((until, since));
        }
    }

    fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = None;
        }
    }
}

/// Opens the lease bucket with `max_age` = `ttl`, creating it or bringing its TTL up to date
/// (every scheduler process of a deployment must use the same TTL).
pub async fn lease_bucket(
    js: &async_nats::jetstream::Context,
    ttl: Duration,
) -> Result<kv::Store, crate::RunError> {
    js.create_or_update_key_value(kv::Config {
        bucket: LEASE_BUCKET.into(),
        description: "Conveyor scheduler leader lease".into(),
        history: 1,
        max_age: ttl,
        ..Default::default()
    })
    .await
    .map_err(|e| crate::error::bucket_error(LEASE_BUCKET, e))
}

/// Campaigns for and keeps the lease until `shutdown`, then releases it.
pub(crate) async fn run(
    store: kv::Store,
    node: String,
    ttl: Duration,
    leadership: std::sync::Arc<Leadership>,
    shutdown: CancellationToken,
) {
    let renew_every = ttl / 3;
    let act_for = ttl.mul_f64(0.8);
    let mut held: Option<(u64, DateTime<Utc>)> = None;
    loop {
        match held {
            None => {
                if shutdown.is_cancelled() {
                    return;
                }
                let since = Utc::now();
                let value = serde_json::to_vec(&LeaderInfo {
                    node: node.clone(),
                    since,
                })
                .unwrap_or_default();
                let sent = Instant::now();
                match store.create(LEASE_KEY, value.into()).await {
                    Ok(rev) => {
                        leadership.set(sent + act_for, since);
                        held = Some((rev, since));
                        tracing::info!(node = %node, "became scheduler leader");
                    }
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                    Err(e) => tracing::warn!(error = %e, "lease campaign failed"),
                }
                if held.is_none() {
                    tokio::select! {
                        () = tokio::time::sleep(CAMPAIGN_EVERY) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            Some((rev, since)) => {
                tokio::select! {
                    () = tokio::time::sleep(renew_every) => {}
                    () = shutdown.cancelled() => {
                        leadership.clear();
                        match store.delete_expect_revision(LEASE_KEY, Some(rev)).await {
                            Ok(()) => tracing::info!(node = %node, "released scheduler lease"),
                            Err(e) => tracing::warn!(error = %e, "could not release the lease; it expires after its TTL"),
                        }
                        return;
                    }
                }
                let value = serde_json::to_vec(&LeaderInfo {
                    node: node.clone(),
                    since,
                })
                .unwrap_or_default();
                let sent = Instant::now();
                match store.update(LEASE_KEY, value.into(), rev).await {
                    Ok(new_rev) => {
                        leadership.set(sent + act_for, since);
                        held = Some((new_rev, since));
                    }
                    Err(e) => {
                        leadership.clear();
                        held = None;
                        tracing::warn!(node = %node, error = %e, "lost scheduler leadership");
                    }
                }
            }
        }
    }
}

/// Reads who holds the lease, if anyone.
pub async fn current_leader(store: &kv::Store) -> Option<LeaderInfo> {
    let entry = store.entry(LEASE_KEY).await.ok()??;
    if entry.operation != kv::Operation::Put {
        return None;
    }
    serde_json::from_slice(&entry.value).ok()
}
