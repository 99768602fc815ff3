//! A small store for what handlers keep: explanations, reports, delivery records.
//!
//! [`Store`] is a tenant-scoped document store: JSON values under `(tenant, collection, key)`,
//! each with the time it was written. [`KvStore`] (what `conveyor-worker` and `conveyor-dev` use
//! by default) keeps them in a JetStream key-value bucket, so every worker process on any host
//! sees the same values and nothing but NATS is needed; [`FileStore`] keeps one JSON file per
//! value under a local directory (one host only); [`MemoryStore`] is for unit tests. A
//! deployment that wants a database implements the trait. [`StoreExt`] reads and writes typed
//! values on any of them.
//!
//! ```
//! use conveyor::store::{MemoryStore, Store};
//! use conveyor::TenantId;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), conveyor::store::StoreError> {
//! let store = MemoryStore::default();
//! let acme = TenantId::parse("acme").unwrap();
//! store.put(&acme, "explanations", "d-1", &serde_json::json!({"text": "card testing"})).await?;
//! let got = store.get(&acme, "explanations", "d-1").await?.unwrap();
//! assert_eq!(got.value["text"], "card testing");
//!
//! use conveyor::store::StoreExt;
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Upload { url: String }
//! store.put_as(&acme, "uploads", "v-1", &Upload { url: "s3://b/v-1.mp4".into() }).await?;
//! let upload: Option<Upload> = store.get_as(&acme, "uploads", "v-1").await?;
//! assert_eq!(upload.unwrap().url, "s3://b/v-1.mp4");
//! # Ok(()) }
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::tenant::TenantId;

mod file;
mod kv;
mod memory;

pub use file::FileStore;
pub use kv::{KvStore, STORE_BUCKET};
pub use memory::MemoryStore;

/// One stored value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its key within the collection.
    pub key: String,
    /// When it was written.
    pub updated_at: DateTime<Utc>,
    /// The value.
    pub value: Value,
}

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// A collection name breaks the `[a-z0-9_]{1,64}` rule or a key is empty.
    InvalidName,
    /// Reading or writing failed (disk full, permissions, ...).
    Io,
    /// A stored value is not valid JSON.
    Corrupt,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidName => "invalid collection or key",
            Self::Io => "store i/o failed",
            Self::Corrupt => "corrupt record",
        })
    }
}

/// A failed store operation.
pub type StoreError = Error<StoreErrorKind>;

/// A tenant-scoped document store. Implementations must be safe to share between handlers.
pub trait Store: Send + Sync + 'static {
    /// Writes `value` under `key` (replacing what was there).
    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Reads one value.
    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// Every value of a collection, oldest first.
    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>>;

    /// Deletes the values of a collection written before `cutoff`; returns how many.
    fn remove_older_than<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        cutoff: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// Tenants with anything stored.
    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantId>, StoreError>>;

    /// Checks that the store can be written (for health checks).
    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

fn check_collection(collection: &str) -> Result<(), StoreError> {
    let ok = !collection.is_empty()
        && collection.len() <= 64
        && collection
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            StoreErrorKind::InvalidName,
            format!("collection {collection:?} must be 1 to 64 characters of [a-z0-9_]"),
        ))
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > 200 {
        return Err(Error::new(
            StoreErrorKind::InvalidName,
            "a key is 1 to 200 bytes",
        ));
    }
    Ok(())
}

fn io(what: String, e: std::io::Error) -> StoreError {
    Error::with_source(StoreErrorKind::Io, what, e)
}

/// Typed values on any [`Store`]: written as JSON from `T`, read back as `T` (a stored value
/// that is not a `T` is [`StoreErrorKind::Corrupt`]).
pub trait StoreExt: Store {
    /// Writes `value` under `key`.
    fn put_as<'a, T: Serialize + Sync>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
        value: &'a T,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'a {
        async move {
            let value = serde_json::to_value(value).map_err(|e| {
                Error::with_source(StoreErrorKind::Corrupt, "cannot encode the value", e)
            })?;
            self.put(tenant, collection, key, &value).await
        }
    }

    /// Reads the value under `key` as a `T`.
    fn get_as<'a, T: serde::de::DeserializeOwned>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
    ) -> impl std::future::Future<Output = Result<Option<T>, StoreError>> + Send + 'a {
        async move {
            let Some(record) = self.get(tenant, collection, key).await? else {
                return Ok(None);
            };
            serde_json::from_value(record.value).map(Some).map_err(|e| {
                Error::with_source(
                    StoreErrorKind::Corrupt,
                    format!("{collection}/{key} of {tenant} is not the expected type"),
                    e,
                )
            })
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(store: &dyn Store) {
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        store
            .put(&acme, "reports", "2026-11-22", &serde_json::json!({"n": 1}))
            .await
            .unwrap();
        store
            .put(&acme, "reports", "a/b:c", &serde_json::json!({"n": 2}))
            .await
            .unwrap();
        store
            .put(&globex, "reports", "x", &serde_json::json!({"n": 3}))
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&acme, "reports", "a/b:c")
                .await
                .unwrap()
                .unwrap()
                .value["n"],
            2
        );
        assert!(store.get(&acme, "reports", "nope").await.unwrap().is_none());
        assert_eq!(store.list(&acme, "reports").await.unwrap().len(), 2);
        assert_eq!(store.list(&acme, "other").await.unwrap().len(), 0);
        assert_eq!(store.tenants().await.unwrap(), vec![acme.clone(), globex]);
        let err = store
            .put(&acme, "Bad.Name", "k", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidName);
        let removed = store
            .remove_older_than(&acme, "reports", Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(removed, 2);
        assert!(store.list(&acme, "reports").await.unwrap().is_empty());
        store.check().await.unwrap();
    }

    #[tokio::test]
    async fn file_store() {
        let dir = tempfile::tempdir().unwrap();
        exercise(&FileStore::new(dir.path().join("store"))).await;
    }

    #[tokio::test]
    async fn memory_store() {
        exercise(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn kv_store() {
        let server = crate::testing::NatsServer::start().unwrap();
        let conn = server.connect().await.unwrap();
        let store = KvStore::open(&conn).await.unwrap();
        exercise(&store).await;
        // Another process (another connection) sees what this one stored.
        let acme = TenantId::parse("acme").unwrap();
        store
            .put_as(&acme, "uploads", "v.1", &vec![1, 2])
            .await
            .unwrap();
        let other = KvStore::open(&server.connect().await.unwrap())
            .await
            .unwrap();
        let got: Option<Vec<u32>> = other.get_as(&acme, "uploads", "v.1").await.unwrap();
        assert_eq!(got, Some(vec![1, 2]));
        let wrong = other
            .get_as::<String>(&acme, "uploads", "v.1")
            .await
            .unwrap_err();
        assert_eq!(wrong.kind(), StoreErrorKind::Corrupt);
    }
}
