//! Reporting handlers, driven by the scheduler's cron events.
//!
//! - `reports` on `daily.report` and `daily.metrics`: aggregates, for the event's tenant, what
//!   the other handlers recorded in the store (explanations, webhook deliveries, emails, video
//!   outputs, analyses) over the day before the tick, and writes the report to the store
//!   (collection `reports`, key `<kind>-<date>`; with the file store, a JSON file per tenant and
//!   day).
//! - `maintenance` on `weekly.cleanup`: removes the tenant's records older than the retention
//!   from those collections; on `health.check`: checks the store and the AI endpoint and records
//!   the result (collection `health`).
//!
//! The collection names are the contract between the handler crates; [`COLLECTIONS`] lists
//! them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::store::Store;
use conveyor::{Context, Group, HandlerError, HandlerResult};
use conveyor_schemas::scheduled::{DailyMetrics, DailyReport, HealthCheck, WeeklyCleanup};
use serde_json::{Value, json};

/// The groups this crate defines.
pub const GROUPS: [&str; 2] = ["reports", "maintenance"];
/// Store collection of reports.
pub const REPORTS: &str = "reports";
/// Store collection of health check results.
pub const HEALTH: &str = "health";
/// The collections other handler crates write, which reports read and cleanup prunes.
pub const COLLECTIONS: [&str; 7] = [
    "fraud_detections",
    "fraud_explanations",
    "webhook_deliveries",
    "emails_sent",
    "video_uploads",
    "video_outputs",
    "analyses",
];

/// Settings of the reporting handlers.
#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// Records older than this are removed by `weekly.cleanup`.
    pub retention: Duration,
    /// Base URL of the AI API, checked by `health.check` (`GET <base>/health`).
    pub ai_base_url: String,
    /// Timeout of the health probe.
    pub probe_timeout: Duration,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            ai_base_url: "http://127.0.0.1:8089".into(),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// The reporting handlers' state.
pub struct Reports {
    config: ReportsConfig,
    http: reqwest::Client,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Reports {
    /// Builds the state.
    pub fn new(config: ReportsConfig, store: Arc<dyn Store>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.probe_timeout)
            .build()?;
        Ok(Self {
            config,
            http,
            store,
        })
    }
}

/// The state handlers of this crate run with.
pub type State = Arc<Reports>;

/// Every group of this crate.
pub fn groups() -> Vec<Group<State>> {
    vec![
        Group::new(GROUPS[0])
            .handle(daily_report)
            .handle(daily_metrics),
        Group::new(GROUPS[1])
            .handle(weekly_cleanup)
            .handle(health_check),
    ]
}

