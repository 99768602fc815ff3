//! [`FileStore`]: one JSON file per value under a local directory.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::Error;
use crate::history::escape_token;
use crate::tenant::TenantId;

use super::*;

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
