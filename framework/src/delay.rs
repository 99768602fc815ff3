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

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;

use crate::connection::Connection;
use crate::envelope::RawEnvelope;
use crate::error::Error;
use crate::history::{escape_token, unescape_token};
use crate::tenant::{TenantId, validate_token};
use crate::topology::EVENTS_STREAM;

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
/// does not belong to `tenant`: its second token must be the tenant, as in
/// `delayed.<tenant>.…` or `events.<tenant>.…`.
pub(crate) fn scheduled_by_other_tenant(scheduler: &str, tenant: &str) -> bool {
    let mut tokens = scheduler.split('.');
    let first = tokens.next();
    let second = tokens.next();
    !(matches!(first, Some(DELAYED_SUBJECT_PREFIX | "events")) && second == Some(tenant))
}

/// A delayed copy of a delivery, for its group only.
pub(crate) struct Copy {
    /// Attempts the group made for the event so far.
    pub(crate) attempts_made: u32,
    /// When it is delivered.
    pub(crate) at: DateTime<Utc>,
    /// Its `Nats-Msg-Id` after the tenant, e.g. `retry:<group>:<id>:<attempt>`: the same for a
    /// copy scheduled again after a crash, so it is stored once.
    pub(crate) dedup: String,
    /// The rate-limit slot it was given, if it waits for one.
    pub(crate) rate_slot: Option<DateTime<Utc>>,
}

/// Schedules a delayed copy of `msg` (a delivery of `group`) for `group` only, keeping its body
/// (the event id, trace and correlation) and its headers. Awaits the stream's ack; returns the
/// copy's schedule subject.
pub(crate) async fn schedule_copy(
    conn: &Connection,
    group: &str,
    msg: &async_nats::Message,
    copy: Copy,
) -> Result<String, crate::PublishError> {
    use crate::publisher::PublishErrorKind as K;
    let stored = msg.subject.as_str();
    let target = crate::partition::published_subject(stored);
    let Some((tenant, _)) = crate::envelope::split_event_subject(stored) else {
        return Err(Error::new(
            K::InvalidEventType,
            format!("{stored:?} is not an event subject"),
        ));
    };
    let tenant = TenantId::parse(tenant)
        .map_err(|e| Error::with_source(K::InvalidTenant, e.message().to_owned(), e))?;
    let id = RawEnvelope::parse(&msg.payload)
        .map_err(|e| Error::with_source(K::Encode, e.message().to_owned(), e))?
        .id
        .into_owned();
    let mut message = async_nats::jetstream::message::PublishMessage::build()
        .payload(msg.payload.clone())
        .message_id(format!("{tenant}:{}", copy.dedup));
    if let Some(headers) = &msg.headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            let ours = name.starts_with("Nats-")
                || name.eq_ignore_ascii_case(ATTEMPT_HEADER)
                || name.eq_ignore_ascii_case(crate::dlq::REPLAY_FOR_HEADER)
                || name.eq_ignore_ascii_case(crate::rate::RATE_SLOT_HEADER);
            if !ours {
                for value in values {
                    message = message.header(name, value.as_str());
                }
            }
        }
    }
    message = message
        .header(crate::dlq::REPLAY_FOR_HEADER, group)
        .header(ATTEMPT_HEADER, copy.attempts_made.to_string().as_str());
    if let Some(slot) = copy.rate_slot {
        message = message.header(
            crate::rate::RATE_SLOT_HEADER,
            slot.to_rfc3339_opts(SecondsFormat::Micros, true).as_str(),
        );
    }
    for (name, value) in schedule_headers(copy.at, &target) {
        message = message.header(name.as_str(), value.as_str());
    }
    let subject = retry_subject(&tenant, &id, group);
    crate::publisher::send_message(conn, subject.clone(), message)
        .await?
        .acked()
        .await
        .map(|_| subject)
}

