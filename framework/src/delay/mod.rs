//! Delayed events: stored now, visible to groups at their time, through the server's message
//! schedules (ADR-51), never a timer in a process.
//!
//! A delayed event is a schedule message in the `EVENTS` stream on
//! `delayed.<tenant>.e.<escaped event id>` (the id escaped with
//! [`escape_token`]) carrying the event's envelope as its body and these headers:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Schedule` | `@at <RFC 3339 time>`, e.g. `@at 2026-12-01T09:00:00Z` |
//! | `Nats-Schedule-Target` | `events.<tenant>.<type>` (plus `.~<lane>`) |
//! | `Nats-TTL` | `never` (the schedule outlives the stream's `max_age`) |
//! | `Nats-Msg-Id` | `<tenant>:<event id>`, as for any event |
//!
//! At its time the server stores the body on the target subject (through the stream's
//! partition transform, like a published event) and removes the schedule. Any NATS client can
//! publish one with plain headers; [`EventOptions::delay`](crate::EventOptions::delay) and
//! [`EventOptions::deliver_at`](crate::EventOptions::deliver_at) do it from Rust, and
//! `conveyor publish --delay 10m` from the command line. Publishing the same event twice stores
//! it once (the `Nats-Msg-Id`, and a later schedule on the same subject replaces the earlier).
//!
//! A handler's retry that waits longer than its group's
//! [`delayed_retry_after`](crate::GroupConfig::delayed_retry_after) is a delayed copy too, on
//! `delayed.<tenant>.r.<escaped event id>.<group>`, for that group only
//! ([`REPLAY_FOR_HEADER`](crate::dlq::REPLAY_FOR_HEADER)) and with the attempts made so far in
//! [`ATTEMPT_HEADER`]: the original delivery is acked, so a long wait holds none of the group's
//! `max_ack_pending`.
//!
//! A schedule's target is a header, and NATS permissions restrict subjects, not header values:
//! a worker dead-letters (as `tenant-mismatch`) a fired event whose schedule subject
//! (`Nats-Scheduler`) belongs to another tenant, so a tenant allowed `delayed.<tenant>.>` cannot
//! inject events into another tenant.
//!
//! [`scheduled`] lists what waits; [`unschedule`] (and [`crate::control::cancel`], `conveyor
//! cancel`) removes an event's schedules before they fire.

mod copy;
mod list;

pub(crate) use copy::{Copy, is_copy_of, schedule_copy, wake};
pub use list::{
    ScheduleError, ScheduleErrorKind, Scheduled, ScheduledKind, scheduled, scheduled_count,
    unschedule,
};

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::history::escape_token;
use crate::tenant::TenantId;

/// First token of every schedule subject in `EVENTS`.
pub const DELAYED_SUBJECT_PREFIX: &str = "delayed";
/// Header of a delayed retry copy: the attempts the group already made for the event. The next
/// delivery is attempt `n + 1`.
pub const ATTEMPT_HEADER: &str = "Conveyor-Attempt";
/// The server's header naming the schedule a fired message came from.
pub const SCHEDULER_HEADER: &str = "Nats-Scheduler";

/// When a delayed event becomes visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long after the publish.
    After(Duration),
    /// At this time.
    At(DateTime<Utc>),
}

impl When {
    /// The time this stands for, seen from `now`: `Ok(None)` when it is not in the future (the
    /// event is then published at once), an error when the delay is past any representable time.
    pub fn resolve(self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
        let at = match self {
            Self::After(d) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| format!("a delay of {d:?} is past any representable time"))?,
            Self::At(t) => t,
        };
        Ok((at > now).then_some(at))
    }
}

/// The schedule subject of `tenant`'s delayed event `event_id`:
/// `delayed.<tenant>.e.<escaped id>`.
///
/// ```
/// let acme = conveyor::TenantId::parse("acme")?;
/// assert_eq!(conveyor::delay::delayed_subject(&acme, "review:42"), "delayed.acme.e.review=3A42");
/// # Ok::<(), conveyor::TenantIdError>(())
/// ```
pub fn delayed_subject(tenant: &TenantId, event_id: &str) -> String {
    format!(
        "{DELAYED_SUBJECT_PREFIX}.{tenant}.e.{}",
        escape_token(event_id)
    )
}

