//! Reading the `DLQ` stream letter by letter, and replaying a letter to the group that failed.
//!
//! A dead letter's headers were written by a worker, and a worker's permissions cover only its
//! own `dlq.<group>.>` subjects: anything in them may be forged. Replay therefore trusts the
//! letter's own DLQ subject, `dlq.<group>.<tenant>.<type>`, and publishes only to
//! `events.<tenant>.<type>` (on the lane the original subject names, if any) when the
//! `Conveyor-Original-Subject` header agrees with it: never to another tenant, never to a
//! `$JS.API` or other non-event subject.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage as Publish;
use futures::{Stream, StreamExt};

use super::{DeadLetter, DeadLetterError, DeadLetterErrorKind};
use crate::connection::Connection;
use crate::envelope::{CONTENT_TYPE, event_lane, split_event_subject, validate_lane};
use crate::error::Error;
use crate::event::validate_event_type;
use crate::tenant::TenantId;
use crate::topology::DLQ_STREAM;

/// Header of a replayed event naming the only group that handles it; every other group acks it
/// without running its handler.
pub const REPLAY_FOR_HEADER: &str = "Conveyor-Replay-For";

/// Letters read per request while scanning the `DLQ` stream.
const SCAN_BATCH: usize = 1000;

/// A dead letter as stored in the `DLQ` stream.
#[derive(Debug, Clone)]
pub struct StoredLetter {
    /// Its sequence in `DLQ`.
    pub sequence: u64,
    /// The subject it is stored under, `dlq.<group>.<tenant>.<type>`.
    pub subject: String,
    /// The letter.
    pub letter: DeadLetter,
}