/// Makes the copy waiting on schedule `subject` fire now, by replacing its schedule with one due
/// now (same body and headers). False when there is no such schedule any more (it fired): the
/// replacement is conditional on the schedule being the subject's last message, so a copy that
/// fired meanwhile is never scheduled twice.
pub(crate) async fn wake(conn: &Connection, subject: &str) -> Result<bool, crate::PublishError> {
    use crate::publisher::PublishErrorKind as K;
    let stream = conn
        .jetstream()
        .get_stream_no_info(EVENTS_STREAM)
        .await
        .map_err(|e| Error::with_source(K::NoStream, "cannot reach the EVENTS stream", e))?;
    let Ok(current) = stream.direct_get_last_for_subject(subject).await else {
        return Ok(false);
    };
    let Some(target) = current
        .headers
        .get("Nats-Schedule-Target")
        .map(|v| v.as_str().to_owned())
    else {
        return Ok(false);
    };
    let mut message = async_nats::jetstream::message::PublishMessage::build()
        .payload(current.payload.clone())
        .message_id(format!("wake:{subject}:{}", current.sequence))
        .expected_last_subject_sequence(current.sequence);
    for (name, values) in current.headers.iter() {
        let name: &str = name.as_ref();
        if !name.starts_with("Nats-") {
            for value in values {
                message = message.header(name, value.as_str());
            }
        }
    }
    for (name, value) in schedule_headers(Utc::now(), &target) {
        message = message.header(name.as_str(), value.as_str());
    }
    let sent = crate::publisher::send_message(conn, subject.to_owned(), message).await?;
    match sent.acked().await {
        Ok(_) => Ok(true),
        // The copy fired (or was replaced) between the read and the replacement.
        Err(e) if e.kind() == K::Other => Ok(false),
        Err(e) => Err(e),
    }
}

/// True when `scheduler` (a fired message's `Nats-Scheduler`) is a copy schedule of `group` for
/// `tenant`: `delayed.<tenant>.r.<id>.<group>`. Only workers of the group may publish there.
pub(crate) fn is_copy_of(scheduler: &str, tenant: &str, group: &str) -> bool {
    scheduler
        .strip_prefix(DELAYED_SUBJECT_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|s| s.strip_prefix(tenant))
        .and_then(|s| s.strip_prefix(".r."))
        .and_then(|s| s.strip_suffix(group))
        .is_some_and(|id| id.ends_with('.') && id.len() > 1 && !id[..id.len() - 1].contains('.'))
}

/// Why listing or removing schedules failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScheduleErrorKind {
    /// The group name breaks the `[A-Za-z0-9_-]{1,64}` rule.
    InvalidGroup,
    /// The event id is empty, too long or has control characters.
    InvalidEventId,
    /// The server could not be read or did not purge.
    Unavailable,
}

impl fmt::Display for ScheduleErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidGroup => "invalid group",
            Self::InvalidEventId => "invalid event id",
            Self::Unavailable => "schedules unavailable",
        })
    }
}

/// A failed listing or removal of schedules.
pub type ScheduleError = Error<ScheduleErrorKind>;

fn unavailable(what: &str, e: impl fmt::Display) -> ScheduleError {
    Error::new(ScheduleErrorKind::Unavailable, format!("{what}: {e}"))
}

/// What a schedule waits to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledKind {
    /// An event published with a delay, for every group.
    Event,
    /// The last event of a debounced burst.
    Debounce {
        /// The burst's key.
        key: String,
    },
    /// A retry of a failed attempt, or an event waiting for its rate-limit slot, for one group.
    Retry {
        /// The group.
        group: String,
        /// Attempts made so far.
        attempts: u32,
    },
}

/// One event waiting in a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The schedule's subject.
    pub subject: String,
    /// Its sequence in `EVENTS`.
    pub stream_sequence: u64,
    /// The tenant.
    pub tenant: String,
    /// The event id (from the envelope).
    pub event_id: String,
    /// The event type (from the envelope).
    pub event_type: String,
    /// When it is due; `None` when the schedule is not an `@at` one.
    pub due: Option<DateTime<Utc>>,
    /// Where it will be stored.
    pub target: String,
    /// A delayed event or a retry.
    pub kind: ScheduledKind,
}

/// Schedules read per request.
const SCAN_BATCH: usize = 1000;

/// The events waiting in schedules, of `tenant` (`None`: of every tenant), in stream order, at
/// most `limit` of them.
pub async fn scheduled(
    conn: &Connection,
    tenant: Option<&TenantId>,
    limit: usize,
) -> Result<Vec<Scheduled>, ScheduleError> {
    let filter = match tenant {
        Some(t) => format!("{DELAYED_SUBJECT_PREFIX}.{t}.>"),
        None => format!("{DELAYED_SUBJECT_PREFIX}.>"),
    };
    let stream = conn
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read the EVENTS stream", e))?;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject: filter,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("cannot read the schedules", e))?;
    let mut out = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(SCAN_BATCH)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(|e| unavailable("cannot read the schedules", e))?;
        let mut pending = 0;
        let mut seen = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| unavailable("cannot read the schedules", e))?;
            let info = m
                .info()
                .map_err(|e| unavailable("cannot read the schedules", e))?;
            pending = info.pending;
            seen += 1;
            if let Some(s) = parse_scheduled(&m.message, info.stream_sequence) {
                out.push(s);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        if pending == 0 || seen == 0 {
            return Ok(out);
        }
    }
}

