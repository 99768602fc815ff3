//! Weighted fair shares: a tenant's weight in the tenant registry.
//!
//! A tenant's weight (1 to [`MAX_WEIGHT`], default [`DEFAULT_WEIGHT`]) is the JSON value
//! `{"weight": 3}` of its key in the tenant registry bucket
//! [`TENANTS_BUCKET`] (`conveyor tenants weight acme 3`,
//! [`set_weight`]). Every worker watches the registry. A partition with a backlog reserves
//! handler slots in proportion to the weight of the tenant of its latest delivery, so while two
//! tenants in different partitions both have backlogs, a tenant of weight 3 gets about three
//! times the runs of a tenant of weight 1. Tenants that share a partition share its weight
//! (the latest delivery's). A key with any other value (the scheduler's registry entries) counts
//! as weight 1.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::error::Error;
use crate::kvwatch::{Ready, Watched};
use crate::tenant::TenantId;
use crate::topology::TENANTS_BUCKET;

/// The weight of a tenant without one.
pub const DEFAULT_WEIGHT: u32 = 1;
/// The largest weight.
pub const MAX_WEIGHT: u32 = 100;

/// A tenant registry value with a weight.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    weight: u32,
}

/// The weight a registry value stands for: its `weight` when it is a JSON object with one from
/// 1 to [`MAX_WEIGHT`], else [`DEFAULT_WEIGHT`].
///
/// ```
/// assert_eq!(conveyor::weights::weight_of(br#"{"weight": 3}"#), 3);
/// assert_eq!(conveyor::weights::weight_of(b""), 1);
/// assert_eq!(conveyor::weights::weight_of(br#"{"weight": 0}"#), 1);
/// ```
pub fn weight_of(value: &[u8]) -> u32 {
    serde_json::from_slice::<Entry>(value)
        .ok()
        .map(|e| e.weight)
        .filter(|w| (1..=MAX_WEIGHT).contains(w))
        .unwrap_or(DEFAULT_WEIGHT)
}

/// Why a weight could not be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightErrorKind {
    /// The weight is not 1 to [`MAX_WEIGHT`].
    InvalidWeight,
    /// The registry could not be written.
    Unavailable,
}

impl fmt::Display for WeightErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidWeight => "invalid weight",
            Self::Unavailable => "tenant registry unavailable",
        })
    }
}

/// A weight that could not be set.
pub type WeightError = Error<WeightErrorKind>;

/// Sets `tenant`'s weight in the tenant registry (registering the tenant, for schedules that
/// fire for every registered tenant, if it was not).
pub async fn set_weight(
    conn: &Connection,
    tenant: &TenantId,
    weight: u32,
) -> Result<(), WeightError> {
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(Error::new(
            WeightErrorKind::InvalidWeight,
            format!("a weight is 1 to {MAX_WEIGHT}, not {weight}"),
        ));
    }
    let store = BUCKET.open(conn).await.map_err(|e| {
        Error::new(
            WeightErrorKind::Unavailable,
            format!("cannot open the tenant registry {TENANTS_BUCKET}: {e}"),
        )
    })?;
    let value = serde_json::to_vec(&Entry { weight })
        .map_err(|e| Error::with_source(WeightErrorKind::Unavailable, "cannot encode", e))?;
    store
        .put(tenant.as_str(), Bytes::from(value))
        .await
        .map_err(|e| {
            Error::with_source(
                WeightErrorKind::Unavailable,
                "the server did not store the weight",
                e,
            )
        })?;
    Ok(())
}

const BUCKET: crate::kvwatch::Bucket = crate::kvwatch::Bucket {
    name: TENANTS_BUCKET,
    description: "Tenant registry",
    max_age: Duration::ZERO,
};

/// The weights a worker knows, from watching the registry.
#[derive(Debug, Default)]
pub(crate) struct Weights {
    stored: RwLock<HashMap<String, u32>>,
    /// True once any tenant has a weight other than the default: until then no lookup is made.
    any: AtomicBool,
    ready: Ready,
}

impl Weights {
    /// The weight of `tenant`.
    pub(crate) fn weight(&self, tenant: &str) -> u32 {
        if !self.any.load(Ordering::Acquire) {
            return DEFAULT_WEIGHT;
        }
        self.stored
            .read()
            .ok()
            .and_then(|s| s.get(tenant).copied())
            .unwrap_or(DEFAULT_WEIGHT)
    }

    /// True once any tenant has a weight other than the default.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        self.ready.wait(timeout, "tenant weights").await;
    }

    /// Watches the registry until `shutdown`, re-watching after errors.
    pub(crate) async fn watch(
        self: std::sync::Arc<Self>,
        conn: Connection,
        shutdown: CancellationToken,
    ) {
        crate::kvwatch::watch(self, conn, BUCKET, shutdown).await;
    }
}

impl Watched for Weights {
    fn apply(&self, key: &str, present: bool) {
        if !present {
            self.apply_entry(key, None);
        }
    }

    fn apply_entry(&self, key: &str, value: Option<&[u8]>) {
        let weight = value.map_or(DEFAULT_WEIGHT, weight_of);
        if let Ok(mut stored) = self.stored.write() {
            if weight == DEFAULT_WEIGHT {
                stored.remove(key);
            } else {
                stored.insert(key.to_owned(), weight);
                self.any.store(true, Ordering::Release);
            }
        }
    }

    fn set_ready(&self) {
        self.ready.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_come_from_registry_values() {
        let w = Weights::default();
        assert_eq!(w.weight("acme"), 1);
        w.apply_entry("acme", Some(br#"{"weight":3}"#));
        w.apply_entry("globex", Some(b"registered"));
        assert_eq!(w.weight("acme"), 3);
        assert_eq!(w.weight("globex"), 1);
        w.apply_entry("acme", None);
        assert_eq!(w.weight("acme"), 1);
        assert_eq!(weight_of(br#"{"weight":1000}"#), 1);
    }
}
