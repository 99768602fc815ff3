//! Dead letters: events that will not be handled, kept with their error for inspection and
//! replay.
//!
//! A dead letter is published to `dlq.<group>.<tenant>.<event-type>` in the `DLQ` stream. Its
//! body is the original message body, unchanged; its headers say where it came from and why it
//! failed (see [`headers`]). Its `Nats-Msg-Id` is `dlq:<group>:<stream-sequence>`, so a retried
//! dead-letter publish (or the max-deliveries backstop) stores it once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::connection::Connection;
use crate::envelope::split_event_subject;
use crate::error::Error;
use crate::event::validate_event_type;
use crate::tenant::TenantId;

mod purge;
mod replay;
mod select;

pub use purge::purge;
pub use replay::{REPLAY_FOR_HEADER, StoredLetter, letters, replay};
pub use select::{Filter, fingerprint, get, list, replay_matching};

/// Header names of a dead letter: a public contract, like the subjects.
pub mod headers {
    /// The subject the event was stored under, e.g. `events.acme.order.created`.
    pub const ORIGINAL_SUBJECT: &str = "Conveyor-Original-Subject";
    /// The event's sequence in the `EVENTS` stream.
    pub const STREAM_SEQUENCE: &str = "Conveyor-Stream-Sequence";
    /// The handler group that gave up on it.
    pub const GROUP: &str = "Conveyor-Group";
    /// How many deliveries it had.
    pub const ATTEMPTS: &str = "Conveyor-Attempts";
    /// Why it failed, one of the [`DeadLetterKind`](super::DeadLetterKind) names.
    pub const ERROR_KIND: &str = "Conveyor-Error-Kind";
    /// The error text (one line, at most 1024 bytes).
    pub const ERROR: &str = "Conveyor-Error";
    /// When it was dead-lettered (RFC 3339, UTC).
    pub const FAILED_AT: &str = "Conveyor-Failed-At";
    /// Present only when the body did not fit in the server's `max_payload` beside the dead
    /// letter's headers: the length in bytes of the original body, of which the dead letter keeps
    /// the beginning. Such a letter cannot be replayed.
    pub const BODY_TRUNCATED: &str = "Conveyor-Body-Truncated";
}

const MAX_ERROR_LEN: usize = 1024;

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterKind {
    /// The handler failed on its last attempt, or said not to retry.
    Handler,
    /// The body is not an envelope, or its data does not fit the event type.
    Decode,
    /// No handler of the group handles the envelope's type.
    UnknownType,
    /// The envelope's `tenantid` is invalid or differs from the subject's tenant.
    TenantMismatch,
    /// The envelope's `type` differs from the subject's event type.
    TypeMismatch,
    /// The handler's last attempt ran out of time.
    Timeout,
    /// The handler panicked on its last attempt.
    Panic,
    /// The event used up its deliveries without a result (a worker died or was stopped during
    /// its last attempt).
    MaxDeliveries,
}

impl DeadLetterKind {
    /// The kind's name, as written in the [`headers::ERROR_KIND`] header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::Decode => "decode",
            Self::UnknownType => "unknown-type",
            Self::TenantMismatch => "tenant-mismatch",
            Self::TypeMismatch => "type-mismatch",
            Self::Timeout => "timeout",
            Self::Panic => "panic",
            Self::MaxDeliveries => "max-deliveries",
        }
    }

    const ALL: [Self; 8] = [
        Self::Handler,
        Self::Decode,
        Self::UnknownType,
        Self::TenantMismatch,
        Self::TypeMismatch,
        Self::Timeout,
        Self::Panic,
        Self::MaxDeliveries,
    ];
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterKind {
    type Err = DeadLetterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    DeadLetterErrorKind::InvalidHeaders,
                    format!("unknown dead-letter kind {s:?}"),
                )
            })
    }
}

/// Why a dead letter could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterErrorKind {
    /// The `DLQ` stream did not store it.
    Publish,
    /// A message from the `DLQ` stream lacks or has malformed Conveyor headers.
    InvalidHeaders,
    /// The server refused this user the dead-letter subject (`dlq.<group>.>`): retrying does
    /// not help until the permissions change.
    PermissionDenied,
    /// The `DLQ` stream could not be read.
    Read,
    /// The letter cannot be replayed: its subjects disagree or name no valid event subject, or
    /// its body was truncated.
    NotReplayable,
    /// A dead letter could not be deleted from the `DLQ` stream.
    Delete,
    /// No dead letter has this sequence.
    NotFound,
}

impl fmt::Display for DeadLetterErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Publish => "dead-letter publish failed",
            Self::InvalidHeaders => "invalid dead letter",
            Self::PermissionDenied => "dead-letter publish not permitted",
            Self::Read => "dead letters unreadable",
            Self::NotReplayable => "not replayable",
            Self::Delete => "dead letter not deleted",
            Self::NotFound => "no such dead letter",
        })
    }
}

