//! Settling one delivery: history, ack, Nak, dead letter, with heartbeats meanwhile.

use async_nats::jetstream::AckKind;

use super::*;

pub(super) async fn settle<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    incoming: &Incoming<'_>,
    outcome: Outcome,
    abort: &CancellationToken,
    tracking: Tracking<'_>,
) {
    let (msg, stream_sequence) = (incoming.msg, incoming.stream_sequence);
    let beat = Heartbeat {
        conn: &rt.conn,
        reply: &incoming.reply,
        every: rt.heartbeat_every(),
    };
    let metrics = tracking.metrics.or(rt.unrouted.as_ref());
    let tenant = tracking.tenant.as_ref().map(TenantId::as_str);
    // The futures of what most deliveries never do (history, anything but a plain ack,
    // hand-back bookkeeping) are boxed: inline, they would make every delivery's future several
    // kilobytes larger, allocated and moved for each event.
    if let Some(record) = &tracking.record
        && let Some(full) = record.finish(&outcome, tracking.started)
    {
        Box::pin(record.history().publish_full(full)).await;
    }
    let counted = outcome.counted();
    tracing::Span::current().record("outcome", outcome.span_label());
    let dead_kind = match &outcome {
        Outcome::DeadLetter { kind, .. } => Some(*kind),
        _ => None,
    };
    let settled = match outcome {
        Outcome::Ack => {
            tracing::debug!("handled");
            rt.acks.ack(incoming.reply.clone());
            Settled::Finished
        }
        other => {
            Box::pin(settle_delivery(
                rt,
                incoming,
                (&beat, abort),
                tracking.handed_back,
                other,
            ))
            .await
        }
    };
    let finished = settled == Settled::Finished;
    if settled != Settled::Pending && tracking.handed_back > 0 {
        Box::pin(rt.handbacks.forget(&rt.name, stream_sequence)).await;
    }
    if let Some(m) = metrics {
        m.settled(counted, tenant);
    }
    if let (Some(kind), Some(gm), true) = (dead_kind, &rt.metrics, finished) {
        gm.dead_letter(kind.as_str());
    }
    if finished && let Some(key) = header(msg, RUN_KEY) {
        Box::pin(crate::runs::finish_run(
            &rt.conn,
            key.as_str(),
            &msg.message.subject,
            &msg.message.payload,
        ))
        .await;
    }
}

/// What settling left of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The event is done: acked, or stored as a dead letter.
    Finished,
    /// The delivery is acked and the event waits as a delayed copy (a long retry).
    Rescheduled,
    /// The delivery is Nak'ed or handed back: the server delivers it again.
    Pending,
}

impl From<bool> for Settled {
    fn from(finished: bool) -> Self {
        if finished {
            Self::Finished
        } else {
            Self::Pending
        }
    }
}

