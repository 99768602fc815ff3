//! [`KvStore`]: the store on a JetStream key-value bucket, reachable from every worker process
//! on any host.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::{Record, Store, StoreError, StoreErrorKind, check_collection, check_key};
use crate::connection::Connection;
use crate::error::Error;
use crate::subject::escape_token;
use crate::tenant::TenantId;

/// The bucket [`KvStore`] keeps its values in by default.
pub use crate::topology::STORE_BUCKET;

/// The key [`Store::check`] writes: `=` is in no tenant id, so it is no tenant's value.
const CHECK_KEY: &str = "=check";

fn unavailable(
    what: impl Into<String>,
    e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> StoreError {
    Error::with_source(StoreErrorKind::Io, what, e)
}

/// A [`Store`] on a JetStream key-value bucket: key `<tenant>.<collection>.<escaped key>`,
/// value the JSON [`Record`]. Every worker process on any host sees the same values, so a
/// pipeline whose steps run in different processes finds what an earlier step stored; with a
/// replicated bucket (a NATS cluster) the values survive a server's loss. The bucket is created
/// when missing (`conveyor setup` creates it too).
///
/// ```no_run
/// # async fn run(conn: conveyor::Connection) -> Result<(), conveyor::store::StoreError> {
/// use conveyor::store::{KvStore, StoreExt};
/// let store = KvStore::open(&conn).await?;
/// let acme = conveyor::TenantId::parse("acme").unwrap();
/// store.put_as(&acme, "uploads", "v-1", &serde_json::json!({"url": "s3://b/v-1.mp4"})).await?;
/// let upload: Option<serde_json::Value> = store.get_as(&acme, "uploads", "v-1").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KvStore {
    conn: Connection,
    bucket: String,
    kv: kv::Store,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl KvStore {
    /// The store on [`STORE_BUCKET`].
    pub async fn open(conn: &Connection) -> Result<Self, StoreError> {
        Self::open_bucket(conn, STORE_BUCKET).await
    }

    /// The store on `bucket` (created when missing, without an age limit).
    pub async fn open_bucket(conn: &Connection, bucket: &str) -> Result<Self, StoreError> {
        let js = conn.jetstream();
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => match js
                .create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    description: "Conveyor handler state".into(),
                    history: 1,
                    ..Default::default()
                })
                .await
            {
                Ok(kv) => kv,
                // Another process created it meanwhile.
                Err(e) => js
                    .get_key_value(bucket)
                    .await
                    .map_err(|_| unavailable(format!("cannot open bucket {bucket}"), e))?,
            },
        };
        Ok(Self {
            conn: conn.clone(),
            bucket: bucket.to_owned(),
            kv,
        })
    }

    fn key(tenant: &TenantId, collection: &str, key: &str) -> Result<String, StoreError> {
        check_collection(collection)?;
        check_key(key)?;
        Ok(format!("{tenant}.{collection}.{}", escape_token(key)))
    }

    /// The latest value of every key under `filter` (a key pattern), oldest first: read from a
    /// short-lived consumer of the bucket's stream, as many messages as it says are there.
    async fn scan(&self, filter: &str) -> Result<Vec<Record>, StoreError> {
        let stream = self
            .conn
            .jetstream()
            .get_stream_no_info(format!("KV_{}", self.bucket))
            .await
            .map_err(|e| unavailable("cannot read the store", e))?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::LastPerSubject,
                ack_policy: AckPolicy::None,
                filter_subject: format!("$KV.{}.{filter}", self.bucket),
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("cannot read the store", e))?;
        let mut left = consumer.cached_info().num_pending;
        let mut out = Vec::new();
        while left > 0 {
            let batch = usize::try_from(left.min(1000)).unwrap_or(1000);
            let mut messages = consumer
                .fetch()
                .max_messages(batch)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| unavailable("cannot read the store", e))?;
            let mut got = 0u64;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| unavailable("cannot read the store", e))?;
                got += 1;
                let deleted = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
                if deleted || m.payload.is_empty() {
                    continue;
                }
                out.push(serde_json::from_slice::<Record>(&m.payload).map_err(|e| {
                    Error::with_source(
                        StoreErrorKind::Corrupt,
                        format!("{} is not a record", m.subject),
                        e,
                    )
                })?);
            }
            if got == 0 {
                break;
            }
            left = left.saturating_sub(got);
        }
        let name = consumer.cached_info().name.clone();
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, "store reader not deleted; it expires by itself");
        }
        out.sort_by(|a, b| (a.updated_at, &a.key).cmp(&(b.updated_at, &b.key)));
        Ok(out)
    }
}

impl Store for KvStore {
    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
        value: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let k = Self::key(tenant, collection, key)?;
            let record = Record {
                key: key.to_owned(),
                updated_at: Utc::now(),
                value: value.clone(),
            };
            let body = serde_json::to_vec(&record)
                .map_err(|e| Error::with_source(StoreErrorKind::Corrupt, "cannot encode", e))?;
            self.kv
                .put(&k, body.into())
                .await
                .map_err(|e| unavailable(format!("cannot write {k}"), e))?;
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            let k = Self::key(tenant, collection, key)?;
            let Some(bytes) = self
                .kv
                .get(&k)
                .await
                .map_err(|e| unavailable(format!("cannot read {k}"), e))?
            else {
                return Ok(None);
            };
            serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::with_source(StoreErrorKind::Corrupt, format!("{k} is not a record"), e)
            })
        })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            check_collection(collection)?;
            self.scan(&format!("{tenant}.{collection}.*")).await
        })
    }

    fn remove_older_than<'a>(
        &'a self,
        tenant: &'a TenantId,
        collection: &'a str,
        cutoff: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let mut removed = 0;
            for record in self.list(tenant, collection).await? {
                if record.updated_at < cutoff {
                    let k = Self::key(tenant, collection, &record.key)?;
                    self.kv
                        .purge(&k)
                        .await
                        .map_err(|e| unavailable(format!("cannot remove {k}"), e))?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn tenants(&self) -> BoxFuture<'_, Result<Vec<TenantId>, StoreError>> {
        Box::pin(async move {
            let mut keys = self
                .kv
                .keys()
                .await
                .map_err(|e| unavailable("cannot list the store", e))?;
            let mut tenants = BTreeSet::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|e| unavailable("cannot list the store", e))?;
                if let Some((tenant, _)) = key.split_once('.')
                    && let Ok(t) = TenantId::parse(tenant)
                {
                    tenants.insert(t);
                }
            }
            Ok(tenants.into_iter().collect())
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.kv
                .put(CHECK_KEY, Utc::now().to_rfc3339().into_bytes().into())
                .await
                .map_err(|e| unavailable(format!("cannot write to bucket {}", self.bucket), e))?;
            Ok(())
        })
    }
}
