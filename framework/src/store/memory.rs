//! [`MemoryStore`]: values in memory, for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::Error;
use crate::tenant::TenantId;

use super::*;

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
