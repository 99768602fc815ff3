//! The tenant registry the scheduler fires for: loaded in full before any schedule uses it,
//! then followed as tenants are added and removed.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use conveyor::TenantId;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Loads every tenant of the registry. A registry that cannot be read in full leaves what was
/// loaded before (or nothing: schedules then wait, rather than firing for no tenant).
pub(crate) async fn load_registry(
    store: &kv::Store,
    registry: &RwLock<Option<BTreeSet<TenantId>>>,
) {
    let mut keys = match store.keys().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the tenant registry");
            return;
        }
    };
    let mut set = BTreeSet::new();
    while let Some(key) = keys.next().await {
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the tenant registry");
                return;
            }
        };
        match TenantId::parse(key.as_str()) {
            Ok(t) => {
                set.insert(t);
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "tenant registry key is not a valid tenant id")
            }
        }
    }
    if let Ok(mut r) = registry.write() {
        *r = Some(set);
    }
}

pub(crate) async fn watch_registry(
    store: kv::Store,
    registry: Arc<RwLock<Option<BTreeSet<TenantId>>>>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut watch = match store.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the tenant registry");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        load_registry(&store, &registry).await;
        loop {
            let entry = tokio::select! {
                () = shutdown.cancelled() => return,
                e = watch.next() => e,
            };
            let Some(Ok(entry)) = entry else { break };
            let Ok(tenant) = TenantId::parse(entry.key.as_str()) else {
                tracing::warn!(key = %entry.key, "tenant registry key is not a valid tenant id");
                continue;
            };
            if let Ok(mut guard) = registry.write()
                && let Some(r) = guard.as_mut()
            {
                if entry.operation == kv::Operation::Put {
                    r.insert(tenant);
                } else {
                    r.remove(&tenant);
                }
            }
        }
    }
}