/// Collapses a burst of events into one run (see [`EventOptions::debounce`](crate::EventOptions::debounce)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debounce {
    /// The burst's key, within the tenant and event type.
    pub key: String,
    /// How long after the burst's last event it runs.
    pub period: Duration,
    /// How long after the burst's first event it runs at the latest (`None`: no limit, a steady
    /// stream of events closer than `period` never runs until it pauses).
    pub max_wait: Option<Duration>,
}

/// Header of a debounce schedule: when its burst's first event was published (RFC 3339).
pub const DEBOUNCE_FIRST_HEADER: &str = "Conveyor-Debounce-First";

/// The schedule subject of `tenant`'s debounced events of type `event_type` with `key`:
/// `delayed.<tenant>.d.<escaped key>.<type>`. Each publish replaces the schedule, so the last
/// event of a burst is the one that runs.
pub fn debounce_subject(tenant: &TenantId, key: &str, event_type: &str) -> String {
    format!(
        "{DELAYED_SUBJECT_PREFIX}.{tenant}.d.{}.{event_type}",
        escape_token(key)
    )
}

/// The schedule subject of a delayed retry of `tenant`'s event `event_id` for `group`:
/// `delayed.<tenant>.r.<escaped id>.<group>`.
pub fn retry_subject(tenant: &TenantId, event_id: &str, group: &str) -> String {
    format!(
        "{DELAYED_SUBJECT_PREFIX}.{tenant}.r.{}.{group}",
        escape_token(event_id)
    )
}

/// The `Nats-Schedule` value for `at`: `@at` and the time in RFC 3339, to the millisecond.
pub fn schedule_at(at: DateTime<Utc>) -> String {
    format!("@at {}", at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The headers that turn a message into a one-shot schedule of `target` at `at`.
pub(crate) fn schedule_headers(at: DateTime<Utc>, target: &str) -> [(String, String); 3] {
    [
        ("Nats-Schedule".to_owned(), schedule_at(at)),
        ("Nats-Schedule-Target".to_owned(), target.to_owned()),
        ("Nats-TTL".to_owned(), "never".to_owned()),
    ]
}

/// True when `scheduler` (a fired message's `Nats-Scheduler` header) names a schedule that
/// does not belong to `tenant`: `delayed.<tenant>.…`, or an event subject of the tenant in any
/// layout (`events.~.<partition>.<tenant>.…`, `events.<tenant>.…`).
pub(crate) fn scheduled_by_other_tenant(scheduler: &str, tenant: &str) -> bool {
    let owner = match crate::partition::split_stored(scheduler) {
        Some(event) => Some(event.tenant),
        None => scheduler
            .strip_prefix(DELAYED_SUBJECT_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split('.').next()),
    };
    owner != Some(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_in_the_past_is_no_delay() {
        let now = Utc::now();
        assert_eq!(When::After(Duration::ZERO).resolve(now), Ok(None));
        assert_eq!(When::At(now).resolve(now), Ok(None));
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(When::At(later).resolve(now), Ok(Some(later)));
        assert_eq!(
            When::After(Duration::from_secs(5)).resolve(now),
            Ok(Some(later))
        );
        assert!(When::After(Duration::MAX).resolve(now).is_err());
    }

    #[test]
    fn schedules_belong_to_the_tenant_in_their_subject() {
        assert!(!scheduled_by_other_tenant("delayed.acme.e.x", "acme"));
        assert!(!scheduled_by_other_tenant("events.acme.3.sched", "acme"));
        assert!(!scheduled_by_other_tenant("events.~.15.acme.sched", "acme"));
        assert!(scheduled_by_other_tenant(
            "events.~.15.globex.sched",
            "acme"
        ));
        assert!(scheduled_by_other_tenant("events.~.15.acme", "acme"));
        assert!(scheduled_by_other_tenant("delayed.globex.e.x", "acme"));
        assert!(scheduled_by_other_tenant("other.acme.e.x", "acme"));
        assert!(scheduled_by_other_tenant("", "acme"));
    }

    #[test]
    fn subjects_escape_the_id() {
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(
            retry_subject(&acme, "a.b", "billing"),
            "delayed.acme.r.a=2Eb.billing"
        );
        assert_eq!(
            schedule_at(DateTime::from_timestamp(1_700_000_000, 5_000_000).unwrap()),
            "@at 2023-11-14T22:13:20.005Z"
        );
    }
}
