//! The max-deliveries backstop: dead-letters events whose last delivery ended without a result
//! (the worker process died or was stopped during the last attempt).
//!
//! The server publishes a max-deliveries advisory when a consumer gives up on a message; the
//! `DLQ_ADVISORIES` stream keeps those advisories even while no worker runs. Every worker
//! process reads them through one shared durable consumer, fetches the original event from
//! `EVENTS`, and stores it as a dead letter with the id `dlq:<group>:<seq>`, so a dead letter the
//! runtime already wrote is not stored twice.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::dlq::{DeadLetter, DeadLetterKind};
use crate::topology::{ADVISORY_STREAM, EVENTS_STREAM};

/// Name of the backstop's durable consumer on `DLQ_ADVISORIES`.
pub const BACKSTOP_CONSUMER: &str = "conveyor_backstop";

#[derive(Debug, Deserialize)]
struct MaxDeliveriesAdvisory {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

pub(crate) async fn run(conn: Connection, shutdown: CancellationToken) {
    let mut warned = false;
    while !shutdown.is_cancelled() {
        let messages = async {
            let stream = conn.jetstream().get_stream(ADVISORY_STREAM).await?;
            // Bind when it exists, so users without the right to create consumers can run it.
            let consumer = match stream.get_consumer::<pull::Config>(BACKSTOP_CONSUMER).await {
                Ok(c) => c,
                Err(_) => {
                    stream
                        .create_consumer(pull::Config {
                            durable_name: Some(BACKSTOP_CONSUMER.into()),
                            name: Some(BACKSTOP_CONSUMER.into()),
                            ack_policy: AckPolicy::Explicit,
                            ack_wait: Duration::from_secs(30),
                            ..Default::default()
                        })
                        .await?
                }
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                consumer
                    .stream()
                    .max_messages_per_batch(16)
                    .expires(Duration::from_secs(30))
                    .heartbeat(Duration::from_secs(10))
                    .messages()
                    .await?,
            )
        }
        .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "max-deliveries backstop unavailable (is the topology provisioned?); retrying");
                    warned = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return,
                item = messages.next() => item,
            };
            match item {
                Some(Ok(msg)) => {
                    let done = handle(&conn, &msg.message.payload).await;
                    let body: Bytes = if done {
                        Bytes::from_static(b"+ACK")
                    } else {
                        Bytes::from(format!("-NAK {{\"delay\":{}}}", 5_000_000_000u64))
                    };
                    if let Some(reply) = msg.message.reply.clone()
                        && let Err(e) = conn.client().publish(reply, body).await
                    {
                        tracing::error!(error = %e, "backstop could not ack an advisory");
                    }
                }
                Some(Err(e)) => {
                    use pull::MessagesErrorKind as K;
                    if matches!(
                        e.kind(),
                        K::ConsumerDeleted | K::RequestLimitExceeded | K::PushBasedConsumer
                    ) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => break,
            }
        }
    }
}

/// Dead-letters the event one advisory points at. Returns false when it should be retried.
async fn handle(conn: &Connection, payload: &Bytes) -> bool {
    let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(payload) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "unreadable max-deliveries advisory dropped");
            return true;
        }
    };
    if advisory.stream != EVENTS_STREAM {
        return true;
    }
    let original = match conn.jetstream().get_stream(EVENTS_STREAM).await {
        Ok(stream) => stream.direct_get(advisory.stream_seq).await,
        Err(e) => {
            tracing::warn!(error = %e, "backstop cannot read EVENTS; will retry");
            return false;
        }
    };
    let original = match original {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::stream::DirectGetErrorKind::NotFound
            ) =>
        {
            tracing::error!(
                group = %advisory.consumer,
                stream_sequence = advisory.stream_seq,
                "event used up its deliveries but is no longer in EVENTS; nothing to dead-letter"
            );
            return true;
        }
        Err(e) => {
            tracing::warn!(error = %e, "backstop cannot fetch the event; will retry");
            return false;
        }
    };
    let letter = DeadLetter {
        original_subject: crate::partition::published_subject(&original.subject).into_owned(),
        stream_sequence: advisory.stream_seq,
        group: crate::partition::group_of_consumer(&advisory.consumer)
            .0
            .to_owned(),
        attempts: u32::try_from(advisory.deliveries).unwrap_or(u32::MAX),
        kind: DeadLetterKind::MaxDeliveries,
        error: format!(
            "delivery {} ended without a result (worker died, was stopped, or outlived ack_wait) and no attempts are left",
            advisory.deliveries
        ),
        failed_at: Utc::now(),
        body: original.payload.clone(),
        body_truncated_from: None,
    };
    match letter.publish(conn).await {
        Ok(()) => {
            tracing::error!(group = %letter.group, stream_sequence = letter.stream_sequence, "dead-lettered by the max-deliveries backstop");
            if let Some(key) = original.headers.get(crate::runs::RUN_KEY_HEADER) {
                crate::runs::finish_run(conn, key.as_str(), &original.subject, &original.payload)
                    .await;
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "backstop could not dead-letter; will retry");
            false
        }
    }
}
