//! Pausing a tenant: its events are kept and not run, every other tenant is unaffected, and
//! resuming runs the kept events in their order.
//!
//! [`pause`] (or `conveyor tenants pause acme [--group G]`) stores the pause in the key-value
//! bucket [`PAUSED_BUCKET`] under `<tenant>.<group>` (`<tenant>.=all` for every group), so it
//! survives restarts. Every worker watches the bucket. A delivery of a paused tenant's event is
//! not run: the worker stores a copy in the `PARKED` stream, on
//! `parked.<group>.<tenant>.<type>` (plus the lane token), and acks the event. Parked events
//! wait outside the group's consumers, so they hold no handler slot and no `max_ack_pending`
//! slot: other tenants, even those in the same partition, are served as usual.
//!
//! [`resume`] removes the pause, then re-publishes the tenant's parked events in the order they
//! were parked, each for the group that parked it only (header
//! [`REPLAY_FOR_HEADER`](crate::dlq::REPLAY_FOR_HEADER): other groups ack it without running),
//! and removes them from `PARKED`. The envelope (and so the event id) is unchanged; the run
//! starts again at attempt 1.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::envelope::{LANE_MARKER, event_lane, split_event_subject};
use crate::error::Error;
use crate::kvwatch::{Bucket, Watched};
use crate::tenant::TenantId;

/// Key-value bucket of paused tenants.
pub const PAUSED_BUCKET: &str = "conveyor_paused";
/// The stream holding the events of paused tenants (`parked.>`).
pub const PARKED_STREAM: &str = "PARKED";
/// The group token of a pause that applies to every group.
pub const ALL_GROUPS: &str = crate::control::ALL_GROUPS;

const BUCKET: Bucket = Bucket {
    name: PAUSED_BUCKET,
    description: "Conveyor paused tenants",
    max_age: Duration::ZERO,
};

/// A stored pause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// The paused tenant.
    pub tenant: String,
    /// The group it is paused for; `None`: every group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Since when.
    pub paused_at: DateTime<Utc>,
}

/// Why pausing or resuming failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PauseErrorKind {
    /// The group name breaks the `[A-Za-z0-9_-]{1,64}` rule.
    InvalidGroup,
    /// The group has no consumers (no worker has run it yet).
    UnknownGroup,
    /// The server could not store, read or re-publish.
    Unavailable,
}

impl fmt::Display for PauseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidGroup => "invalid group",
            Self::UnknownGroup => "unknown group",
            Self::Unavailable => "pause store unavailable",
        })
    }
}

/// A pause or resume that failed.
pub type PauseError = Error<PauseErrorKind>;

fn unavailable(what: &str, e: impl fmt::Display) -> PauseError {
    Error::new(PauseErrorKind::Unavailable, format!("{what}: {e}"))
}

/// The pause key of `tenant` for `group` (`None`: every group): `<tenant>.<group>`.
pub fn pause_key(tenant: &TenantId, group: Option<&str>) -> String {
    format!("{tenant}.{}", group.unwrap_or(ALL_GROUPS))
}

fn check_group(group: Option<&str>) -> Result<(), PauseError> {
    if let Some(g) = group {
        crate::subject::validate_group_name(g)
            .map_err(|e| Error::restate(PauseErrorKind::InvalidGroup, e))?;
    }
    Ok(())
}

/// Pauses `tenant` for `group` (`None`: every group). Workers see it within moments; events
/// already running finish.
///
/// ```no_run
/// # async fn run(conn: conveyor::Connection) -> Result<(), Box<dyn std::error::Error>> {
/// let acme = conveyor::TenantId::parse("acme")?;
/// conveyor::pause::pause(&conn, &acme, None, "migration").await?;
/// // ...
/// let resumed = conveyor::pause::resume(&conn, &acme, None).await?;
/// println!("{resumed} parked events run again");
/// # Ok(()) }
/// ```
pub async fn pause(
    conn: &Connection,
    tenant: &TenantId,
    group: Option<&str>,
    reason: &str,
) -> Result<Pause, PauseError> {
    check_group(group)?;
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the pause bucket", e))?;
    let pause = Pause {
        tenant: tenant.as_str().to_owned(),
        group: group.map(str::to_owned),
        reason: reason.to_owned(),
        paused_at: Utc::now(),
    };
    let body = serde_json::to_vec(&pause).map_err(|e| unavailable("cannot encode", e))?;
    store
        .put(pause_key(tenant, group), Bytes::from(body))
        .await
        .map_err(|e| unavailable("the server did not store the pause", e))?;
    Ok(pause)
}

