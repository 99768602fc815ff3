//! The gateway's metrics, in the process's telemetry registry.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use conveyor::telemetry::Telemetry;

type Labels = Vec<(&'static str, String)>;

/// Requests by status, events by result, request durations.
#[derive(Clone)]
pub(crate) struct Metrics {
    requests: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    duration: Histogram,
}

impl Metrics {
    pub(crate) fn new(telemetry: &Telemetry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            events: Family::default(),
            duration: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
        };
        telemetry.register(|r| {
            r.register(
                "conveyor_gateway_requests",
                "Requests to POST /v1/events, by HTTP status",
                metrics.requests.clone(),
            );
            r.register(
                "conveyor_gateway_events",
                "Events answered, by result (stored, duplicate)",
                metrics.events.clone(),
            );
            r.register(
                "conveyor_gateway_request_duration_seconds",
                "Time from a request's headers to its answer",
                metrics.duration.clone(),
            );
        });
        metrics
    }

    pub(crate) fn request(&self, status: u16, took: Duration) {
        self.requests
            .get_or_create(&vec![("status", status.to_string())])
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub(crate) fn events(&self, result: &'static str, n: u64) {
        self.events
            .get_or_create(&vec![("result", result.to_owned())])
            .inc_by(n);
    }
}
