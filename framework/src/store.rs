//! A small store for what handlers keep: explanations, reports, delivery records.
//!
//! [`Store`] is a tenant-scoped document store: JSON values under `(tenant, collection, key)`,
//! each with the time it was written. [`FileStore`] (the default) keeps one JSON file per value
//! under a directory, so local development and single-node deployments need nothing but NATS;
//! [`MemoryStore`] is for unit tests. A deployment that wants a database implements the trait.
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
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::history::escape_token;
use crate::tenant::TenantId;

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

/// A [`Store`] on disk: `<root>/<tenant>/<collection>/<escaped key>.json`, each file a
/// [`Record`]. Writes go to a temporary file renamed into place, so a crash never leaves half
/// a record.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory it writes to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, tenant: &TenantId, collection: &str) -> PathBuf {
        self.root.join(tenant.as_str()).join(collection)
    }

    async fn read_record(path: &Path) -> Result<Option<Record>, StoreError> {
        match tokio::fs::read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::with_source(
                    StoreErrorKind::Corrupt,
                    format!("{} is not a record", path.display()),
                    e,
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("cannot read {}", path.display()), e)),
        }
    }

    async fn read_dir(dir: &Path) -> Result<Vec<Record>, StoreError> {
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("cannot list {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io(format!("cannot list {}", dir.display()), e))?
        {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Some(record) = Self::read_record(&path).await?
            {
                out.push(record);
            }
        }
        out.sort_by(|a, b| (a.updated_at, &a.key).cmp(&(b.updated_at, &b.key)));
        Ok(out)
    }
}

impl Store for FileStore {
    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            check_collection(collection)?;
            check_key(key)?;
            let dir = self.dir(tenant, collection);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| io(format!("cannot create {}", dir.display()), e))?;
            let record = Record {
                key: key.to_owned(),
                updated_at: Utc::now(),
                value: value.clone(),
            };
            let bytes = serde_json::to_vec_pretty(&record).map_err(|e| {
                Error::with_source(StoreErrorKind::Corrupt, "cannot encode the record", e)
            })?;
            let name = escape_token(key);
            let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7()));
            let path = dir.join(format!("{name}.json"));
            tokio::fs::write(&tmp, bytes)
                .await
                .map_err(|e| io(format!("cannot write {}", tmp.display()), e))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| io(format!("cannot write {}", path.display()), e))
        })
    }

    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            check_collection(collection)?;
            check_key(key)?;
            let path = self
                .dir(tenant, collection)
                .join(format!("{}.json", escape_token(key)));
            Self::read_record(&path).await
        })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            check_collection(collection)?;
            Self::read_dir(&self.dir(tenant, collection)).await
        })
    }

    fn remove_older_than<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        cutoff: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            check_collection(collection)?;
            let dir = self.dir(tenant, collection);
            let mut removed = 0;
            for record in Self::read_dir(&dir).await? {
                if record.updated_at < cutoff {
                    let path = dir.join(format!("{}.json", escape_token(&record.key)));
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(format!("cannot remove {}", path.display()), e)),
                    }
                }
            }
            Ok(removed)
        })
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantId>, StoreError>> {
        Box::pin(async move {
            let mut entries = match tokio::fs::read_dir(&self.root).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io(format!("cannot list {}", self.root.display()), e)),
            };
            let mut out = Vec::new();
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io(format!("cannot list {}", self.root.display()), e))?
            {
                if let Some(name) = entry.file_name().to_str()
                    && let Ok(t) = TenantId::parse(name)
                {
                    out.push(t);
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            tokio::fs::create_dir_all(&self.root)
                .await
                .map_err(|e| io(format!("cannot create {}", self.root.display()), e))?;
            let probe = self.root.join(format!(".probe-{}", uuid::Uuid::now_v7()));
            tokio::fs::write(&probe, b"ok")
                .await
                .map_err(|e| io(format!("cannot write in {}", self.root.display()), e))?;
            tokio::fs::remove_file(&probe)
                .await
                .map_err(|e| io(format!("cannot remove {}", probe.display()), e))
        })
    }
}

type Collections = BTreeMap<(String, String), BTreeMap<String, Record>>;

/// A [`Store`] in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<Collections>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Collections) -> T) -> Result<T, StoreError> {
        self.data
            .lock()
            .map(|mut d| f(&mut d))
            .map_err(|_| Error::new(StoreErrorKind::Io, "the memory store is poisoned"))
    }

    /// Sets the write time of a stored value (to test retention).
    pub fn backdate(
        &self,
        tenant: &TenantId,
        collection: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|d| {
            if let Some(r) = d
                .get_mut(&(tenant.as_str().to_owned(), collection.to_owned()))
                .and_then(|c| c.get_mut(key))
            {
                r.updated_at = at;
            }
        })
    }
}

impl Store for MemoryStore {
    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            check_collection(collection)?;
            check_key(key)?;
            self.with(|d| {
                d.entry((tenant.as_str().to_owned(), collection.to_owned()))
                    .or_default()
                    .insert(
                        key.to_owned(),
                        Record {
                            key: key.to_owned(),
                            updated_at: Utc::now(),
                            value: value.clone(),
                        },
                    );
            })
        })
    }

    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            self.with(|d| {
                d.get(&(tenant.as_str().to_owned(), collection.to_owned()))
                    .and_then(|c| c.get(key))
                    .cloned()
            })
        })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            let mut out = self.with(|d| {
                d.get(&(tenant.as_str().to_owned(), collection.to_owned()))
                    .map(|c| c.values().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })?;
            out.sort_by(|a, b| (a.updated_at, &a.key).cmp(&(b.updated_at, &b.key)));
            Ok(out)
        })
    }

    fn remove_older_than<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        cutoff: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            self.with(|d| {
                let Some(c) = d.get_mut(&(tenant.as_str().to_owned(), collection.to_owned()))
                else {
                    return 0;
                };
                let before = c.len();
                c.retain(|_, r| r.updated_at >= cutoff);
                before - c.len()
            })
        })
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantId>, StoreError>> {
        Box::pin(async move {
            let names = self.with(|d| {
                let mut names: Vec<String> = d.keys().map(|(t, _)| t.clone()).collect();
                names.dedup();
                names
            })?;
            Ok(names
                .into_iter()
                .filter_map(|n| TenantId::parse(n.as_str()).ok())
                .collect())
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.with(|_| ()) })
    }
}

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
}
