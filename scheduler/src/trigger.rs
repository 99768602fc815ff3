//! "Trigger now": one tick of a schedule for one tenant, outside its cron, with an id of its
//! own (never taken for the tick the leader will fire).

use chrono::Utc;
use conveyor::{Connection, EventOptions, PublishError, Published, Publisher, TenantId};

use crate::schedule::Schedule;

/// Publishes `schedule`'s event for `tenant` now, as a tick scheduled at this moment; its id is
/// `manual:<schedule>:<tenant>:<uuid>`, so it is neither a duplicate of a cron tick nor taken
/// for one.
pub async fn trigger_now(
    conn: &Connection,
    schedule: &Schedule,
    tenant: &TenantId,
) -> Result<Published, PublishError> {
    let now = Utc::now();
    let payload = serde_json::json!({
        "schedule": schedule.name,
        "scheduled_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "timezone": schedule.timezone,
    });
    let id = format!(
        "manual:{}:{tenant}:{}",
        schedule.name,
        uuid::Uuid::now_v7().simple()
    );
    Publisher::new(conn)
        .with_source("conveyor-scheduler")
        .publish_untyped(
            tenant.clone(),
            &schedule.event_type,
            &payload,
            EventOptions::default().id(id).time(now),
        )
        .await
}