/// Per collection: records written in `[from, to)`, and for webhook deliveries how many failed.
async fn aggregate(
    store: &dyn Store,
    tenant: &conveyor::TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Value, HandlerError> {
    let mut counts = serde_json::Map::new();
    let mut failed_webhooks = 0;
    for collection in COLLECTIONS {
        let records = store.list(tenant, collection).await?;
        let in_window: Vec<_> = records
            .iter()
            .filter(|r| r.updated_at >= from && r.updated_at < to)
            .collect();
        if collection == "webhook_deliveries" {
            failed_webhooks = in_window
                .iter()
                .filter(|r| r.value["delivered"] == json!(false))
                .count();
        }
        counts.insert(collection.to_owned(), json!(in_window.len()));
    }
    counts.insert("webhook_deliveries_failed".into(), json!(failed_webhooks));
    Ok(Value::Object(counts))
}

async fn write_report(
    ctx: &Context<State>,
    kind: &str,
    scheduled_at: DateTime<Utc>,
) -> HandlerResult {
    let r = ctx.state();
    let to = scheduled_at;
    let from = to - chrono::Duration::days(1);
    let counts = aggregate(r.store.as_ref(), ctx.tenant(), from, to).await?;
    let key = format!("{kind}-{}", from.format("%Y-%m-%d"));
    let report = json!({
        "kind": kind, "tenant": ctx.tenant().as_str(),
        "from": from, "to": to, "counts": counts,
        "generated_at": Utc::now(),
    });
    r.store.put(ctx.tenant(), REPORTS, &key, &report).await?;
    tracing::info!(tenant = %ctx.tenant(), report = %key, "report written");
    Ok(())
}

/// Writes the daily report of the event's tenant.
pub async fn daily_report(e: DailyReport, ctx: Context<State>) -> HandlerResult {
    write_report(&ctx, "daily-report", e.scheduled_at).await
}

/// Writes the daily metrics of the event's tenant.
pub async fn daily_metrics(e: DailyMetrics, ctx: Context<State>) -> HandlerResult {
    write_report(&ctx, "daily-metrics", e.scheduled_at).await
}

/// Removes the tenant's records older than the retention.
pub async fn weekly_cleanup(e: WeeklyCleanup, ctx: Context<State>) -> HandlerResult {
    let r = ctx.state();
    let retention = chrono::Duration::from_std(r.config.retention)
        .map_err(|e| HandlerError::permanent(format!("retention out of range: {e}")))?;
    let cutoff = e.scheduled_at - retention;
    let mut removed = 0;
    for collection in COLLECTIONS.iter().chain([&REPORTS, &HEALTH]) {
        removed += r
            .store
            .remove_older_than(ctx.tenant(), collection, cutoff)
            .await?;
    }
    tracing::info!(tenant = %ctx.tenant(), removed, %cutoff, "cleanup done");
    Ok(())
}

/// Checks the store and the AI endpoint and records the result. A failing dependency is
/// recorded, not retried: the next tick checks again.
pub async fn health_check(e: HealthCheck, ctx: Context<State>) -> HandlerResult {
    let r = ctx.state();
    let store = match r.store.check().await {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let url = format!("{}/health", r.config.ai_base_url.trim_end_matches('/'));
    let ai = match r.http.get(&url).send().await {
        Ok(resp) if resp.status().is_success() => {
            json!({"ok": true, "status": resp.status().as_u16()})
        }
        Ok(resp) => json!({"ok": false, "status": resp.status().as_u16()}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let healthy = store["ok"] == json!(true) && ai["ok"] == json!(true);
    let result = json!({
        "checked_at": Utc::now(), "scheduled_at": e.scheduled_at,
        "healthy": healthy, "store": store, "ai": ai,
        // The event arrived, so NATS and this group's consumer work.
        "nats": {"ok": true},
    });
    let key = e.scheduled_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    r.store.put(ctx.tenant(), HEALTH, &key, &result).await?;
    if healthy {
        tracing::info!(tenant = %ctx.tenant(), "health check passed");
    } else {
        tracing::warn!(tenant = %ctx.tenant(), %result, "health check failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use conveyor::TenantId;
    use conveyor::store::MemoryStore;
    use conveyor::testing::TestDelivery;
    use conveyor_llm_stub::{LlmStub, StubOptions};
    use conveyor_schemas::{Id, TimeZoneName};

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn state(base: &str) -> (State, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::default());
        let config = ReportsConfig {
            ai_base_url: base.into(),
            probe_timeout: Duration::from_millis(500),
            ..ReportsConfig::default()
        };
        (
            Arc::new(Reports::new(config, store.clone()).unwrap()),
            store,
        )
    }

    #[tokio::test]
    async fn the_daily_report_counts_what_the_tenant_did() {
        let (s, store) = state("http://127.0.0.1:9");
        let (a, g) = (acme(), TenantId::parse("globex").unwrap());
        store
            .put(&a, "fraud_explanations", "d-1", &json!({}))
            .await
            .unwrap();
        store
            .put(&a, "fraud_explanations", "d-2", &json!({}))
            .await
            .unwrap();
        store
            .put(
                &a,
                "webhook_deliveries",
                "w-1",
                &json!({"delivered": false}),
            )
            .await
            .unwrap();
        store
            .put(&g, "fraud_explanations", "x", &json!({}))
            .await
            .unwrap();
        store
            .put(&a, "emails_sent", "old", &json!({}))
            .await
            .unwrap();
        store
            .backdate(
                &a,
                "emails_sent",
                "old",
                Utc::now() - chrono::Duration::days(3),
            )
            .unwrap();
        let tick = DailyReport {
            schedule: Id::new("daily-report").unwrap(),
            scheduled_at: Utc::now() + chrono::Duration::seconds(1),
            timezone: TimeZoneName::new("Europe/Amsterdam").unwrap(),
        };
        TestDelivery::new(a.clone(), tick)
            .run(daily_report, s)
            .await
            .result
            .unwrap();
        let reports = store.list(&a, REPORTS).await.unwrap();
        assert_eq!(reports.len(), 1);
        let counts = &reports[0].value["counts"];
        assert_eq!(counts["fraud_explanations"], 2, "{counts}");
        assert_eq!(counts["webhook_deliveries_failed"], 1);
        assert_eq!(counts["emails_sent"], 0, "outside the day");
        assert!(store.list(&g, REPORTS).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn cleanup_removes_only_what_is_past_retention() {
        let (s, store) = state("http://127.0.0.1:9");
        let a = acme();
        store
            .put(&a, "video_outputs", "new", &json!({}))
            .await
            .unwrap();
        store
            .put(&a, "video_outputs", "old", &json!({}))
            .await
            .unwrap();
        store
            .backdate(
                &a,
                "video_outputs",
                "old",
                Utc::now() - chrono::Duration::days(40),
            )
            .unwrap();
        let tick = WeeklyCleanup {
            schedule: Id::new("weekly-cleanup").unwrap(),
            scheduled_at: Utc::now(),
            timezone: TimeZoneName::new("UTC").unwrap(),
        };
        TestDelivery::new(a.clone(), tick)
            .run(weekly_cleanup, s)
            .await
            .result
            .unwrap();
        let left: Vec<String> = store
            .list(&a, "video_outputs")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(left, vec!["new".to_owned()]);
    }

    #[tokio::test]
    async fn the_health_check_records_each_dependency() {
        let stub = LlmStub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
            .await
            .unwrap();
        let tick = || HealthCheck {
            schedule: Id::new("health-check").unwrap(),
            scheduled_at: Utc::now(),
            timezone: TimeZoneName::new("UTC").unwrap(),
        };
        let (s, store) = state(&stub.base_url());
        TestDelivery::new(acme(), tick())
            .run(health_check, s)
            .await
            .result
            .unwrap();
        let (down, down_store) = state("http://127.0.0.1:9");
        TestDelivery::new(acme(), tick())
            .run(health_check, down)
            .await
            .result
            .unwrap();
        let ok = &store.list(&acme(), HEALTH).await.unwrap()[0].value;
        assert_eq!(ok["healthy"], true, "{ok}");
        let bad = &down_store.list(&acme(), HEALTH).await.unwrap()[0].value;
        assert_eq!(bad["healthy"], false);
        assert_eq!(bad["ai"]["ok"], false);
        assert_eq!(bad["store"]["ok"], true);
    }
}