fn parse_scheduled(msg: &async_nats::Message, stream_sequence: u64) -> Option<Scheduled> {
    let headers = msg.headers.as_ref()?;
    let subject = msg.subject.as_str();
    let mut tokens = subject.split('.');
    let (Some(DELAYED_SUBJECT_PREFIX), Some(tenant), Some(kind)) =
        (tokens.next(), tokens.next(), tokens.next())
    else {
        return None;
    };
    let schedule = headers.get("Nats-Schedule")?.as_str();
    let due = schedule
        .strip_prefix("@at ")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let target = headers.get("Nats-Schedule-Target")?.as_str().to_owned();
    let env = RawEnvelope::parse(&msg.payload).ok();
    let kind = match kind {
        "r" => {
            let _id = tokens.next();
            ScheduledKind::Retry {
                group: tokens.next().unwrap_or_default().to_owned(),
                attempts: headers
                    .get(ATTEMPT_HEADER)
                    .and_then(|v| v.as_str().parse().ok())
                    .unwrap_or(0),
            }
        }
        "d" => ScheduledKind::Debounce {
            key: tokens.next().and_then(unescape_token).unwrap_or_default(),
        },
        _ => ScheduledKind::Event,
    };
    let id_token = subject.split('.').nth(3);
    Some(Scheduled {
        subject: subject.to_owned(),
        stream_sequence,
        tenant: tenant.to_owned(),
        event_id: env
            .as_ref()
            .map(|e| e.id.to_string())
            .or_else(|| id_token.and_then(unescape_token))
            .unwrap_or_default(),
        event_type: env.map(|e| e.event_type.to_string()).unwrap_or_default(),
        due,
        target,
        kind,
    })
}

/// Removes the schedules of `tenant`'s event `event_id` that have not fired: the delayed event
/// itself and its delayed retries, for `group` only or (`None`) for every group. Returns how
/// many were removed.
pub async fn unschedule(
    conn: &Connection,
    tenant: &TenantId,
    event_id: &str,
    group: Option<&str>,
) -> Result<u64, ScheduleError> {
    crate::envelope::validate_event_id(event_id).map_err(|e| {
        Error::with_source(ScheduleErrorKind::InvalidEventId, e.message().to_owned(), e)
    })?;
    if let Some(g) = group {
        validate_token(g, "group name").map_err(|e| {
            Error::with_source(ScheduleErrorKind::InvalidGroup, e.message().to_owned(), e)
        })?;
    }
    let stream = conn
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read the EVENTS stream", e))?;
    let retries = retry_subject(tenant, event_id, group.unwrap_or("*"));
    let mut filters = vec![retries];
    if group.is_none() {
        filters.push(delayed_subject(tenant, event_id));
    }
    let mut purged = 0;
    for filter in filters {
        let done = stream
            .purge()
            .filter(filter.as_str())
            .await
            .map_err(|e| unavailable(&format!("cannot remove the schedules {filter:?}"), e))?;
        purged += done.purged;
    }
    Ok(purged)
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
        assert!(scheduled_by_other_tenant("delayed.globex.e.x", "acme"));
        assert!(scheduled_by_other_tenant("other.acme.e.x", "acme"));
        assert!(scheduled_by_other_tenant("", "acme"));
    }

    #[test]
    fn copies_are_recognised_by_their_schedule() {
        assert!(is_copy_of("delayed.acme.r.id-1.billing", "acme", "billing"));
        assert!(!is_copy_of("delayed.acme.r.id-1.billing", "acme", "ledger"));
        assert!(!is_copy_of("delayed.acme.r.id-1.billing", "acm", "billing"));
        assert!(!is_copy_of("delayed.acme.e.id-1", "acme", "billing"));
        assert!(!is_copy_of("delayed.acme.r.a.b.billing", "acme", "billing"));
        assert!(!is_copy_of("delayed.acme.r..billing", "acme", "billing"));
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
