//! Metrics, health checks and the HTTP endpoint that serves them.
//!
//! A [`Telemetry`] holds a Prometheus registry with the framework's metrics and a set of
//! readiness checks. Give it to a worker ([`WorkerBuilder::telemetry`](crate::WorkerBuilder::telemetry)),
//! a publisher ([`Publisher::with_telemetry`](crate::Publisher::with_telemetry)) and the
//! scheduler, then serve it with `Telemetry::serve` (feature `http`):
//!
//! - `GET /metrics`: every metric, in the Prometheus/OpenMetrics text format;
//! - `GET /healthz`: 200 while the process is alive;
//! - `GET /readyz`: 200 when every readiness check passes (connected to NATS, every group's
//!   consumer bound), else 503 with the failing checks, one per line.
//!
//! Labels stay bounded: group, event type (the types a group registered), outcome and error
//! kind. The tenant is no label, except for the tenants of an opt-in allow-list
//! ([`Telemetry::with_tenant_labels`]), which get their own family
//! `conveyor_tenant_events_handled_total`. The README lists every metric.
//!
//! ```no_run
//! use conveyor::telemetry::Telemetry;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = Telemetry::new();
//! let server = telemetry.serve("0.0.0.0:9464".parse()?).await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The Prometheus client the registry comes from, for registering metrics of your own through
/// [`Telemetry::register`].
pub use prometheus_client;

mod histogram;
mod metrics;
#[cfg(feature = "http")]
mod serve;

pub(crate) use histogram::DurationHistogram;
pub(crate) use metrics::{GroupMetrics, RouteMetrics};
#[cfg(feature = "http")]
pub use serve::{HttpServer, TelemetryError, TelemetryErrorKind, TelemetryServer};