/// Every dead letter in the `DLQ` stream, oldest first, read in batches: memory does not grow
/// with the number of letters, and the scan ends only when the stream has no more (a read that
/// fails is an error item, never a silent end). With `bodies` false the letters' bodies are
/// dropped as they are read, for listings.
pub fn letters(
    conn: &Connection,
    bodies: bool,
) -> impl Stream<Item = Result<StoredLetter, DeadLetterError>> + '_ {
    let read_err = |e: &dyn std::fmt::Display| {
        Error::new(
            DeadLetterErrorKind::Read,
            format!("cannot read the DLQ stream: {e}"),
        )
    };
    futures::stream::once(async move {
        let stream = conn
            .jetstream()
            .get_stream(DLQ_STREAM)
            .await
            .map_err(|e| read_err(&e))?;
        stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                headers_only: !bodies,
                ..Default::default()
            })
            .await
            .map_err(|e| read_err(&e))
    })
    .map(move |consumer| {
        let consumer = match consumer {
            Ok(c) => c,
            Err(e) => return futures::stream::iter(vec![Err(e)]).left_stream(),
        };
        futures::stream::unfold(Some(consumer), move |state| async move {
            let consumer = state?;
            let batch = async {
                let mut batch = consumer
                    .fetch()
                    .max_messages(SCAN_BATCH)
                    .messages()
                    .await
                    .map_err(|e| read_err(&e))?;
                let mut out = Vec::new();
                let mut pending = 0;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(|e| read_err(&e))?;
                    let info = m.info().map_err(|e| read_err(&e))?;
                    pending = info.pending;
                    let headers = m.message.headers.clone().unwrap_or_default();
                    let body = if bodies {
                        m.message.payload.clone()
                    } else {
                        bytes::Bytes::new()
                    };
                    // A message without Conveyor headers is not a dead letter: skipped.
                    if let Ok(letter) = DeadLetter::from_parts(&headers, body) {
                        out.push(Ok(StoredLetter {
                            sequence: info.stream_sequence,
                            subject: m.message.subject.to_string(),
                            letter,
                        }));
                    }
                }
                Ok::<_, DeadLetterError>((out, pending))
            }
            .await;
            match batch {
                Ok((out, 0)) => Some((futures::stream::iter(out), None)),
                Ok((out, _)) => Some((futures::stream::iter(out), Some(consumer))),
                Err(e) => Some((futures::stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
        .right_stream()
    })
    .flatten()
}

impl StoredLetter {
    /// The subject a replay publishes to: `events.<tenant>.<type>` (plus the lane of the
    /// original subject), taken from this letter's DLQ subject and required to agree with its
    /// `Conveyor-Original-Subject` header. Any disagreement, an invalid token, or a truncated body
    /// is an [`DeadLetterErrorKind::NotReplayable`] error.
    pub fn replay_subject(&self) -> Result<String, DeadLetterError> {
        let refuse = |why: String| {
            Err(Error::new(
                DeadLetterErrorKind::NotReplayable,
                format!("dead letter #{} cannot be replayed: {why}", self.sequence),
            ))
        };
        if let Some(n) = self.letter.body_truncated_from {
            return refuse(format!(
                "its body was cut to fit the server's max_payload (it was {n} bytes)"
            ));
        }
        let Some(rest) = self.subject.strip_prefix("dlq.") else {
            return refuse(format!("{:?} is not a DLQ subject", self.subject));
        };
        let mut tokens = rest.splitn(3, '.');
        let (Some(group), Some(tenant), Some(event_type)) =
            (tokens.next(), tokens.next(), tokens.next())
        else {
            return refuse(format!(
                "{:?} is not dlq.<group>.<tenant>.<type>",
                self.subject
            ));
        };
        if group != self.letter.group {
            return refuse(format!(
                "its subject names group {group:?}, its header {:?}",
                self.letter.group
            ));
        }
        let tenant = match TenantId::parse(tenant) {
            Ok(t) => t,
            Err(e) => return refuse(e.message().to_owned()),
        };
        if let Err(e) = validate_event_type(event_type) {
            return refuse(e.message().to_owned());
        }
        let original = self.letter.original_subject.as_str();
        if split_event_subject(original) != Some((tenant.as_str(), event_type)) {
            return refuse(format!(
                "its original subject {original:?} does not match its DLQ subject {:?}",
                self.subject
            ));
        }
        let lane = event_lane(original);
        if let Some(lane) = lane
            && let Err(e) = validate_lane(lane)
        {
            return refuse(e.message().to_owned());
        }
        Ok(crate::envelope::event_subject_in_lane(
            &tenant, event_type, lane,
        ))
    }

    /// The `Nats-Msg-Id` of this letter's replay: `<tenant>:replay:<dlq-sequence>`, so a replay
    /// retried after a lost ack is stored once.
    pub fn replay_message_id(&self, subject: &str) -> String {
        let tenant = split_event_subject(subject).map_or("_", |(t, _)| t);
        format!("{tenant}:replay:{}", self.sequence)
    }
}

/// Re-publishes a dead letter's body for the group that failed on it (header
/// [`REPLAY_FOR_HEADER`]: other groups of the type ack it without running), awaits the stream's
/// ack, then removes the letter from `DLQ`. Returns the event's new sequence in `EVENTS`.
pub async fn replay(conn: &Connection, stored: &StoredLetter) -> Result<u64, DeadLetterError> {
    let subject = stored.replay_subject()?;
    let message = Publish::build()
        .payload(stored.letter.body.clone())
        .message_id(stored.replay_message_id(&subject))
        .header("Content-Type", CONTENT_TYPE)
        .header(REPLAY_FOR_HEADER, stored.letter.group.as_str());
    let publish_failed = |e: crate::PublishError| {
        Error::with_source(
            DeadLetterErrorKind::Publish,
            format!(
                "replay of dead letter #{} to {subject:?} failed; it stays in the DLQ",
                stored.sequence
            ),
            e,
        )
    };
    let ack = crate::publisher::send_message(conn, subject.clone(), message)
        .await
        .map_err(publish_failed)?
        .acked()
        .await
        .map_err(publish_failed)?;
    let stream = conn
        .jetstream()
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| removal_failed(stored.sequence, ack.sequence, e))?;
    stream
        .delete_message(stored.sequence)
        .await
        .map_err(|e| removal_failed(stored.sequence, ack.sequence, e))?;
    super::purge::count_deleted(conn, 1).await;
    Ok(ack.sequence)
}

fn removal_failed(
    sequence: u64,
    events_sequence: u64,
    e: impl std::error::Error + Send + Sync + 'static,
) -> DeadLetterError {
    Error::with_source(
        DeadLetterErrorKind::Publish,
        format!(
            "dead letter #{sequence} was replayed (EVENTS #{events_sequence}) but could not be removed from the DLQ; a second replay is stored once"
        ),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::Utc;

    fn stored(dlq_subject: &str, original: &str) -> StoredLetter {
        StoredLetter {
            sequence: 7,
            subject: dlq_subject.into(),
            letter: DeadLetter {
                original_subject: original.into(),
                stream_sequence: 3,
                group: "billing".into(),
                attempts: 1,
                kind: super::super::DeadLetterKind::Handler,
                error: "x".into(),
                failed_at: Utc::now(),
                body: Bytes::from_static(b"{}"),
                body_truncated_from: None,
            },
        }
    }

    #[test]
    fn replays_only_to_the_event_subject_its_dlq_subject_names() {
        let ok = stored(
            "dlq.billing.acme.order.created",
            "events.acme.order.created",
        );
        assert_eq!(ok.replay_subject().unwrap(), "events.acme.order.created");
        assert_eq!(
            ok.replay_message_id("events.acme.order.created"),
            "acme:replay:7"
        );
        let lane = stored(
            "dlq.billing.acme.order.created",
            "events.acme.order.created.~high",
        );
        assert_eq!(
            lane.replay_subject().unwrap(),
            "events.acme.order.created.~high"
        );
        for (dlq, original) in [
            // A forged header pointing elsewhere.
            (
                "dlq.billing.acme.order.created",
                "$JS.API.STREAM.DELETE.EVENTS",
            ),
            (
                "dlq.billing.acme.order.created",
                "events.globex.order.created",
            ),
            (
                "dlq.billing.acme.order.created",
                "events.acme.order.deleted",
            ),
            // A group that is not the header's.
            (
                "dlq.shipping.acme.order.created",
                "events.acme.order.created",
            ),
            // Tokens that are not valid.
            (
                "dlq.billing._invalid.order.created",
                "events.*.order.created",
            ),
            ("dlq.billing.acme", "events.acme.order.created"),
            ("events.acme.order.created", "events.acme.order.created"),
        ] {
            let e = stored(dlq, original).replay_subject().unwrap_err();
            assert_eq!(
                e.kind(),
                DeadLetterErrorKind::NotReplayable,
                "{dlq} {original}"
            );
        }
        let mut cut = stored(
            "dlq.billing.acme.order.created",
            "events.acme.order.created",
        );
        cut.letter.body_truncated_from = Some(2_000_000);
        assert_eq!(
            cut.replay_subject().unwrap_err().kind(),
            DeadLetterErrorKind::NotReplayable
        );
    }
}