/// Every stored pause.
pub async fn paused(conn: &Connection) -> Result<Vec<Pause>, PauseError> {
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the pause bucket", e))?;
    let mut keys = store
        .keys()
        .await
        .map_err(|e| unavailable("cannot list pauses", e))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| unavailable("cannot list pauses", e))?;
        if let Some(value) = store
            .get(&key)
            .await
            .map_err(|e| unavailable("cannot read a pause", e))?
            && let Ok(p) = serde_json::from_slice::<Pause>(&value)
        {
            out.push(p);
        }
    }
    Ok(out)
}

/// How many of `tenant`'s events wait in `PARKED` (for any group).
pub async fn parked_count(conn: &Connection, tenant: &TenantId) -> Result<u64, PauseError> {
    let stream = match conn.jetstream().get_stream(PARKED_STREAM).await {
        Ok(s) => s,
        // Nothing was ever parked.
        Err(_) => return Ok(0),
    };
    let mut subjects = stream
        .info_with_subjects(format!("parked.*.{tenant}.>"))
        .await
        .map_err(|e| unavailable("cannot read PARKED", e))?;
    let mut total = 0u64;
    while let Some(entry) = subjects.next().await {
        let (_, n) = entry.map_err(|e| unavailable("cannot read PARKED", e))?;
        total += n as u64;
    }
    Ok(total)
}

/// Removes the pause of `tenant` for `group` (`None`: the pause for every group), then
/// re-publishes the tenant's events parked by that group (`None`: by any group), oldest first,
/// and removes them from `PARKED`. Returns how many were re-published. A pause for every group
/// still holds the tenant's events after `resume(.., Some(group))`.
pub async fn resume(
    conn: &Connection,
    tenant: &TenantId,
    group: Option<&str>,
) -> Result<u64, PauseError> {
    check_group(group)?;
    let store = BUCKET
        .open(conn)
        .await
        .map_err(|e| unavailable("cannot open the pause bucket", e))?;
    store
        .purge(pause_key(tenant, group))
        .await
        .map_err(|e| unavailable("the server did not remove the pause", e))?;
    // Workers that parked an event just before they saw the resume: one more pass after the
    // watch has had time to reach them.
    let mut total = unpark(conn, tenant, group).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    total += unpark(conn, tenant, group).await?;
    Ok(total)
}