/// A failed dead-letter write or read.
pub type DeadLetterError = Error<DeadLetterErrorKind>;

/// A dead letter: the original event body and why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The subject the event was stored under.
    pub original_subject: String,
    /// The event's sequence in `EVENTS`.
    pub stream_sequence: u64,
    /// The group that gave up on it.
    pub group: String,
    /// Deliveries it had.
    pub attempts: u32,
    /// Why it failed.
    pub kind: DeadLetterKind,
    /// The error text.
    pub error: String,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
    /// The original body, unchanged; or, when [`body_truncated_from`](Self::body_truncated_from)
    /// is set, its beginning.
    pub body: Bytes,
    /// `Some(n)` when the stored body is the beginning of an `n`-byte body that did not fit in
    /// the server's `max_payload` beside the dead letter's headers (header
    /// [`headers::BODY_TRUNCATED`]). `None` when the body is complete.
    pub body_truncated_from: Option<u64>,
}

impl DeadLetter {
    /// The `DLQ` subject of this dead letter: `dlq.<group>.<tenant>.<event-type>`. A tenant or
    /// type token that is not valid is written as `_invalid`, so a malformed subject cannot
    /// change the dead letter's subject shape.
    pub fn subject(&self) -> String {
        let (tenant, event_type) = split_event_subject(&self.original_subject)
            .map(|(t, ty)| {
                (
                    if TenantId::parse(t).is_ok() {
                        t
                    } else {
                        "_invalid"
                    },
                    if validate_event_type(ty).is_ok() {
                        ty
                    } else {
                        "_invalid"
                    },
                )
            })
            .unwrap_or(("_invalid", "_invalid"));
        format!("dlq.{}.{tenant}.{event_type}", self.group)
    }

    /// The `Nats-Msg-Id` of this dead letter: `dlq:<group>:<stream-sequence>`.
    pub fn message_id(&self) -> String {
        format!("dlq:{}:{}", self.group, self.stream_sequence)
    }

    /// The dead letter's headers.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::ORIGINAL_SUBJECT, self.original_subject.as_str());
        h.insert(
            headers::STREAM_SEQUENCE,
            self.stream_sequence.to_string().as_str(),
        );
        h.insert(headers::GROUP, self.group.as_str());
        h.insert(headers::ATTEMPTS, self.attempts.to_string().as_str());
        h.insert(headers::ERROR_KIND, self.kind.as_str());
        h.insert(headers::ERROR, one_line(&self.error).as_str());
        h.insert(
            headers::FAILED_AT,
            self.failed_at
                .to_rfc3339_opts(SecondsFormat::Millis, true)
                .as_str(),
        );
        h.insert("Content-Type", crate::envelope::CONTENT_TYPE);
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            self.message_id().as_str(),
        );
        if let Some(n) = self.body_truncated_from {
            h.insert(headers::BODY_TRUNCATED, n.to_string().as_str());
        }
        h
    }

    /// The bytes this letter takes in a message: its header block and body.
    fn stored_len(&self) -> usize {
        // `NATS/1.0\r\n`, `Name: value\r\n` per header, then `\r\n`.
        let headers: usize = self
            .headers()
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| AsRef::<str>::as_ref(name).len() + v.as_str().len() + 4)
            })
            .sum();
        headers + 12 + self.body.len()
    }

    /// This letter as it can be stored on a server whose messages carry at most `max_payload`
    /// bytes (headers included): unchanged when it fits, else with the body cut so it does, and
    /// [`body_truncated_from`](Self::body_truncated_from) set to the original length.
    pub fn fit_to(&self, max_payload: usize) -> std::borrow::Cow<'_, Self> {
        if self.stored_len() <= max_payload {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut cut = self.clone();
        cut.body_truncated_from = Some(self.body.len() as u64);
        // Some room for what the estimate of the header block might miss.
        let room = max_payload.saturating_sub(cut.stored_len() - cut.body.len() + 64);
        cut.body = self.body.slice(..room.min(self.body.len()));
        std::borrow::Cow::Owned(cut)
    }

    /// Reads a dead letter from a message of the `DLQ` stream.
    pub fn from_parts(headers: &HeaderMap, body: Bytes) -> Result<Self, DeadLetterError> {
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .ok_or_else(|| {
                    Error::new(
                        DeadLetterErrorKind::InvalidHeaders,
                        format!("missing header {name}"),
                    )
                })
        };
        let parse_num = |name: &str| -> Result<u64, DeadLetterError> {
            get(name)?.parse().map_err(|_| {
                Error::new(
                    DeadLetterErrorKind::InvalidHeaders,
                    format!("header {name} is not a number"),
                )
            })
        };
        let failed_at = DateTime::parse_from_rfc3339(&get(headers::FAILED_AT)?)
            .map_err(|e| {
                Error::with_source(
                    DeadLetterErrorKind::InvalidHeaders,
                    format!("header {} is not RFC 3339", headers::FAILED_AT),
                    e,
                )
            })?
            .with_timezone(&Utc);
        Ok(Self {
            original_subject: get(headers::ORIGINAL_SUBJECT)?,
            stream_sequence: parse_num(headers::STREAM_SEQUENCE)?,
            group: get(headers::GROUP)?,
            attempts: u32::try_from(parse_num(headers::ATTEMPTS)?).unwrap_or(u32::MAX),
            kind: get(headers::ERROR_KIND)?.parse()?,
            error: get(headers::ERROR)?,
            failed_at,
            body,
            body_truncated_from: headers
                .get(headers::BODY_TRUNCATED)
                .and_then(|v| v.as_str().parse().ok()),
        })
    }

    /// Stores this dead letter in the `DLQ` stream and awaits the ack, trying a few times. A
    /// body that does not fit in the server's `max_payload` beside the headers is truncated
    /// (see [`fit_to`](Self::fit_to)). A subject the server refuses this user fails at once with
    /// [`DeadLetterErrorKind::PermissionDenied`].
    pub async fn publish(&self, conn: &Connection) -> Result<(), DeadLetterError> {
        let max_payload = conn.client().server_info().max_payload;
        let letter = self.fit_to(max_payload);
        let subject = letter.subject();
        let mut last_error = None;
        for delay_ms in [0u64, 100, 400, 1000] {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            let message = Publish::build()
                .payload(letter.body.clone())
                .headers(letter.headers());
            let result = async {
                crate::publisher::send_message(conn, subject.clone(), message)
                    .await?
                    .acked()
                    .await
            }
            .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == crate::PublishErrorKind::PermissionDenied => {
                    return Err(Error::with_source(
                        DeadLetterErrorKind::PermissionDenied,
                        format!(
                            "this user may not publish dead letters to {subject:?}; allow it `dlq.{}.>`",
                            letter.group
                        ),
                        e,
                    ));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => Error::with_source(
                DeadLetterErrorKind::Publish,
                format!("could not store dead letter on {subject:?}"),
                e,
            ),
            None => Error::new(DeadLetterErrorKind::Publish, "no attempt was made"),
        })
    }
}

fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(subject: &str) -> DeadLetter {
        DeadLetter {
            original_subject: subject.into(),
            stream_sequence: 42,
            group: "billing".into(),
            attempts: 3,
            kind: DeadLetterKind::Handler,
            error: "line one\nline two".into(),
            failed_at: Utc::now(),
            body: Bytes::from_static(b"{}"),
            body_truncated_from: None,
        }
    }

    #[test]
    fn subject_and_id_follow_the_contract() {
        let d = letter("events.acme.order.created");
        assert_eq!(d.subject(), "dlq.billing.acme.order.created");
        assert_eq!(d.message_id(), "dlq:billing:42");
        assert_eq!(
            letter("events.*.order.created").subject(),
            "dlq.billing._invalid.order.created"
        );
        assert_eq!(letter("junk").subject(), "dlq.billing._invalid._invalid");
    }

    #[test]
    fn headers_round_trip() {
        let d = letter("events.acme.order.created");
        let back = DeadLetter::from_parts(&d.headers(), d.body.clone()).unwrap();
        assert_eq!(back.error, "line one line two");
        assert_eq!(back.kind, DeadLetterKind::Handler);
        assert_eq!(back.stream_sequence, 42);
        assert_eq!(back.attempts, 3);
    }

    #[test]
    fn a_body_too_large_for_the_server_is_cut_to_fit() {
        let mut d = letter("events.acme.order.created");
        assert!(matches!(d.fit_to(1 << 20), std::borrow::Cow::Borrowed(_)));
        d.body = Bytes::from(vec![b'x'; 10_000]);
        let cut = d.fit_to(4096);
        assert_eq!(cut.body_truncated_from, Some(10_000));
        let stored = cut.stored_len();
        assert!(stored <= 4096, "{stored}");
        assert!(cut.body.len() > 3000, "keeps what fits: {}", cut.body.len());
        let back = DeadLetter::from_parts(&cut.headers(), cut.body.clone()).unwrap();
        assert_eq!(back.body_truncated_from, Some(10_000));
    }

    #[test]
    fn kinds_parse_back() {
        for k in DeadLetterKind::ALL {
            assert_eq!(k.as_str().parse::<DeadLetterKind>().unwrap(), k);
        }
    }
}