/// Acks, Naks or dead-letters the delivery.
async fn settle_delivery<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    incoming: &Incoming<'_>,
    (beat, abort): (&Heartbeat<'_>, &CancellationToken),
    handed_back: u32,
    outcome: Outcome,
) -> Settled {
    let (msg, stream_sequence, attempt) =
        (incoming.msg, incoming.stream_sequence, incoming.attempt);
    let reply = beat.reply.clone();
    let finished = match outcome {
        Outcome::Ack => {
            tracing::debug!("handled");
            send_ack(&rt.conn, reply, AckKind::Ack).await;
            true
        }
        Outcome::Elsewhere { delay } => {
            rt.handbacks
                .record(&rt.name, stream_sequence, handed_back)
                .await;
            send_ack(&rt.conn, reply, AckKind::Nak(Some(delay))).await;
            false
        }
        Outcome::NotForThisGroup => {
            tracing::debug!("replay for another group; skipped");
            send_ack(&rt.conn, reply, AckKind::Ack).await;
            true
        }
        Outcome::Park => {
            // Like a dead letter: only the park publish is retried, with heartbeats.
            let parked = beat
                .during(keep_trying(
                    abort,
                    "could not park the paused tenant's event",
                    || crate::pause::park(&rt.conn, &rt.name, &msg.message, stream_sequence),
                ))
                .await;
            if parked {
                tracing::info!("tenant paused: event parked");
                send_ack(&rt.conn, reply, AckKind::Ack).await;
            } else {
                hand_back(rt, reply, stream_sequence, handed_back).await;
            }
            parked
        }
        Outcome::Cancelled { running } => {
            if running {
                tracing::info!("cancelled while running");
            } else {
                tracing::info!("cancelled before it started; skipped");
            }
            send_ack(&rt.conn, reply, AckKind::Ack).await;
            true
        }
        Outcome::Retry { delay, error } => {
            tracing::warn!(%error, retry_in = ?delay, "attempt failed; will retry");
            if delay >= rt.config.delayed_retry_after {
                // A long wait as a delayed Nak would hold a `max_ack_pending` slot throughout
                // (nats-server#6093): the retry waits as a delayed copy instead.
                let copy = crate::delay::Copy {
                    attempts_made: attempt,
                    at: crate::delay::When::After(delay)
                        .resolve(Utc::now())
                        .ok()
                        .flatten()
                        .unwrap_or_else(Utc::now),
                    dedup: format!(
                        "retry:{}:{}:{attempt}",
                        rt.name,
                        crate::history::escape_token(&tracking_event_id(msg))
                    ),
                    rate_slot: None,
                };
                match Box::pin(reschedule(rt, msg, beat, copy)).await {
                    Ok(_) => return Settled::Rescheduled,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not schedule the retry; it waits as a delayed Nak");
                    }
                }
            }
            send_ack(&rt.conn, reply, AckKind::Nak(Some(delay))).await;
            false
        }
        Outcome::RateLimited { slot } => {
            tracing::debug!(%slot, "over the group's rate limit; waits for its slot");
            let copy = crate::delay::Copy {
                attempts_made: attempt.saturating_sub(1),
                at: slot,
                dedup: format!("wait:{}:{stream_sequence}", rt.name),
                rate_slot: Some(slot),
            };
            match Box::pin(reschedule(rt, msg, beat, copy)).await {
                Ok(_) => return Settled::Rescheduled,
                Err(e) => {
                    // Handed back until its slot instead: it waits holding a slot, is not lost.
                    tracing::warn!(error = %e, "could not schedule the rate-limited event; handed back until its slot");
                    rt.handbacks
                        .record(&rt.name, stream_sequence, handed_back)
                        .await;
                    let wait = (slot - Utc::now()).to_std().unwrap_or_default();
                    send_ack(&rt.conn, reply, AckKind::Nak(Some(wait))).await;
                    false
                }
            }
        }
        Outcome::WaitForRoom { key } => {
            tracing::debug!(%key, "the key runs its limit of events at once; waits for room");
            let copy = crate::delay::Copy {
                attempts_made: attempt.saturating_sub(1),
                at: crate::delay::When::After(crate::concurrency::ROOM_RECHECK)
                    .resolve(Utc::now())
                    .ok()
                    .flatten()
                    .unwrap_or_else(Utc::now),
                dedup: format!("room:{}:{stream_sequence}", rt.name),
                rate_slot: None,
            };
            match Box::pin(reschedule(rt, msg, beat, copy)).await {
                Ok(subject) => {
                    if let Some(limiter) = &rt.concurrency {
                        match Box::pin(limiter.wait(&key, &subject)).await {
                            // A run ended meanwhile: nobody is left to wake the copy.
                            Ok(true) => {
                                Box::pin(super::limits::wake_waiting(rt, &key, Some(subject)))
                                    .await;
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "could not queue the waiting event; it asks again in 30 s");
                            }
                        }
                    }
                    return Settled::Rescheduled;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not schedule the waiting event; handed back");
                    rt.handbacks
                        .record(&rt.name, stream_sequence, handed_back)
                        .await;
                    send_ack(&rt.conn, reply, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    false
                }
            }
        }
        Outcome::HandBack => {
            tracing::info!("shutdown: event handed back");
            hand_back(rt, reply, stream_sequence, handed_back).await;
            false
        }
        Outcome::DeadLetter { kind, error } => {
            let letter = DeadLetter {
                original_subject: crate::partition::published_subject(&msg.message.subject)
                    .into_owned(),
                stream_sequence,
                group: rt.name.clone(),
                attempts: attempt,
                kind,
                error,
                failed_at: Utc::now(),
                body: msg.message.payload.clone(),
                body_truncated_from: None,
            };
            // Only the dead-letter publish is retried, never the handler: the delivery keeps
            // its heartbeats meanwhile, so it is not redelivered to another process. Only a
            // shutdown past its grace hands it back unsettled.
            let stored = beat
                .during(keep_trying(
                    abort,
                    "could not dead-letter; retrying the dead-letter publish",
                    || Box::pin(letter.publish(&rt.conn)),
                ))
                .await;
            if stored {
                tracing::error!(kind = %kind, error = %letter.error, dlq_subject = %letter.subject(), "dead-lettered");
                send_term(&rt.conn, reply, &format!("dlq:{kind}")).await;
            } else {
                tracing::error!("shutdown: not dead-lettered yet; the event is handed back");
                hand_back(rt, reply, stream_sequence, handed_back).await;
            }
            stored
        }
    };
    finished.into()
}

