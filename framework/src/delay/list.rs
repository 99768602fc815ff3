//! Listing what waits in schedules, and removing an event's schedules before they fire.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{ATTEMPT_HEADER, DELAYED_SUBJECT_PREFIX, delayed_subject, retry_subject};
use crate::connection::Connection;
use crate::envelope::RawEnvelope;
use crate::error::Error;
use crate::history::unescape_token;
use crate::tenant::TenantId;
use crate::topology::EVENTS_STREAM;

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
    /// A retry of a failed attempt, for one group.
    Retry {
        /// The group.
        group: String,
        /// Attempts made so far.
        attempts: u32,
    },
    /// An event waiting for its slot under the group's rate limit.
    RateLimited {
        /// The group.
        group: String,
        /// Attempts made so far.
        attempts: u32,
    },
    /// An event waiting for room under the group's concurrency limit.
    WaitingForRoom {
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

/// A reader of the schedules of `tenant` (`None`: every tenant): an ephemeral consumer, deleted
/// by the caller when done (it also goes away by itself after 30 s).
async fn reader(
    conn: &Connection,
    tenant: Option<&TenantId>,
) -> Result<
    (
        async_nats::jetstream::stream::Stream<()>,
        async_nats::jetstream::consumer::PullConsumer,
    ),
    ScheduleError,
> {
    let filter = match tenant {
        Some(t) => format!("{DELAYED_SUBJECT_PREFIX}.{t}.>"),
        None => format!("{DELAYED_SUBJECT_PREFIX}.>"),
    };
    let stream = conn
        .jetstream()
        .get_stream_no_info(EVENTS_STREAM)
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
    Ok((stream, consumer))
}

async fn done_reading(
    stream: &async_nats::jetstream::stream::Stream<()>,
    consumer: &mut async_nats::jetstream::consumer::PullConsumer,
) {
    let name = consumer.cached_info().name.clone();
    if let Err(e) = stream.delete_consumer(&name).await {
        tracing::debug!(error = %e, "schedule reader not deleted; it expires by itself");
    }
}

/// How many events wait in schedules (delayed events, debounced bursts, group copies), of
/// `tenant` (`None`: of every tenant).
pub async fn scheduled_count(
    conn: &Connection,
    tenant: Option<&TenantId>,
) -> Result<u64, ScheduleError> {
    let (stream, mut consumer) = reader(conn, tenant).await?;
    let n = consumer.cached_info().num_pending;
    done_reading(&stream, &mut consumer).await;
    Ok(n)
}

/// The events waiting in schedules, of `tenant` (`None`: of every tenant), in stream order, at
/// most `limit` of them.
pub async fn scheduled(
    conn: &Connection,
    tenant: Option<&TenantId>,
    limit: usize,
) -> Result<Vec<Scheduled>, ScheduleError> {
    let (stream, mut consumer) = reader(conn, tenant).await?;
    let read = read_all(&consumer, limit).await;
    done_reading(&stream, &mut consumer).await;
    read
}

async fn read_all(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    limit: usize,
) -> Result<Vec<Scheduled>, ScheduleError> {
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
            let group = tokens.next().unwrap_or_default().to_owned();
            let attempts = headers
                .get(ATTEMPT_HEADER)
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0);
            // The copy's `Nats-Msg-Id` says why it waits: `<tenant>:retry:…`, `:wait:…` (a
            // rate-limit slot), `:room:…` or `:wake:…` (room under a concurrency limit).
            let why = headers
                .get("Nats-Msg-Id")
                .and_then(|v| v.as_str().split(':').nth(1).map(str::to_owned));
            match why.as_deref() {
                Some("wait") => ScheduledKind::RateLimited { group, attempts },
                Some("room" | "wake") => ScheduledKind::WaitingForRoom { group, attempts },
                _ => ScheduledKind::Retry { group, attempts },
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
    crate::envelope::validate_event_id(event_id)
        .map_err(|e| Error::restate(ScheduleErrorKind::InvalidEventId, e))?;
    if let Some(g) = group {
        crate::subject::validate_group_name(g)
            .map_err(|e| Error::restate(ScheduleErrorKind::InvalidGroup, e))?;
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
