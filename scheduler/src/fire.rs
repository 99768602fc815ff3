//! Firing one tick: every tenant's event published concurrently, failed tenants owed and
//! retried on their own, overlap markers set before and removed after a failed publish.

use std::sync::atomic::Ordering;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use conveyor::runs::RUN_KEY_HEADER;
use conveyor::{EventOptions, TenantId};
use futures::StreamExt;

use crate::runtime::{Ctx, LATE_AFTER};
use crate::schedule::{CompiledSchedule, Overlap};

/// Events of one tick published at once.
const FIRE_CONCURRENCY: usize = 64;
/// How often the events of tenants whose publish failed are tried again.
pub(crate) const OWED_RETRY_MS: u64 = 200;
/// Owed ticks retried in one pass.
const OWED_PER_PASS: usize = 4;
/// How long a tenant's failed event is tried again before it is given up (and logged).
const OWED_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// What became of one tick's events.
pub(crate) enum Fired {
    /// Every tenant's event is stored.
    All,
    /// These tenants' events are not: they are owed.
    Partly(Vec<TenantId>),
    /// The tenant registry has not loaded: nothing was published and the tick must wait.
    NoTenants,
}

/// Publishes the events still owed for earlier ticks; keeps what fails again, gives up (with
/// an error log) on events owed longer than [`OWED_FOR`].
pub(crate) async fn retry_owed(
    ctx: &Ctx,
    schedule: &CompiledSchedule,
    owed: &mut Vec<(DateTime<Utc>, Vec<TenantId>)>,
) {
    let mut still = Vec::new();
    for (i, (tick, tenants)) in owed.drain(..).enumerate() {
        if Utc::now() - tick > OWED_FOR {
            tracing::error!(schedule = schedule.name(), %tick, tenants = ?tenants, "gave up publishing the tick for these tenants");
            continue;
        }
        // A few ticks per pass, oldest first, so retries never hold up the schedule's new ticks.
        if i >= OWED_PER_PASS {
            still.push((tick, tenants));
            continue;
        }
        if let Fired::Partly(failed) = fire(ctx, schedule, tick, Some(tenants)).await {
            still.push((tick, failed));
        }
    }
    *owed = still;
}

/// Publishes one tick's events, for every tenant of the schedule or only `only`.
pub(crate) async fn fire(
    ctx: &Ctx,
    schedule: &CompiledSchedule,
    tick: DateTime<Utc>,
    only: Option<Vec<TenantId>>,
) -> Fired {
    let name = schedule.name();
    let tenants: Vec<TenantId> = match only {
        Some(tenants) => tenants,
        None if schedule.spec.tenant_registry => {
            match ctx.registry.read().ok().and_then(|r| r.clone()) {
                Some(r) => r.into_iter().collect(),
                None => {
                    tracing::warn!(schedule = name, %tick, "the tenant registry has not loaded; the tick waits");
                    return Fired::NoTenants;
                }
            }
        }
        None => schedule.tenants().to_vec(),
    };
    let payload = serde_json::json!({
        "schedule": name,
        "scheduled_at": tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "timezone": schedule.tz().name(),
    });
    // Tenants are published concurrently: one whose publish hangs until its timeout delays
    // nobody else's event of the tick.
    let failed: Vec<TenantId> = futures::stream::iter(tenants)
        .map(|tenant| {
            let payload = &payload;
            async move {
                let ok = fire_one(ctx, schedule, tick, &tenant, payload).await;
                (!ok).then_some(tenant)
            }
        })
        .buffer_unordered(FIRE_CONCURRENCY)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    if failed.is_empty() {
        Fired::All
    } else {
        Fired::Partly(failed)
    }
}

/// Publishes the tick's event of one tenant; false when it is not stored.
async fn fire_one(
    ctx: &Ctx,
    schedule: &CompiledSchedule,
    tick: DateTime<Utc>,
    tenant: &TenantId,
    payload: &serde_json::Value,
) -> bool {
    let name = schedule.name();
    let id = ctx.ids.tick_id(name, tenant, tick);
    let mut options = EventOptions::default().id(id.clone()).time(tick);
    let mut marked = None;
    if schedule.spec.overlap == Overlap::SkipIfRunning {
        let key = format!("{name}.{tenant}");
        match still_running(&ctx.runs, &key, schedule.spec.max_run_secs).await {
            Some(running) if running != id => {
                ctx.stats.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(schedule = name, %tenant, %tick, previous = %running, "tick skipped: the previous run has not finished");
                return true;
            }
            _ => {
                // Marked before the publish, so a worker that settles the event at once
                // finds the marker to clear; removed again if the publish fails.
                if let Err(e) = ctx.runs.put(&key, id.clone().into()).await {
                    tracing::warn!(schedule = name, %tenant, error = %e, "cannot mark the run");
                }
                options = options.header(RUN_KEY_HEADER, key.clone());
                marked = Some(key);
            }
        }
    }
    match ctx
        .publisher
        .publish_untyped(tenant.clone(), &schedule.spec.event_type, payload, options)
        .await
    {
        Ok(p) => {
            let late = Utc::now() - tick;
            let late_ms = late.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
            if p.duplicate {
                ctx.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(schedule = name, %tenant, %tick, "tick already published");
            } else {
                ctx.stats.fired.fetch_add(1, Ordering::Relaxed);
                ctx.stats.record_lateness(late_ms);
                if late.to_std().unwrap_or_default() > LATE_AFTER {
                    ctx.stats.late.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(schedule = name, %tenant, %tick, late_ms, "tick fired late");
                } else {
                    tracing::info!(schedule = name, %tenant, %tick, late_ms, "tick fired");
                }
            }
            true
        }
        Err(e) => {
            ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(schedule = name, %tenant, %tick, error = %e, "tick publish failed; will retry for this tenant");
            if let Some(key) = marked
                && let Err(e) = ctx.runs.delete(&key).await
            {
                tracing::warn!(schedule = name, %tenant, error = %e, "cannot remove the run marker of a failed publish");
            }
            false
        }
    }
}

/// The event id of a run of `key` that is still going, if any.
async fn still_running(runs: &kv::Store, key: &str, max_run_secs: u64) -> Option<String> {
    let entry = runs.entry(key).await.ok()??;
    if entry.operation != kv::Operation::Put {
        return None;
    }
    let started: DateTime<Utc> = entry.created;
    let age = (Utc::now() - started).num_seconds();
    (age >= 0 && (age as u64) < max_run_secs)
        .then(|| String::from_utf8_lossy(&entry.value).into_owned())
}
