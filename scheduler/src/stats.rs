//! What the scheduler did: its counters ([`Stats`]) and their metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use conveyor::telemetry::prometheus_client::collector::Collector;
use conveyor::telemetry::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use conveyor::telemetry::prometheus_client::metrics::counter::ConstCounter;
use conveyor::telemetry::prometheus_client::metrics::gauge::ConstGauge;

use crate::lease::Leadership;

/// Counters of what the scheduler did (for logs, metrics and benchmarks).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events published (one per tenant per tick).
    pub fired: AtomicU64,
    /// Events another scheduler had already published (duplicates the stream dropped).
    pub duplicates: AtomicU64,
    /// Ticks or tenant events skipped (catch-up policy, overlap).
    pub skipped: AtomicU64,
    /// Events published later than [`LATE_AFTER`](crate::LATE_AFTER).
    pub late: AtomicU64,
    /// Publish failures (the tick is retried).
    pub errors: AtomicU64,
    lateness_ms: Mutex<Vec<f64>>,
    retention: Mutex<Option<conveyor::retention::RetentionReport>>,
}

impl Stats {
    /// Publish time minus scheduled time of every published event so far, in ms.
    pub fn lateness_ms(&self) -> Vec<f64> {
        self.lateness_ms
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// What retention limits removed, as the leader last sampled it (`None` before a sample).
    pub fn retention(&self) -> Option<conveyor::retention::RetentionReport> {
        self.retention.lock().ok().and_then(|r| r.clone())
    }

    pub(crate) fn set_retention(&self, report: conveyor::retention::RetentionReport) {
        if let Ok(mut r) = self.retention.lock() {
            *r = Some(report);
        }
    }

    pub(crate) fn record_lateness(&self, ms: f64) {
        if let Ok(mut l) = self.lateness_ms.lock()
            && l.len() < 100_000
        {
            l.push(ms);
        }
    }
}

/// Reads the scheduler's counters at scrape time.
#[derive(Debug)]
pub(crate) struct SchedulerCollector {
    pub(crate) stats: Arc<Stats>,
    pub(crate) leadership: Arc<Leadership>,
}

impl Collector for SchedulerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        for (name, help, value) in [
            (
                "conveyor_scheduler_ticks_fired",
                "Cron events published (one per tenant per tick)",
                &s.fired,
            ),
            (
                "conveyor_scheduler_ticks_skipped",
                "Ticks or tenant events skipped (catch-up policy, overlap)",
                &s.skipped,
            ),
            (
                "conveyor_scheduler_ticks_late",
                "Cron events published more than 1 s after their time",
                &s.late,
            ),
            (
                "conveyor_scheduler_ticks_duplicates",
                "Cron events another scheduler had already published",
                &s.duplicates,
            ),
            (
                "conveyor_scheduler_errors",
                "Failed cron event publishes (retried)",
                &s.errors,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let leader = ConstGauge::new(i64::from(self.leadership.is_leader()));
        let metric = encoder.encode_descriptor(
            "conveyor_scheduler_leader",
            "1 while this scheduler process is the leader",
            None,
            leader.metric_type(),
        )?;
        leader.encode(metric)?;
        match self.stats.retention() {
            Some(report) => crate::retention::encode(&report, &mut encoder),
            None => Ok(()),
        }
    }
}
