//! Hand-backs: deliveries a worker returns to the server without a result (on shutdown, or
//! because it cannot settle them yet), counted so they do not use up the event's attempts.
//!
//! JetStream counts every delivery, a Nak'ed one included, and has no way to take one back. So
//! the worker records each hand-back in the key-value bucket [`HANDBACKS_BUCKET`] (key
//! `<group>.<stream-sequence>`, value the count) before it Naks, and on a redelivery subtracts
//! the count from the server's delivery count: the attempt number a handler sees counts only
//! the deliveries it ran for. The group's consumer allows [`HANDBACK_ALLOWANCE`] deliveries beyond
//! its attempts for this; past that, hand-backs count, so an event handed back over and over
//! still ends in the dead letters.
//!
//! Only redeliveries read the bucket (a first delivery has no hand-backs) and only hand-backs
//! write it, so an event handled on its first delivery costs nothing here.

use async_nats::jetstream::kv;
use tokio::sync::OnceCell;

use crate::connection::Connection;

/// The bucket of hand-back counts.
pub const HANDBACKS_BUCKET: &str = "conveyor_handbacks";
/// Deliveries a group's consumer allows beyond its handlers' attempts, for hand-backs.
pub const HANDBACK_ALLOWANCE: u32 = 10;

/// The hand-back counts of the worker's groups.
pub(crate) struct HandBacks {
    conn: Connection,
    store: OnceCell<kv::Store>,
}

impl HandBacks {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            store: OnceCell::new(),
        }
    }

    /// The bucket, bound once (created when missing); `None` while it cannot be reached (tried
    /// again on the next call): hand-backs then count as attempts, as every delivery does.
    async fn store(&self) -> Option<&kv::Store> {
        let bound = self
            .store
            .get_or_try_init(|| async {
                let js = self.conn.jetstream();
                if let Ok(store) = js.get_key_value(HANDBACKS_BUCKET).await {
                    return Ok(store);
                }
                let created = js
                    .create_key_value(kv::Config {
                        bucket: HANDBACKS_BUCKET.into(),
                        description: "Conveyor deliveries handed back without a result".into(),
                        history: 1,
                        max_age: crate::topology::HANDBACKS_MAX_AGE,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => Ok(store),
                    Err(e) => js.get_key_value(HANDBACKS_BUCKET).await.map_err(|_| e),
                }
            })
            .await;
        match bound {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(error = %e, "hand-back bucket unavailable; this hand-back counts as an attempt");
                None
            }
        }
    }

    /// How many times the event at `sequence` was handed back by `group`.
    pub(crate) async fn count(&self, group: &str, sequence: u64) -> u32 {
        let Some(store) = self.store().await else {
            return 0;
        };
        match store.get(key(group, sequence)).await {
            Ok(Some(value)) => std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(%group, sequence, error = %e, "cannot read hand-backs; counting every delivery");
                0
            }
        }
    }

    /// Records one more hand-back (`before` were recorded already). Must complete before the
    /// Nak is sent, so the redelivery reads it.
    pub(crate) async fn record(&self, group: &str, sequence: u64, before: u32) {
        let Some(store) = self.store().await else {
            return;
        };
        let value = before.saturating_add(1).to_string();
        if let Err(e) = store.put(key(group, sequence), value.into()).await {
            tracing::warn!(%group, sequence, error = %e, "cannot record a hand-back; it will count as an attempt");
        }
    }

    /// Forgets the hand-backs of an event that is settled for good.
    pub(crate) async fn forget(&self, group: &str, sequence: u64) {
        if let Some(store) = self.store().await
            && let Err(e) = store.purge(key(group, sequence)).await
        {
            tracing::debug!(%group, sequence, error = %e, "cannot clear hand-backs; they expire");
        }
    }
}

fn key(group: &str, sequence: u64) -> String {
    format!("{group}.{sequence}")
}
