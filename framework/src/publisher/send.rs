//! Sending one message to a stream and awaiting its ack, with permission violations and
//! timeouts turned into clear errors.

use std::future::IntoFuture;
use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind as NatsPublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;

use super::{PublishError, PublishErrorKind};
use crate::connection::Connection;
use crate::error::Error;

/// Sends one message to a stream; the returned value awaits its ack. A publish the server
/// refuses for permissions is reported as [`PublishErrorKind::PermissionDenied`] as soon as
/// the server says so (async-nats alone reports a timeout).
pub(crate) async fn send_message(
    conn: &Connection,
    subject: String,
    message: Publish,
) -> Result<Sent, PublishError> {
    let violations = conn.violations().map(|v| v.subscribe());
    let ack = conn
        .jetstream()
        .send_publish(subject.clone(), message)
        .await
        .map_err(|e| map_error(conn, e, &subject))?;
    Ok(Sent {
        conn: conn.clone(),
        subject,
        ack,
        violations,
    })
}

pub(super) fn map_error(
    conn: &Connection,
    e: async_nats::jetstream::context::PublishError,
    subject: &str,
) -> PublishError {
    let kind = match e.kind() {
        NatsPublishErrorKind::StreamNotFound => {
            return Error::with_source(
                PublishErrorKind::NoStream,
                format!(
                    "no stream captures {subject:?}; set up the topology first (conveyor::topology::provision)"
                ),
                e,
            );
        }
        NatsPublishErrorKind::TimedOut => {
            if conn.violations().is_some_and(|v| v.seen_recently(subject)) {
                return denied(subject);
            }
            if let Some(inbox) = conn.violations().and_then(|v| v.subscribe_refused()) {
                return Error::with_source(
                    PublishErrorKind::Timeout,
                    format!(
                        "no ack from the stream for {subject:?}: the server refused this user a subscription to its reply inbox {inbox:?}, so no ack can arrive; the event may have been stored. Connect with an inbox prefix the user may subscribe to (ConnectOptions::custom_inbox_prefix, `--inbox-prefix _INBOX_<user>`), then retry with the same event id"
                    ),
                    e,
                );
            }
            return Error::with_source(
                PublishErrorKind::Timeout,
                format!(
                    "no ack from the stream for {subject:?} in time; the event may have been stored: retry with the same event id (stored once inside the duplicate window)"
                ),
                e,
            );
        }
        NatsPublishErrorKind::MaxPayloadExceeded => PublishErrorKind::PayloadTooLarge,
        _ => PublishErrorKind::Other,
    };
    Error::with_source(kind, format!("publish to {subject:?} failed"), e)
}

/// A message sent to a stream whose ack is still outstanding.
pub(crate) struct Sent {
    conn: Connection,
    subject: String,
    ack: async_nats::jetstream::context::PublishAckFuture,
    violations: Option<tokio::sync::broadcast::Receiver<Arc<str>>>,
}

impl Sent {
    /// The subject the message was sent to.
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    /// Awaits the stream's ack, or the server's permission violation for the subject.
    pub(crate) async fn acked(
        self,
    ) -> Result<async_nats::jetstream::publish::PublishAck, PublishError> {
        let Self {
            conn,
            subject,
            ack,
            violations,
        } = self;
        match violations {
            Some(mut rx) => tokio::select! {
                ack = ack.into_future() => ack,
                () = wait_for_violation(&mut rx, &subject) => return Err(denied(&subject)),
            },
            None => ack.await,
        }
        .map_err(|e| map_error(&conn, e, &subject))
    }
}

fn denied(subject: &str) -> PublishError {
    Error::new(
        PublishErrorKind::PermissionDenied,
        format!(
            "the server refused to let this user publish to {subject:?}; check the user's publish permissions"
        ),
    )
}

async fn wait_for_violation(rx: &mut tokio::sync::broadcast::Receiver<Arc<str>>, subject: &str) {
    loop {
        match rx.recv().await {
            Ok(s) if &*s == subject => return,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                futures::future::pending::<()>().await
            }
        }
    }
}
