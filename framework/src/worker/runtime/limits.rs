//! The group's cluster-wide limits on the delivery path: a rate-limit slot and a concurrency
//! lease are taken before a run; an event over a limit becomes an outcome that waits as a
//! delayed copy (see [`crate::rate`], [`crate::concurrency`]).

use super::*;

/// What the limits see of a delivery about to run.
pub(super) struct Admitted<'a> {
    pub(super) msg: &'a jetstream::Message,
    pub(super) tenant: &'a TenantId,
    pub(super) event_type: &'a str,
    pub(super) data: &'a serde_json::value::RawValue,
    /// The handler's timeout: a concurrency lease lives a little longer.
    pub(super) timeout: Duration,
}

/// Takes the delivery's rate-limit slot and concurrency lease (kept in `tracking`, released once
/// the delivery is settled); `Some` outcome when it must wait instead of running now.
pub(super) async fn admit<S>(
    rt: &GroupRuntime<S>,
    event: &Admitted<'_>,
    tracking: &mut Tracking<'_>,
) -> Option<Outcome> {
    let input = crate::scope::KeyInput {
        tenant: event.tenant,
        event_type: event.event_type,
        data: event.data,
    };
    let tenant = event.tenant.as_str();
    if let Some(limiter) = &rt.limiter
        && !holds_rate_slot(event.msg, tenant, &rt.name)
        && let Some(key) = limiter.limit().key(&rt.name, input)
    {
        match limiter.take(&key).await {
            Ok(slot) => {
                let wait = (slot - Utc::now()).to_std().unwrap_or_default();
                if wait > SHORT_RATE_WAIT {
                    return Some(Outcome::RateLimited { slot });
                }
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                // Never run over the limit: handed back (not an attempt) and asked again.
                tracing::warn!(error = %e, "rate limit unavailable; handed back");
                return Some(Outcome::Elsewhere {
                    delay: Duration::from_secs(1),
                });
            }
        }
    }
    if let Some(limiter) = &rt.concurrency
        && let Some(key) = limiter.limit().scope.key(&rt.name, input)
    {
        let came_from = header(event.msg, SCHEDULER)
            .map(async_nats::HeaderValue::as_str)
            .filter(|s| crate::delay::is_copy_of(s, tenant, &rt.name));
        match limiter.acquire(&key, event.timeout, came_from).await {
            Ok(Some(lease)) => tracking.lease = Some(lease),
            Ok(None) => return Some(Outcome::WaitForRoom { key }),
            Err(e) => {
                // Never run over the limit: handed back (not an attempt) and asked again.
                tracing::warn!(error = %e, "concurrency limit unavailable; handed back");
                return Some(Outcome::Elsewhere {
                    delay: Duration::from_secs(1),
                });
            }
        }
    }
    None
}

/// A wait for a rate-limit slot this short is slept through in place rather than scheduled.
const SHORT_RATE_WAIT: Duration = Duration::from_millis(20);

/// Ends a run's concurrency lease and wakes the first event waiting for room on its key.
pub(super) async fn release<S>(rt: &GroupRuntime<S>, lease: crate::concurrency::Lease) {
    let Some(limiter) = &rt.concurrency else {
        return;
    };
    match limiter.release(&lease).await {
        Ok(next) => {
            if next.is_some() {
                wake_waiting(rt, &lease.key, next).await;
            }
        }
        // The lease ends by itself at its expiry.
        Err(e) => tracing::warn!(error = %e, "could not release the concurrency lease"),
    }
}

/// Wakes the first copy still waiting for room on `key`, starting with `first` (already taken
/// off the queue).
pub(super) async fn wake_waiting<S>(rt: &GroupRuntime<S>, key: &str, first: Option<String>) {
    let Some(limiter) = &rt.concurrency else {
        return;
    };
    let mut next = first;
    // A few tries: a queued copy may have fired on its own already.
    for _ in 0..4 {
        let Some(subject) = next.take() else {
            return;
        };
        match crate::delay::wake(&rt.conn, &subject).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, %subject, "could not wake a waiting event; it asks again in 30 s");
                return;
            }
        }
        next = match limiter.next_waiting(key).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the events waiting for room");
                return;
            }
        };
    }
}

/// True when the delivery is a copy that already took its rate-limit slot: it carries the slot,
/// was fired by the group's own copy schedule (which only the group's workers may publish), and
/// is on time. A copy much later than its slot (its schedule fired while a server was down, with
/// others) takes a new slot, so copies that fire together do not run together.
fn holds_rate_slot(msg: &jetstream::Message, tenant: &str, group: &str) -> bool {
    let on_time = header(msg, RATE_SLOT)
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v.as_str()).ok())
        .is_some_and(|slot| Utc::now() <= slot + RATE_SLOT_GRACE);
    on_time
        && header(msg, SCHEDULER)
            .is_some_and(|s| crate::delay::is_copy_of(s.as_str(), tenant, group))
}

/// How late after its slot a rate-limited copy still runs on it: about two firing ticks of the
/// server's schedules.
const RATE_SLOT_GRACE: chrono::Duration = chrono::Duration::milliseconds(500);
