//! Metric handles of a group and of one of its routes, resolved once for the hot path.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::*;

/// Metric handles of one group, resolved once so the hot path does no lookups.
#[derive(Clone)]
pub(crate) struct GroupMetrics {
    pub(super) telemetry: Telemetry,
    pub(super) group: String,
    pub(crate) in_flight: Gauge,
    pub(crate) pending: Gauge,
    pub(crate) ack_pending: Gauge,
    pub(crate) redelivered: Gauge,
    pub(crate) bound: Gauge,
}

impl GroupMetrics {
    /// The handles of one route (event type) of the group.
    pub(crate) fn route(&self, event_type: &str) -> RouteMetrics {
        let f = &self.telemetry.inner.families;
        let outcome = |o: Outcome| {
            f.handled.get_or_create_owned(&HandledLabels {
                group: self.group.clone(),
                event_type: event_type.to_owned(),
                outcome: o.as_str(),
            })
        };
        let route = RouteLabels {
            group: self.group.clone(),
            event_type: event_type.to_owned(),
        };
        RouteMetrics {
            telemetry: self.telemetry.clone(),
            group: self.group.clone(),
            event_type: event_type.to_owned(),
            outcomes: Outcome::ALL.map(outcome),
            duration: f.duration.get_or_create_owned(&route),
            sla_breaches: f.sla_breaches.get_or_create_owned(&route),
        }
    }

    /// Counts a dead letter of this group.
    pub(crate) fn dead_letter(&self, kind: &str) {
        self.telemetry
            .inner
            .families
            .dead_letters
            .get_or_create(&DeadLetterLabels {
                group: self.group.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}

/// Metric handles of one (group, event type).
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    pub(super) telemetry: Telemetry,
    pub(super) group: String,
    pub(super) event_type: String,
    pub(super) outcomes: [Counter; 9],
    pub(crate) duration: DurationHistogram,
    pub(crate) sla_breaches: Counter,
}

impl RouteMetrics {
    /// Counts a settled delivery.
    pub(crate) fn settled(&self, outcome: Outcome, tenant: Option<&str>) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[i].inc();
        let tenants = &self.telemetry.inner.tenant_labels;
        if let Some(tenant) = tenant
            && !tenants.is_empty()
            && tenants.contains(tenant)
        {
            self.telemetry
                .inner
                .families
                .tenant_handled
                .get_or_create(&TenantHandledLabels {
                    tenant: tenant.to_owned(),
                    group: self.group.clone(),
                    event_type: self.event_type.clone(),
                    outcome: outcome.as_str(),
                })
                .inc();
        }
    }
}
