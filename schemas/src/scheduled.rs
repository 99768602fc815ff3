//! Scheduled events: published by the scheduler, one per tenant per tick of a schedule.
//!
//! Every scheduled event has the same payload: the schedule's name, the tick's scheduled time,
//! and the time zone the schedule runs in. The event type says what to do.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{Id, TimeZoneName};

macro_rules! scheduled_events {
    ($($(#[$doc:meta])* $name:ident => $ty:literal;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
            pub struct $name {
                /// The schedule that fired.
                pub schedule: Id,
                /// The tick's scheduled time (not the time it was published).
                pub scheduled_at: DateTime<Utc>,
                /// The time zone the schedule's cron expression is read in.
                pub timezone: TimeZoneName,
            }

            impl Event for $name {
                const TYPE: &'static str = $ty;
            }
        )*
    };
}

scheduled_events! {
    /// Time to compute the day's metrics for a tenant.
    DailyMetrics => "daily.metrics";
    /// Time for the hourly sync with external systems.
    HourlySync => "hourly.sync";
    /// Time to send the weekly digest.
    WeeklyDigest => "weekly.digest";
    /// Time to retry video processing that stalled.
    VideoSyncRecovery => "video.sync.recovery";
    /// Time for the daily check of asset usage rights.
    DamRightsExpiryDaily => "dam.rights.expiry.daily";
    /// Time to write the daily report for a tenant.
    DailyReport => "daily.report";
    /// Time to remove data older than the retention.
    WeeklyCleanup => "weekly.cleanup";
    /// Time to check the health of the dependencies.
    HealthCheck => "health.check";
}
