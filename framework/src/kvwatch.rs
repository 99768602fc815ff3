//! Key-value buckets a worker keeps a live copy of (cancellations, paused tenants): opening a
//! bucket (created when missing) and watching it, re-watching after errors.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bucket: its name, description and how long values live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) max_age: Duration,
}

impl Bucket {
    /// Opens the bucket, creating it when missing.
    pub(crate) async fn open(&self, conn: &Connection) -> Result<kv::Store, BoxError> {
        let js = conn.jetstream();
        if let Ok(store) = js.get_key_value(self.name).await {
            return Ok(store);
        }
        match js
            .create_key_value(kv::Config {
                bucket: self.name.into(),
                description: self.description.into(),
                history: 1,
                max_age: self.max_age,
                ..Default::default()
            })
            .await
        {
            Ok(store) => Ok(store),
            // Another process created it meanwhile.
            Err(e) => js.get_key_value(self.name).await.map_err(|_| e.into()),
        }
    }
}

/// Waits before compare-and-set attempt `attempt` (0-based) on a contended key: nothing before
/// the first, then a random pause of up to 1, 2, 4 ... 32 ms, so writers that lost a race to the
/// same key spread out instead of colliding again.
pub(crate) async fn contention_pause(attempt: u32) {
    if attempt == 0 {
        return;
    }
    let ceiling_us = 1_000u64 << attempt.min(6).saturating_sub(1);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=ceiling_us))).await;
}

/// Set once a watched bucket's stored keys are loaded; waited for before groups start.
#[derive(Debug, Default)]
pub(crate) struct Ready {
    flag: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Ready {
    pub(crate) fn set(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Waits until set, at most `timeout`; warns (naming `what`) when it is not.
    pub(crate) async fn wait(&self, timeout: Duration, what: &str) {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if self.flag.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            tracing::warn!("{what} not loaded yet; starting without them");
        }
    }
}

/// What a watched bucket updates.
pub(crate) trait Watched: Send + Sync + 'static {
    /// A key was put (`present`) or deleted.
    fn apply(&self, key: &str, present: bool);
    /// A key was put with `value` (`None`: deleted); for targets that read values.
    fn apply_entry(&self, key: &str, value: Option<&[u8]>) {
        self.apply(key, value.is_some());
    }
    /// Every stored key has been applied (or the bucket cannot be reached: nothing waits).
    fn set_ready(&self);
}

/// Applies every key of `bucket` to `target`, then every change, until `shutdown`; re-watches
/// after errors, with a backoff.
pub(crate) async fn watch<W: Watched>(
    target: Arc<W>,
    conn: Connection,
    bucket: Bucket,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    let mut warned = false;
    while !shutdown.is_cancelled() {
        match watch_once(&*target, &conn, bucket, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if warned {
                    tracing::debug!(bucket = bucket.name, error = %e, "bucket watch failed");
                } else {
                    tracing::warn!(bucket = bucket.name, error = %e, "cannot watch the bucket; retrying");
                    warned = true;
                }
                // Do not hold the groups back while the bucket is unreachable.
                target.set_ready();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn watch_once<W: Watched>(
    target: &W,
    conn: &Connection,
    bucket: Bucket,
    shutdown: &CancellationToken,
) -> Result<(), BoxError> {
    let store = bucket.open(conn).await?;
    let mut watch = store.watch_with_history(">").await?;
    let status = store.status().await?;
    if status.values() == 0 {
        target.set_ready();
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            entry = watch.next() => {
                let Some(entry) = entry else { return Err("watch ended".into()) };
                let entry = entry?;
                let present = matches!(entry.operation, kv::Operation::Put);
                target.apply_entry(&entry.key, present.then_some(&entry.value[..]));
                if entry.delta == 0 {
                    target.set_ready();
                }
            }
        }
    }
}
