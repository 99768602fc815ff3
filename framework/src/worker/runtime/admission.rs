//! Admitting one delivery: the checks before anything runs (replay target, subject, envelope,
//! tenant, schedule owner, pause, type, route, attempts). A delivery that fails one gets its
//! outcome here; one that passes has a route to run.

use super::*;

/// A delivery that passed admission: its envelope, tenant and the handler that takes it.
pub(super) struct Routed<'e, 'r, S> {
    pub(super) env: RawEnvelope<'e>,
    pub(super) tenant: TenantId,
    pub(super) route: &'r Route<S>,
}

/// Checks a delivery. `Err` is the delivery's outcome without a run: skipped, parked, handed
/// back for another version of the group, or dead-lettered with what is wrong.
pub(super) fn admit<'e, 'r, S: Clone + Send + Sync + 'static>(
    rt: &'r GroupRuntime<S>,
    incoming: &Incoming<'_>,
    parsed: Result<RawEnvelope<'e>, crate::envelope::DecodeError>,
    tracking: &mut Tracking<'r>,
) -> Result<Routed<'e, 'r, S>, Outcome> {
    let msg = incoming.msg;
    let span = tracing::Span::current();
    if let Some(group) = header(msg, REPLAY_FOR)
        && group.as_str() != rt.name
    {
        return Err(Outcome::NotForThisGroup);
    }
    let subject = msg.message.subject.as_str();
    let Some((subject_tenant, subject_type)) = split_event_subject(subject) else {
        return Err(Outcome::dead(
            DeadLetterKind::Decode,
            format!("subject {subject:?} is not events.<tenant>.<type>"),
        ));
    };
    let env = parsed.map_err(|e| Outcome::dead(DeadLetterKind::Decode, e.to_string()))?;
    span.record("event_type", &*env.event_type);
    span.record("event_id", &*env.id);
    span.record("tenant", &*env.tenantid);
    let tenant = env
        .tenant()
        .map_err(|e| Outcome::dead(DeadLetterKind::TenantMismatch, e.to_string()))?;
    if tenant.as_str() != subject_tenant {
        return Err(Outcome::dead(
            DeadLetterKind::TenantMismatch,
            format!("tenantid {tenant:?} differs from the subject's tenant {subject_tenant:?}"),
        ));
    }
    if let Some(scheduler) = header(msg, SCHEDULER)
        && crate::delay::scheduled_by_other_tenant(scheduler.as_str(), subject_tenant)
    {
        return Err(Outcome::dead(
            DeadLetterKind::TenantMismatch,
            format!(
                "the event was scheduled by {:?}, which is not a schedule of tenant {subject_tenant:?}",
                scheduler.as_str()
            ),
        ));
    }
    if rt.metrics.is_some() {
        // Only the tenant allow-list of the metrics needs it.
        tracking.tenant = Some(tenant.clone());
    }
    if rt.pauses.is_paused(&rt.name, tenant.as_str()) {
        return Err(Outcome::Park);
    }
    if env.event_type != subject_type {
        tracking.metrics = rt.routes.get(subject_type).and_then(|r| r.metrics.as_ref());
        return Err(Outcome::dead(
            DeadLetterKind::TypeMismatch,
            format!(
                "envelope type {:?} differs from the subject's type {subject_type:?}",
                env.event_type
            ),
        ));
    }
    let Some(route) = rt.routes.get(subject_type) else {
        return Err(unrouted(rt, subject_type, incoming.attempt, tracking));
    };
    tracking.metrics = route.metrics.as_ref();
    let max_attempts = route.options.retry.max_attempts;
    if incoming.attempt > max_attempts {
        return Err(Outcome::dead(
            DeadLetterKind::MaxDeliveries,
            format!(
                "delivery {} exceeds the handler's {max_attempts} attempts: an earlier attempt ended without a result",
                incoming.attempt
            ),
        ));
    }
    Ok(Routed { env, tenant, route })
}

/// The consumer's filter holds a type this process has no handler for: another version of the
/// group (a rolling deploy) handles it. Handed back for a process that can, a bounded number of
/// times, then dead-lettered.
fn unrouted<S>(
    rt: &GroupRuntime<S>,
    event_type: &str,
    attempt: u32,
    tracking: &Tracking<'_>,
) -> Outcome {
    let delivered = attempt.saturating_add(tracking.handed_back);
    let mut known: Vec<&str> = rt.routes.keys().map(String::as_str).collect();
    known.sort_unstable();
    if delivered <= UNKNOWN_TYPE_HANDBACKS {
        tracing::info!(event_type, handles = ?known, "type handled by another version of the group; handed back");
        return Outcome::Elsewhere {
            delay: rt.config.unknown_type_grace / UNKNOWN_TYPE_HANDBACKS,
        };
    }
    Outcome::dead(
        DeadLetterKind::UnknownType,
        format!(
            "group {:?} has no handler for type {event_type:?} (it handles {known:?}), and no process of the group handled it in {delivered} deliveries",
            rt.name
        ),
    )
}
