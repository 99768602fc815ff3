//! Delayed copies of a delivery for its own group: long retries and events waiting for a
//! rate-limit slot or for room under a concurrency limit.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{ATTEMPT_HEADER, DELAYED_SUBJECT_PREFIX, retry_subject, schedule_headers};
use crate::connection::Connection;
use crate::envelope::RawEnvelope;
use crate::error::Error;
use crate::tenant::TenantId;
use crate::topology::EVENTS_STREAM;

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
    let tenant = TenantId::parse(tenant).map_err(|e| Error::restate(K::InvalidTenant, e))?;
    let id = RawEnvelope::parse(&msg.payload)
        .map_err(|e| Error::restate(K::Encode, e))?
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
        .message_id(format!(
            "{}:wake:{subject}:{}",
            subject.split('.').nth(1).unwrap_or_default(),
            current.sequence
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_recognised_by_their_schedule() {
        assert!(is_copy_of("delayed.acme.r.id-1.billing", "acme", "billing"));
        assert!(!is_copy_of("delayed.acme.r.id-1.billing", "acme", "ledger"));
        assert!(!is_copy_of("delayed.acme.r.id-1.billing", "acm", "billing"));
        assert!(!is_copy_of("delayed.acme.e.id-1", "acme", "billing"));
        assert!(!is_copy_of("delayed.acme.r.a.b.billing", "acme", "billing"));
        assert!(!is_copy_of("delayed.acme.r..billing", "acme", "billing"));
    }
}