/// Histogram buckets of handler durations, in seconds: 1 ms to 15 min.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// How a delivery ended, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The handler succeeded; the event was acked.
    Ok,
    /// The attempt failed and the event will be retried.
    Retry,
    /// The event went to the dead letters.
    DeadLetter,
    /// The event was cancelled (skipped before it started, or stopped while running).
    Cancelled,
    /// A shutdown handed the event back to the server.
    HandedBack,
    /// A replay meant for another group: acked without running.
    Skipped,
    /// The tenant is paused: the event was parked without running.
    Paused,
    /// Over the group's rate limit: the event waits for its slot without running yet.
    RateLimited,
    /// Its key runs its concurrency limit of events: it waits for room without running yet.
    ConcurrencyLimited,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
            Self::Cancelled => "cancelled",
            Self::HandedBack => "handed_back",
            Self::Skipped => "skipped",
            Self::Paused => "paused",
            Self::RateLimited => "rate_limited",
            Self::ConcurrencyLimited => "concurrency_limited",
        }
    }

    const ALL: [Outcome; 9] = [
        Self::Ok,
        Self::Retry,
        Self::DeadLetter,
        Self::Cancelled,
        Self::HandedBack,
        Self::Skipped,
        Self::Paused,
        Self::RateLimited,
        Self::ConcurrencyLimited,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    group: String,
    event_type: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantHandledLabels {
    tenant: String,
    group: String,
    event_type: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    group: String,
    event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    group: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type HistogramFamily<L> = Family<L, DurationHistogram>;

/// The framework's metric families.
struct Families {
    handled: Family<HandledLabels, Counter>,
    tenant_handled: Family<TenantHandledLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
    in_flight: Family<GroupLabels, Gauge>,
    pending: Family<GroupLabels, Gauge>,
    ack_pending: Family<GroupLabels, Gauge>,
    redelivered: Family<GroupLabels, Gauge>,
    bound: Family<GroupLabels, Gauge>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    publish_errors: Family<KindLabels, Counter>,
    sla_breaches: Family<RouteLabels, Counter>,
}

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

struct Inner {
    registry: Mutex<Registry>,
    families: Families,
    tenant_labels: HashSet<String>,
    checks: Mutex<BTreeMap<String, Check>>,
}

/// Metrics and readiness checks of one process; cheap to clone (all clones share them).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("tenant_labels", &self.inner.tenant_labels)
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry with every framework metric and no readiness checks yet.
    pub fn new() -> Self {
        Self::build(HashSet::new())
    }

    /// Like [`new`](Self::new), and counts handled events per tenant for these tenants (in
    /// `conveyor_tenant_events_handled_total`). Keep the list short: each tenant multiplies
    /// that family's series.
    pub fn with_tenant_labels<I, T>(tenants: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::build(tenants.into_iter().map(Into::into).collect())
    }

    fn build(tenant_labels: HashSet<String>) -> Self {
        let families = Families {
            handled: Family::default(),
            tenant_handled: Family::default(),
            duration: Family::default(),
            in_flight: Family::default(),
            pending: Family::default(),
            ack_pending: Family::default(),
            redelivered: Family::default(),
            bound: Family::default(),
            dead_letters: Family::default(),
            publish_errors: Family::default(),
            sla_breaches: Family::default(),
        };
        let mut r = Registry::default();
        let f = &families;
        r.register(
            "conveyor_events_handled",
            "Deliveries settled, by group, event type and outcome",
            f.handled.clone(),
        );
        r.register(
            "conveyor_tenant_events_handled",
            "Deliveries settled for the allow-listed tenants",
            f.tenant_handled.clone(),
        );
        r.register(
            "conveyor_handler_duration_seconds",
            "Duration of handler runs, by group and event type",
            f.duration.clone(),
        );
        r.register(
            "conveyor_handlers_in_flight",
            "Handlers running now, by group",
            f.in_flight.clone(),
        );
        r.register(
            "conveyor_consumer_pending",
            "Events the group's consumer has not delivered yet",
            f.pending.clone(),
        );
        r.register(
            "conveyor_consumer_ack_pending",
            "Events delivered to the group and not yet acked",
            f.ack_pending.clone(),
        );
        r.register(
            "conveyor_consumer_redelivered",
            "Events of the group being redelivered",
            f.redelivered.clone(),
        );
        r.register(
            "conveyor_consumer_bound",
            "1 while this process is bound to the group's consumer",
            f.bound.clone(),
        );
        r.register(
            "conveyor_dead_letters",
            "Events dead-lettered by this process, by group and error kind",
            f.dead_letters.clone(),
        );
        r.register(
            "conveyor_publish_errors",
            "Failed publishes, by error kind",
            f.publish_errors.clone(),
        );
        r.register(
            "conveyor_sla_breaches",
            "Handler runs that took longer than their expected duration",
            f.sla_breaches.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(r),
                families,
                tenant_labels,
                checks: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Registers more metrics (an app's own, or a component's) in the same registry.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        if let Ok(mut r) = self.inner.registry.lock() {
            f(&mut r);
        }
    }

    /// Every metric in the OpenMetrics text format (what `/metrics` serves).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.inner.registry.lock()
            && let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r)
        {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }

    /// Adds (or replaces) a readiness check named `name`; `/readyz` passes when all pass.
    pub fn add_check(
        &self,
        name: impl Into<String>,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        if let Ok(mut c) = self.inner.checks.lock() {
            c.insert(name.into(), Arc::new(check));
        }
    }

    /// Removes a readiness check.
    pub fn remove_check(&self, name: &str) {
        if let Ok(mut c) = self.inner.checks.lock() {
            c.remove(name);
        }
    }

    /// The names of the readiness checks failing now (empty: ready).
    pub fn failing_checks(&self) -> Vec<String> {
        let checks: Vec<(String, Check)> = match self.inner.checks.lock() {
            Ok(c) => c.iter().map(|(n, c)| (n.clone(), c.clone())).collect(),
            Err(_) => return vec!["telemetry state poisoned".into()],
        };
        checks
            .into_iter()
            .filter(|(_, check)| !check())
            .map(|(name, _)| name)
            .collect()
    }

    /// Counts a failed publish.
    pub(crate) fn publish_error(&self, kind: &str) {
        self.inner
            .families
            .publish_errors
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// The metric handles of one group.
    pub(crate) fn group(&self, group: &str) -> GroupMetrics {
        let labels = GroupLabels {
            group: group.to_owned(),
        };
        let f = &self.inner.families;
        GroupMetrics {
            telemetry: self.clone(),
            group: group.to_owned(),
            in_flight: f.in_flight.get_or_create_owned(&labels),
            pending: f.pending.get_or_create_owned(&labels),
            ack_pending: f.ack_pending.get_or_create_owned(&labels),
            redelivered: f.redelivered.get_or_create_owned(&labels),
            bound: f.bound.get_or_create_owned(&labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_handled_counts_and_histograms() {
        let t = Telemetry::with_tenant_labels(["acme"]);
        let g = t.group("billing");
        let r = g.route("order.created");
        r.settled(Outcome::Ok, Some("acme"));
        r.settled(Outcome::Ok, Some("globex"));
        r.settled(Outcome::Retry, None);
        r.duration.observe(std::time::Duration::from_millis(20));
        r.duration.observe(std::time::Duration::from_secs(2000));
        g.dead_letter("decode");
        t.publish_error("timeout");
        let text = t.encode();
        assert!(text.contains(
            r#"conveyor_events_handled_total{group="billing",event_type="order.created",outcome="ok"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"conveyor_events_handled_total{group="billing",event_type="order.created",outcome="retry"} 1"#
        ));
        assert!(text.contains(
            r#"conveyor_tenant_events_handled_total{tenant="acme",group="billing",event_type="order.created",outcome="ok"} 1"#
        ));
        assert!(!text.contains(r#"tenant="globex""#));
        assert!(text.contains(
            r#"conveyor_handler_duration_seconds_count{group="billing",event_type="order.created"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"conveyor_handler_duration_seconds_bucket{le="0.025",group="billing",event_type="order.created"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"conveyor_handler_duration_seconds_bucket{le="+Inf",group="billing",event_type="order.created"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"conveyor_handler_duration_seconds_sum{group="billing",event_type="order.created"} 2000.02"#
        ), "{text}");
        assert!(text.contains(r#"conveyor_dead_letters_total{group="billing",kind="decode"} 1"#));
        assert!(text.contains(r#"conveyor_publish_errors_total{kind="timeout"} 1"#));
    }

    /// The README's metric table is the public contract: every family the framework exposes is
    /// in it, under its exposed name.
    #[test]
    fn every_metric_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        let t = Telemetry::with_tenant_labels(["acme"]);
        t.group("g").route("t").settled(Outcome::Ok, Some("acme"));
        t.group("g").dead_letter("decode");
        t.publish_error("timeout");
        let text = t.encode();
        let families: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect();
        assert!(families.len() >= 11, "{text}");
        for (name, kind) in families {
            let exposed = if kind == "counter" {
                format!("`{name}_total`")
            } else {
                format!("`{name}`")
            };
            assert!(
                readme.contains(&exposed),
                "{exposed} ({kind}) is not in the README"
            );
        }
    }

    #[test]
    fn readiness_checks() {
        let t = Telemetry::new();
        assert!(t.failing_checks().is_empty());
        let ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ok.clone();
        t.add_check("nats", move || {
            flag.load(std::sync::atomic::Ordering::Relaxed)
        });
        assert_eq!(t.failing_checks(), vec!["nats".to_owned()]);
        ok.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(t.failing_checks().is_empty());
    }
}