/// Pauses a whole group: every partition consumer of `group` (the server's consumer pause,
/// nats-server 2.11) until `until` (`None`: until [`resume_group`], in practice 100 years).
/// Its events stay in `EVENTS` and are delivered in order once the pause ends; workers stay
/// bound meanwhile. The pause is kept by the server and survives restarts.
pub async fn pause_group(
    conn: &Connection,
    group: &str,
    until: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, PauseError> {
    let until = until.unwrap_or_else(|| Utc::now() + chrono::Duration::days(36_500));
    set_group_pause(conn, group, Some(until)).await?;
    Ok(until)
}

/// Ends the pause of a whole group (see [`pause_group`]).
pub async fn resume_group(conn: &Connection, group: &str) -> Result<(), PauseError> {
    set_group_pause(conn, group, None).await
}

/// Pauses (`Some(until)`) or resumes every partition consumer of `group`.
async fn set_group_pause(
    conn: &Connection,
    group: &str,
    until: Option<DateTime<Utc>>,
) -> Result<(), PauseError> {
    check_group(Some(group))?;
    let stream = conn
        .jetstream()
        .get_stream(crate::topology::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read EVENTS", e))?;
    for name in crate::partition::consumer_names(group) {
        match until {
            Some(until) => stream.pause_consumer(&name, until).await,
            None => stream.resume_consumer(&name).await,
        }
        .map_err(|e| match e.kind() {
            async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
            {
                Error::new(
                    PauseErrorKind::UnknownGroup,
                    format!("group {group:?} has no consumer {name}: run a worker of the group once first"),
                )
            }
            _ => unavailable(&format!("cannot pause or resume consumer {name}"), e),
        })?;
    }
    Ok(())
}

/// Events read per request from `PARKED`.
const UNPARK_BATCH: usize = 500;

async fn unpark(
    conn: &Connection,
    tenant: &TenantId,
    group: Option<&str>,
) -> Result<u64, PauseError> {
    let stream = match conn.jetstream().get_stream(PARKED_STREAM).await {
        Ok(s) => s,
        // Nothing was ever parked.
        Err(_) => return Ok(0),
    };
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            filter_subject: format!("parked.{}.{tenant}.>", group.unwrap_or("*")),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("cannot read PARKED", e))?;
    let mut total = 0;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(UNPARK_BATCH)
            .messages()
            .await
            .map_err(|e| unavailable("cannot read PARKED", e))?;
        let mut read = 0;
        let mut pending = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| unavailable("cannot read PARKED", e))?;
            let info = m.info().map_err(|e| unavailable("cannot read PARKED", e))?;
            let (sequence, subject) = (info.stream_sequence, m.message.subject.to_string());
            pending = info.pending;
            read += 1;
            match events_subject(&subject) {
                Some((group, events)) => {
                    let mut message = Publish::build()
                        .payload(m.message.payload.clone())
                        .message_id(format!("{tenant}:resume:{sequence}"))
                        .header(crate::dlq::REPLAY_FOR_HEADER, group);
                    message = copy_headers(
                        message,
                        m.message.headers.as_ref(),
                        &["Nats-Msg-Id", crate::dlq::REPLAY_FOR_HEADER],
                    );
                    conn.jetstream()
                        .send_publish(events, message)
                        .await
                        .map_err(|e| unavailable("cannot re-publish a parked event", e))?
                        .await
                        .map_err(|e| unavailable("cannot re-publish a parked event", e))?;
                    total += 1;
                }
                None => {
                    tracing::warn!(%subject, "a PARKED message with an unusable subject is removed")
                }
            }
            stream
                .delete_message(sequence)
                .await
                .map_err(|e| unavailable("cannot remove a parked event", e))?;
        }
        if read == 0 || pending == 0 {
            return Ok(total);
        }
    }
}

/// The subject an event is parked on: `parked.<group>.<tenant>.<type>[.~<lane>]`, from the
/// event's stored subject.
pub(crate) fn parked_subject(group: &str, stored: &str) -> Option<String> {
    let (tenant, event_type) = split_event_subject(stored)?;
    Some(match event_lane(stored) {
        Some(lane) => format!("parked.{group}.{tenant}.{event_type}.{LANE_MARKER}{lane}"),
        None => format!("parked.{group}.{tenant}.{event_type}"),
    })
}

/// The group and the `events.` subject a parked event is re-published on, from its subject
/// alone (the worker that parked it could write only its own `parked.<group>.>` subjects).
fn events_subject(parked: &str) -> Option<(&str, String)> {
    let rest = parked.strip_prefix("parked.")?;
    let (group, rest) = rest.split_once('.')?;
    let (tenant, _) = rest.split_once('.')?;
    crate::subject::validate_group_name(group).ok()?;
    TenantId::parse(tenant).ok()?;
    let events = format!("events.{rest}");
    let (_, event_type) = split_event_subject(&events)?;
    crate::event::validate_event_type(event_type).ok()?;
    if let Some(lane) = event_lane(&events) {
        crate::envelope::validate_lane(lane).ok()?;
    }
    Some((group, events))
}

