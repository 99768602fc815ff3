//! Cluster-wide rate limits: at most N runs per period for a whole group, per tenant, or per key
//! derived from the event, holding across every worker process.
//!
//! A limit is a generic cell rate algorithm (GCRA) whose state, one theoretical arrival time per
//! key, lives in the key-value bucket [`RATES_BUCKET`] (key `<group>.<scope>`) and is updated
//! with compare-and-set, so every process of the group shares it. Each delivery takes the next
//! free slot of its key: a run every `period / limit`, with up to `burst` runs at once. A delivery
//! whose slot is now runs; one whose slot is later is acked and waits as a delayed copy for the
//! group (see [`crate::delay`]) that fires at its slot and runs then without asking again. So an
//! event over the limit holds no handler slot and no `max_ack_pending` slot while it waits, is
//! never dropped, and is never dead-lettered for being over the limit; the attempt it gets is the
//! one it would have had.
//!
//! Slots are kept for the bucket's `max_age` (7 days): a backlog whose slots reach further than
//! that is admitted from then on as if the key were new.
//!
//! ```
//! use std::time::Duration;
//! use conveyor::{Group, rate::RateLimit};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct Call { partner: String }
//! # impl conveyor::Event for Call { const TYPE: &'static str = "partner.call"; }
//! # async fn call(_: Call, _: conveyor::Context) -> conveyor::HandlerResult { Ok(()) }
//! // The partner API takes 10 calls a second per tenant.
//! let partner = Group::new("partner")
//!     .rate_limit(RateLimit::per_tenant(10, Duration::from_secs(1)))
//!     .handle(call);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use crate::connection::Connection;
use crate::error::Error;
pub use crate::scope::{KeyFn, KeyInput, Scope};

/// The bucket of rate-limit slots.
pub const RATES_BUCKET: &str = "conveyor_rates";
/// How long a key's slot is kept.
pub const RATES_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Header of a delayed copy waiting for its rate-limit slot: the slot (RFC 3339). A copy fired
/// from the group's own schedule with this header runs without taking another slot.
pub const RATE_SLOT_HEADER: &str = "Conveyor-Rate-Slot";

/// A cluster-wide rate limit of a group: at most `limit` runs per `period`, evenly spaced, with
/// up to `burst` at once.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Runs per period (at least 1).
    pub limit: u32,
    /// The period.
    pub period: Duration,
    /// Runs that may start at once (at least 1; default 1: evenly spaced).
    pub burst: u32,
    /// Whose runs are counted.
    pub scope: Scope,
}

impl PartialEq for RateLimit {
    fn eq(&self, other: &Self) -> bool {
        self.limit == other.limit
            && self.period == other.period
            && self.burst == other.burst
            && std::mem::discriminant(&self.scope) == std::mem::discriminant(&other.scope)
    }
}

impl RateLimit {
    fn new(limit: u32, period: Duration, scope: Scope) -> Self {
        Self {
            limit: limit.max(1),
            period,
            burst: 1,
            scope,
        }
    }

    /// At most `limit` runs per `period` for the whole group.
    pub fn per_group(limit: u32, period: Duration) -> Self {
        Self::new(limit, period, Scope::Group)
    }

    /// At most `limit` runs per `period` for each tenant.
    pub fn per_tenant(limit: u32, period: Duration) -> Self {
        Self::new(limit, period, Scope::Tenant)
    }

    /// At most `limit` runs per `period` for each key that `key` derives from an event (keys are
    /// counted within each tenant); events it gives no key are not limited.
    ///
    /// ```
    /// use std::time::Duration;
    /// use conveyor::rate::RateLimit;
    /// // 5 calls a minute per partner of each tenant.
    /// let per_partner = RateLimit::per_key(5, Duration::from_secs(60), |e| {
    ///     let data: serde_json::Value = serde_json::from_str(e.data.get()).ok()?;
    ///     data["partner"].as_str().map(str::to_owned)
    /// });
    /// # let _ = per_partner;
    /// ```
    pub fn per_key(
        limit: u32,
        period: Duration,
        key: impl Fn(KeyInput<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self::new(limit, period, Scope::Key(Arc::new(key)))
    }

    /// Lets up to `burst` runs start at once (at least 1).
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// The time between two slots, in microseconds (at least 1).
    fn interval_us(&self) -> i64 {
        i64::try_from(self.period.as_micros() / u128::from(self.limit))
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// The bucket key counting `input`'s run in `group`; `None`: not limited.
    pub(crate) fn key(&self, group: &str, input: KeyInput<'_>) -> Option<String> {
        self.scope.key(group, input)
    }
}

/// The next slot of a key whose theoretical arrival time is `tat` (`None`: a new key), at `now`
/// (microseconds since the epoch): returns the slot and the key's new arrival time. The slot is
/// `now` when a run may start at once.
pub(crate) fn next_slot(tat: Option<i64>, now: i64, interval: i64, burst: u32) -> (i64, i64) {
    let tat = tat.unwrap_or(now).max(now);
    let tolerance = interval.saturating_mul(i64::from(burst.max(1) - 1));
    let slot = tat.saturating_sub(tolerance).max(now);
    (slot, tat.saturating_add(interval))
}

/// Why a slot could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateErrorKind {
    /// The bucket could not be read or written, or stayed contended.
    Unavailable,
}

impl fmt::Display for RateErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rate limit state unavailable")
    }
}