/// Schedules `copy` of the delivery for the group (with heartbeats while it is stored), then
/// acks the delivery.
async fn reschedule<S>(
    rt: &GroupRuntime<S>,
    msg: &jetstream::Message,
    beat: &Heartbeat<'_>,
    copy: crate::delay::Copy,
) -> Result<String, crate::PublishError> {
    let subject = beat
        .during(crate::delay::schedule_copy(
            &rt.conn,
            &rt.name,
            &msg.message,
            copy,
        ))
        .await?;
    send_ack(&rt.conn, beat.reply.clone(), AckKind::Ack).await;
    Ok(subject)
}

/// The event id of a delivery (empty when its envelope does not parse).
fn tracking_event_id(msg: &jetstream::Message) -> String {
    RawEnvelope::parse(&msg.message.payload)
        .map(|e| e.id.into_owned())
        .unwrap_or_default()
}

/// Hands the delivery back without a result: counted as a hand-back, then `-NAK`.
async fn hand_back<S>(
    rt: &GroupRuntime<S>,
    reply: async_nats::Subject,
    stream_sequence: u64,
    handed_back: u32,
) {
    rt.handbacks
        .record(&rt.name, stream_sequence, handed_back)
        .await;
    send_ack(&rt.conn, reply, AckKind::Nak(None)).await;
}

/// Runs `attempt` until it succeeds, every [`DEAD_LETTER_RETRY`], logging each failure with
/// `what`; false when `abort` (a shutdown past its grace) comes first.
async fn keep_trying<F, Fut, E>(abort: &CancellationToken, what: &str, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(e) => tracing::error!(error = %e, retry_in = ?DEAD_LETTER_RETRY, "{what}"),
        }
        tokio::select! {
            () = tokio::time::sleep(DEAD_LETTER_RETRY) => {}
            () = abort.cancelled() => return false,
        }
    }
}

/// Sends in-progress heartbeats for a delivery while the runtime itself works on it (history
/// writes, dead-letter publishes), so its ack wait does not run out mid-settle. Never used once
/// the final ack is sent: a heartbeat after a delayed Nak would restart the ack wait and undo the
/// delay.
pub(super) struct Heartbeat<'a> {
    pub(super) conn: &'a Connection,
    pub(super) reply: &'a async_nats::Subject,
    pub(super) every: Duration,
}

impl Heartbeat<'_> {
    /// Runs `work`, heartbeating while it waits. Work that completes at once costs no timer.
    pub(super) async fn during<F: std::future::Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        if let std::task::Poll::Ready(out) = futures::poll!(work.as_mut()) {
            return out;
        }
        let start = tokio::time::Instant::now() + self.every;
        let mut ticks = tokio::time::interval_at(start, self.every);
        loop {
            tokio::select! {
                biased;
                out = work.as_mut() => return out,
                _ = ticks.tick() => {
                    send_ack(self.conn, self.reply.clone(), AckKind::Progress).await;
                }
            }
        }
    }
}

/// Sends an ack of `kind` (ack, Nak, in progress) without waiting.
pub(super) async fn send_ack(conn: &Connection, reply: async_nats::Subject, kind: AckKind) {
    if let Err(e) = conn.client().publish(reply, kind.into()).await {
        tracing::error!(error = %e, "could not send ack");
    }
}

/// Terminates a delivery with a reason (`+TERM <reason>`, shown in the server's advisory);
/// `AckKind::Term` carries none.
pub(super) async fn send_term(conn: &Connection, reply: async_nats::Subject, reason: &str) {
    let body = Bytes::from(format!("+TERM {reason}"));
    if let Err(e) = conn.client().publish(reply, body).await {
        tracing::error!(error = %e, "could not send ack");
    }
}