/// Parks a delivery of a paused tenant's event for `group`: stores its body and headers on
/// its parked subject, idempotently (`Nats-Msg-Id` `park:<group>:<stream sequence>`).
pub(crate) async fn park(
    conn: &Connection,
    group: &str,
    msg: &async_nats::Message,
    stream_sequence: u64,
) -> Result<(), PauseError> {
    let subject = parked_subject(group, &msg.subject).ok_or_else(|| {
        unavailable(
            "cannot park",
            format!("{:?} is not an event subject", msg.subject),
        )
    })?;
    let message = copy_headers(
        Publish::build()
            .payload(msg.payload.clone())
            .message_id(format!("park:{group}:{stream_sequence}")),
        msg.headers.as_ref(),
        &["Nats-Msg-Id"],
    );
    conn.jetstream()
        .send_publish(subject, message)
        .await
        .map_err(|e| unavailable("cannot park", e))?
        .await
        .map_err(|e| unavailable("cannot park", e))?;
    Ok(())
}

/// Adds every header of `from` but those named in `skip` to `message`.
fn copy_headers(
    mut message: Publish,
    from: Option<&async_nats::HeaderMap>,
    skip: &[&str],
) -> Publish {
    for (name, values) in from.into_iter().flat_map(|h| h.iter()) {
        let name: &str = name.as_ref();
        if skip.contains(&name) {
            continue;
        }
        for v in values {
            message = message.header(name, v.as_str());
        }
    }
    message
}

/// What a worker knows about paused tenants: (tenant, group token) pairs.
#[derive(Debug, Default)]
pub(crate) struct Pauses {
    stored: RwLock<HashSet<(String, String)>>,
    count: AtomicUsize,
    ready: crate::kvwatch::Ready,
}

impl Pauses {
    /// True when `tenant` is paused for `group`.
    pub(crate) fn is_paused(&self, group: &str, tenant: &str) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Ok(stored) = self.stored.read() else {
            return false;
        };
        stored
            .iter()
            .any(|(t, g)| t == tenant && (g == group || g == ALL_GROUPS))
    }

    /// Waits until the stored pauses are loaded, at most `timeout`.
    pub(crate) async fn wait_ready(&self, timeout: Duration) {
        self.ready.wait(timeout, "paused tenants").await;
    }

    /// Watches the bucket until `shutdown`, re-watching after errors.
    pub(crate) async fn watch(self: Arc<Self>, conn: Connection, shutdown: CancellationToken) {
        crate::kvwatch::watch(self, conn, BUCKET, shutdown).await;
    }
}

impl Watched for Pauses {
    fn apply(&self, key: &str, present: bool) {
        let Some((tenant, group)) = key.split_once('.') else {
            return;
        };
        if let Ok(mut stored) = self.stored.write() {
            let entry = (tenant.to_owned(), group.to_owned());
            if present {
                tracing::info!(tenant, group, "tenant paused");
                stored.insert(entry);
            } else {
                stored.remove(&entry);
            }
            self.count.store(stored.len(), Ordering::Release);
        }
    }

    fn set_ready(&self) {
        self.ready.set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_apply_per_group_or_to_all() {
        let acme = TenantId::parse("acme").unwrap();
        let p = Pauses::default();
        assert!(!p.is_paused("g", "acme"));
        p.apply(&pause_key(&acme, Some("g")), true);
        assert!(p.is_paused("g", "acme"));
        assert!(!p.is_paused("h", "acme"));
        assert!(!p.is_paused("g", "globex"));
        p.apply(&pause_key(&acme, None), true);
        assert!(p.is_paused("h", "acme"));
        p.apply(&pause_key(&acme, None), false);
        p.apply(&pause_key(&acme, Some("g")), false);
        assert!(!p.is_paused("g", "acme"));
    }

    #[test]
    fn parked_subjects_round_trip_and_refuse_forgeries() {
        let parked = parked_subject("billing", "events.acme.15.order.created.~high").unwrap();
        assert_eq!(parked, "parked.billing.acme.order.created.~high");
        assert_eq!(
            events_subject(&parked),
            Some(("billing", "events.acme.order.created.~high".to_owned()))
        );
        assert_eq!(events_subject("parked.billing.acme.$JS.API.x"), None);
        assert_eq!(events_subject("parked.bil*ling.acme.order.created"), None);
        assert_eq!(events_subject("parked.billing.acme"), None);
    }
}