/// A slot that could not be taken.
pub type RateError = Error<RateErrorKind>;

/// Compare-and-set attempts before a contended key is an error (with growing, jittered pauses
/// between them: at most about 2 s in all).
const CAS_TRIES: u32 = 64;

/// A group's limiter: takes slots in the shared bucket.
pub(crate) struct Limiter {
    conn: Connection,
    limit: RateLimit,
    store: OnceCell<kv::Store>,
}

impl Limiter {
    pub(crate) fn new(conn: Connection, limit: RateLimit) -> Self {
        Self {
            conn,
            limit,
            store: OnceCell::new(),
        }
    }

    pub(crate) fn limit(&self) -> &RateLimit {
        &self.limit
    }

    async fn store(&self) -> Result<&kv::Store, RateError> {
        self.store
            .get_or_try_init(|| async {
                BUCKET.open(&self.conn).await.map_err(|e| {
                    Error::new(
                        RateErrorKind::Unavailable,
                        format!("cannot open the rate-limit bucket {RATES_BUCKET}: {e}"),
                    )
                })
            })
            .await
    }

    /// Takes the next slot of `key`: its time (now or later).
    pub(crate) async fn take(&self, key: &str) -> Result<DateTime<Utc>, RateError> {
        let store = self.store().await?;
        let unavailable = |what: &str, e: &dyn fmt::Display| {
            Error::new(
                RateErrorKind::Unavailable,
                format!("{what} rate-limit key {key:?}: {e}"),
            )
        };
        let interval = self.limit.interval_us();
        for attempt in 0..CAS_TRIES {
            crate::kvwatch::contention_pause(attempt).await;
            let entry = store
                .entry(key)
                .await
                .map_err(|e| unavailable("cannot read", &e))?;
            let now = Utc::now().timestamp_micros();
            let current = entry
                .as_ref()
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<i64>().ok());
            let (slot, tat) = next_slot(current, now, interval, self.limit.burst);
            let value = Bytes::from(tat.to_string());
            let written = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    match store.update(key, value, e.revision).await {
                        Ok(_) => true,
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                        Err(e) => return Err(unavailable("cannot write", &e)),
                    }
                }
                _ => match store.create(key, value).await {
                    Ok(_) => true,
                    // Another process took the key's first slot meanwhile.
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(unavailable("cannot write", &e)),
                },
            };
            if written {
                return DateTime::from_timestamp_micros(slot)
                    .ok_or_else(|| Error::new(RateErrorKind::Unavailable, "slot out of range"));
            }
        }
        Err(Error::new(
            RateErrorKind::Unavailable,
            format!("rate-limit key {key:?} stayed contended for {CAS_TRIES} tries"),
        ))
    }
}

const BUCKET: crate::kvwatch::Bucket = crate::kvwatch::Bucket {
    name: RATES_BUCKET,
    description: "Conveyor rate-limit slots",
    max_age: RATES_MAX_AGE,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantId;
    use serde_json::value::RawValue;

    #[test]
    fn slots_are_evenly_spaced_after_the_burst() {
        // 100 a minute: a slot every 600 ms.
        let interval = RateLimit::per_group(100, Duration::from_secs(60)).interval_us();
        assert_eq!(interval, 600_000);
        let now = 1_000_000_000;
        let (slot, tat) = next_slot(None, now, interval, 1);
        assert_eq!((slot, tat), (now, now + interval));
        let (slot, tat) = next_slot(Some(tat), now, interval, 1);
        assert_eq!((slot, tat), (now + interval, now + 2 * interval));
        // A burst of 3 starts three at once, then spaces them.
        let mut tat = None;
        let slots: Vec<i64> = (0..5)
            .map(|_| {
                let (slot, next) = next_slot(tat, now, interval, 3);
                tat = Some(next);
                slot - now
            })
            .collect();
        assert_eq!(slots, [0, 0, 0, interval, 2 * interval]);
        // An idle key starts over: no credit is saved up beyond the burst.
        let (slot, _) = next_slot(Some(now - 10 * interval), now, interval, 1);
        assert_eq!(slot, now);
    }

    #[test]
    fn keys_are_scoped_by_group_and_tenant() {
        let acme = TenantId::parse("acme").unwrap();
        let data = RawValue::from_string(r#"{"partner":"p.1"}"#.into()).unwrap();
        let input = KeyInput {
            tenant: &acme,
            event_type: "partner.call",
            data: &data,
        };
        let per_key = RateLimit::per_key(5, Duration::from_secs(60), |e| {
            let v: serde_json::Value = serde_json::from_str(e.data.get()).ok()?;
            v["partner"].as_str().map(str::to_owned)
        });
        assert_eq!(per_key.key("calls", input).unwrap(), "calls.acme.p=2E1");
        let tenant = RateLimit::per_tenant(5, Duration::from_secs(60));
        assert_eq!(tenant.key("calls", input).unwrap(), "calls.acme");
        let group = RateLimit::per_group(5, Duration::from_secs(60));
        assert_eq!(group.key("calls", input).unwrap(), "calls.=all");
    }
}
