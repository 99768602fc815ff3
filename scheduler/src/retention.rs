//! While this process leads, it samples what retention limits removed before it was handled
//! ([`conveyor::retention::sample`]): the count needs a sampler that keeps running while a
//! group's workers are down, and the leader is the one process a deployment always has running.
//! The latest totals are exported with the scheduler's metrics.

use std::sync::Arc;
use std::time::Duration;

use conveyor::Connection;
use conveyor::retention::RetentionReport;
use conveyor::telemetry::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use conveyor::telemetry::prometheus_client::metrics::gauge::ConstGauge;
use tokio_util::sync::CancellationToken;

use crate::lease::Leadership;
use crate::stats::Stats;

/// How often the leader samples by default.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(10);

pub(crate) async fn run(
    conn: Connection,
    leadership: Arc<Leadership>,
    stats: Arc<Stats>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if !leadership.is_leader() {
            continue;
        }
        match conveyor::retention::sample(&conn).await {
            Ok(report) => {
                failing = false;
                stats.set_retention(report);
            }
            // Logged once per failing stretch: a scheduler without the permissions (see
            // `nats-config/accounts.conf`) keeps firing, it only does not count.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot sample what retention limits removed");
            }
            Err(_) => {}
        }
    }
}

/// Encodes the latest totals: `conveyor_events_removed_unhandled{group}` and
/// `conveyor_dead_letters_removed`.
pub(crate) fn encode(
    report: &RetentionReport,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(
        "conveyor_events_removed_unhandled",
        "Events EVENTS removed (max_age, max_bytes) before this group handled them",
        None,
        gauge.metric_type(),
    )?;
    for g in &report.groups {
        let labels = [("group", g.group.as_str())];
        let value = i64::try_from(g.removed).unwrap_or(i64::MAX);
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    let removed = i64::try_from(report.dead_letters_removed).unwrap_or(i64::MAX);
    let gauge = ConstGauge::new(removed);
    let metric = encoder.encode_descriptor(
        "conveyor_dead_letters_removed",
        "Dead letters DLQ removed (max_age, max_bytes); replayed or purged ones are not counted",
        None,
        gauge.metric_type(),
    )?;
    gauge.encode(metric)
}
