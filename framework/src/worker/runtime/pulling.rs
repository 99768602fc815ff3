//! Pulling: the group's partition loops, pull requests sized to free handler slots, fair dispatch.

use super::slots::{Backlog, Held, Slot, Slots};
use super::*;

/// An outstanding pull request and the handler slots reserved for the messages it asked for.
/// Dropping it releases the slots no message arrived for.
struct Pull {
    batch: pull::Batch,
    /// Slots reserved for the messages asked for. A pull with the partition's probe asks for
    /// one message more: the last one takes the next slot that frees up instead of holding one
    /// while the partition is idle.
    slots: Vec<Slot>,
    probe: bool,
    received: usize,
}

/// Polls every outstanding pull; returns the index of the one that yielded and what it yielded
/// (`None`: that pull has ended). Never ready without a pull.
async fn next_from(
    pulls: &mut [Pull],
) -> (usize, Option<Result<jetstream::Message, async_nats::Error>>) {
    futures::future::poll_fn(|cx| {
        for (i, p) in pulls.iter_mut().enumerate() {
            if let std::task::Poll::Ready(item) = p.batch.poll_next_unpin(cx) {
                return std::task::Poll::Ready((i, item));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Runs the group's partition loops until `shutdown`: one task per partition consumer, all
/// sharing the group's handler slots.
///
/// Fair share: every partition always has one pull outstanding. A pull asks for the slots the
/// partition may reserve (nothing while its backlog is unknown or empty, at most its share
/// while other partitions have backlogs too) plus one message that has no slot yet. That last
/// message, when it arrives, waits for the next slot that frees up, in the order such messages
/// arrived, heartbeating its delivery meanwhile; the partition pulls again once it has a slot.
/// So an idle partition holds no slot, a busy one cannot take the slots another partition is
/// waiting for, and a tenant with one event waiting gets a slot within about one handler run,
/// whatever another partition's backlog. Nothing is prefetched beyond the free slots but that
/// one message per partition.
///
/// A pull is a bounded request: it ends when its messages have arrived or it expires. On
/// shutdown each loop reads its outstanding pull to its end and hands every message back, so
/// none is left in transit to a process that is going away.
///
/// A loop that panics (a bug, never bad input: deliveries contain their own panics) is not
/// restarted: the group reports itself unbound, so `/readyz` fails and the process gets
/// restarted by its supervisor, and the error is logged.
pub(crate) async fn run_group<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Slots::new(rt.config.concurrency));
    let known = rt.prefetch().await.map(Arc::new);
    let loops: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (rt, slots, known) = (rt.clone(), slots.clone(), known.clone());
            let (shutdown, abort, tracker) = (shutdown.clone(), abort.clone(), tracker.clone());
            tokio::spawn(async move {
                let pulling = pull_loop(rt.clone(), p, &slots, known, (shutdown, abort, tracker));
                supervise(&rt, p, pulling).await;
            })
        })
        .collect();
    for l in loops {
        if let Err(e) = l.await {
            tracing::error!(group = %rt.name, error = %e, "partition loop failed");
        }
    }
}

/// Runs partition `p`'s loop; a loop that panics marks the partition unbound, so the group's
/// readiness check (and `/readyz`) fails, and the panic is logged.
async fn supervise<S>(rt: &GroupRuntime<S>, p: u32, pulling: impl Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(pulling).catch_unwind().await {
        rt.set_bound(Some(p), false);
        tracing::error!(group = %rt.name, partition = p, panic = %panic_message(&panic), "a partition's pull loop died; the group is not ready");
    }
}

async fn pull_loop<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    p: u32,
    slots: &Slots,
    mut known: Option<Arc<super::Known>>,
    (shutdown, abort, tracker): (CancellationToken, CancellationToken, TaskTracker),
) {
    let mut backoff = Duration::from_millis(250);
    let mut pulls: Vec<Pull> = Vec::with_capacity(2);
    let mut backlog = Backlog {
        slots,
        pending: 0,
        weight: 1,
    };
    // The partition's slots, counted while tenant weights are in use (see `Slot`).
    let held = Arc::new(Held::default());
    let consumer_name = consumer_name(&rt.name, p);
    // The server reports a refused ack only as a permission violation: watched here, so a user
    // without `$JS.ACK` rights stops the group (and fails readiness) instead of running every
    // event until its deliveries run out.
    let ack_prefix = format!("$JS.ACK.{EVENTS_STREAM}.{consumer_name}.");
    let mut violations = rt.conn.violations().map(|v| v.subscribe());
    let mut runner = super::first_poll::Runner::default();
    'bind: while !shutdown.is_cancelled() {
        // What was read at start-up serves the first bind only.
        let consumer = match rt.ensure_consumer(p, known.take().as_deref()).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(consumer = %consumer_name, error = %e, retry_in = ?backoff, "cannot bind consumer");
                rt.set_bound(Some(p), false);
                sleep_or_cancel(backoff, &shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::debug!(consumer = %consumer_name, "consumer bound");
        rt.set_bound(Some(p), true);
        let mut floor_read = tokio::time::Instant::now();
        // Made once per binding, not per message: each would register a waiter anew.
        let stopping = shutdown.cancelled();
        tokio::pin!(stopping);
        let refused = refused_ack(&mut violations, &ack_prefix);
        tokio::pin!(refused);
        loop {
            if shutdown.is_cancelled() {
                break 'bind;
            }
            // A partition without a pull sends one with its probe. While it has a backlog, a pull
            // with slots only follows as soon as half its share of the slots is free, so its
            // next messages are on their way while it handles the current ones.
            let counted = rt.weights.any().then_some(&held);
            let next = match pulls.as_slice() {
                [] => Some((
                    slots.reserve(backlog.pending, backlog.weight, counted),
                    true,
                )),
                [_] if backlog.pending > 0 && slots.refill_ready(backlog.weight) => Some((
                    slots.reserve(backlog.pending, backlog.weight, counted),
                    false,
                ))
                .filter(|(r, _)| !r.is_empty()),
                _ => None,
            };
            if let Some((reserved, probe)) = next {
                let asked = reserved.len() + usize::from(probe);
                match consumer
                    .batch()
                    .max_messages(asked)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await
                {
                    Ok(batch) => pulls.push(Pull {
                        batch,
                        slots: reserved,
                        probe,
                        received: 0,
                    }),
                    Err(e) => {
                        tracing::warn!(consumer = %consumer_name, error = %e, retry_in = ?backoff, "pull failed; rebinding");
                        rt.set_bound(Some(p), false);
                        drop(reserved);
                        finish_pulls(&rt, &mut pulls).await;
                        sleep_or_cancel(backoff, &shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue 'bind;
                    }
                }
            }
            tokio::select! {
                biased;
                () = &mut stopping => break 'bind,
                refused = &mut refused => {
                    tracing::error!(consumer = %consumer_name, subject = %refused, retry_in = ?ACKS_REFUSED_PAUSE, "the server refuses this user's acks; the group stops pulling: allow it to publish to {ack_prefix}>");
                    rt.set_bound(Some(p), false);
                    finish_pulls(&rt, &mut pulls).await;
                    sleep_or_cancel(ACKS_REFUSED_PAUSE, &shutdown).await;
                    continue 'bind;
                }
                (i, item) = next_from(&mut pulls) => match item {
                    Some(Ok(msg)) => {
                        pulls[i].received += 1;
                        // The metadata is read once here, for the backlog and the delivery.
                        let meta = msg.message.reply.as_deref().and_then(super::ack_subject::ack_info).map(|info| {
                            let weight = partition_weight(&rt, &msg, backlog.weight);
                            backlog.set(info.pending, weight);
                            super::Meta {
                                stream_sequence: info.stream_sequence,
                                delivered: info.delivered.max(1),
                            }
                        });
                        let counted = rt.weights.any().then_some(&held);
                        let weighted = counted.map(|h| (h, backlog.weight));
                        if let Some(slot) = dispatch(&rt, (slots, weighted), (&mut pulls, i), &msg, &shutdown).await {
                            // Run the delivery here until it first waits: a handler that
                            // finishes at once costs no task. One that waits continues as a
                            // task of its own.
                            runner.run(tracker.track_future(guarded(
                                rt.clone(),
                                deliver(rt.clone(), (msg, meta), slot, abort.clone()),
                            )));
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(consumer = %consumer_name, error = %e, "pull ended with an error; rebinding");
                        rt.set_bound(Some(p), false);
                        pulls.swap_remove(i);
                        finish_pulls(&rt, &mut pulls).await;
                        sleep_or_cancel(backoff, &shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue 'bind;
                    }
                    None => {
                        if pulls[i].received == 0 {
                            backlog.set(0, backlog.weight);
                        }
                        // Keep the pull with the probe first.
                        pulls.remove(i);
                        backoff = Duration::from_millis(250);
                        if floor_read.elapsed() >= ACK_FLOOR_EVERY {
                            floor_read = tokio::time::Instant::now();
                            tokio::spawn(read_ack_floor(rt.clone(), p, consumer.clone()));
                        }
                    }
                },
            }
        }
    }
    finish_pulls(&rt, &mut pulls).await;
    rt.set_bound(Some(p), false);
}

/// The weight of the partition `msg` came from: its tenant's (see [`crate::weights`]); `current`
/// while no tenant has a weight of its own (no lookup at all then).
fn partition_weight<S>(rt: &GroupRuntime<S>, msg: &jetstream::Message, current: usize) -> usize {
    if !rt.weights.any() {
        return current;
    }
    split_event_subject(&msg.message.subject).map_or(current, |(tenant, _)| {
        usize::try_from(rt.weights.weight(tenant)).unwrap_or(1)
    })
}

/// Reads the consumer's ack floor into the group's runtime.
async fn read_ack_floor<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    p: u32,
    mut consumer: PullConsumer,
) {
    match consumer.info().await {
        Ok(info) => rt.note_ack_floor(p, info.ack_floor.stream_sequence),
        Err(e) => {
            tracing::debug!(group = %rt.name, error = %e, "cannot read the consumer's ack floor")
        }
    }
}

/// How long a group whose acks the server refuses waits before it pulls again (permissions can
/// change with a server config reload).
const ACKS_REFUSED_PAUSE: Duration = Duration::from_secs(30);

/// Waits for a permission violation on one of the group's ack subjects (`prefix...`); never
/// returns for a connection that does not report violations.
async fn refused_ack(
    violations: &mut Option<tokio::sync::broadcast::Receiver<Arc<str>>>,
    prefix: &str,
) -> Arc<str> {
    let Some(rx) = violations else {
        return futures::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(subject) if subject.starts_with(prefix) => return subject,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return futures::future::pending().await;
            }
        }
    }
}

/// The slot to run `msg` in: one of the pull's slots, or, for the pull's last message, the next
/// slot that frees up; `None` (and `msg` handed back) when the worker is shutting down.
///
/// A probe that finds no free slot while the loop's other pull still holds reserved ones takes
/// one of those, and the other pull carries the probe from then on: a waiting probe blocks the
/// loop, so the loop never waits while it holds slots only it can use.
async fn dispatch<S: Clone + Send + Sync + 'static>(
    rt: &Arc<GroupRuntime<S>>,
    (slots, weighted): (&Slots, Option<(&Arc<Held>, usize)>),
    (pulls, i): (&mut [Pull], usize),
    msg: &jetstream::Message,
    shutdown: &CancellationToken,
) -> Option<Slot> {
    let held = weighted.map(|(h, _)| h);
    // With tenant weights, a partition holding its share already does not take a free slot
    // for its probe: the probe waits for one of the partition's own slots to free up first.
    let over_share = weighted.is_some_and(|(h, w)| h.count() >= slots.share(w));
    let permit = match pulls[i].slots.pop() {
        Some(permit) => Some(permit),
        None if shutdown.is_cancelled() || !pulls[i].probe => None,
        None if over_share => steal_or_wait(rt, (slots, weighted), (pulls, i), msg, shutdown).await,
        None => match slots.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(Slot::new(permit, held)),
            Err(_) => steal_or_wait(rt, (slots, weighted), (pulls, i), msg, shutdown).await,
        },
    };
    match permit {
        Some(permit) if !shutdown.is_cancelled() => Some(permit),
        _ => {
            hand_back(rt, msg).await;
            None
        }
    }
}

/// A slot for pull `i`'s probe when it may not take a free one: one the loop's other pull
/// reserved (that pull carries the probe from then on; only this loop can use those slots, and
/// the loop is about to wait), else the next slot that frees up.
async fn steal_or_wait<S: Clone + Send + Sync + 'static>(
    rt: &Arc<GroupRuntime<S>>,
    (slots, weighted): (&Slots, Option<(&Arc<Held>, usize)>),
    (pulls, i): (&mut [Pull], usize),
    msg: &jetstream::Message,
    shutdown: &CancellationToken,
) -> Option<Slot> {
    if let Some(other) = pulls.iter_mut().find(|p| !p.slots.is_empty()) {
        other.probe = true;
        let permit = other.slots.pop();
        pulls[i].probe = false;
        return permit;
    }
    wait_for_slot(rt, (slots, weighted), msg, shutdown)
        .await
        .map(|p| Slot::new(p, weighted.map(|(h, _)| h)))
}

/// Hands `msg` back to the server undelivered (a Nak counted as a hand-back, not an attempt).
async fn hand_back<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    msg: &jetstream::Message,
) {
    if let Some(reply) = msg.message.reply.clone() {
        if let Ok(info) = msg.info() {
            let before = if info.delivered > 1 {
                rt.handbacks.count(&rt.name, info.stream_sequence).await
            } else {
                0
            };
            rt.handbacks
                .record(&rt.name, info.stream_sequence, before)
                .await;
        }
        send_ack(&rt.conn, reply, jetstream::AckKind::Nak(None)).await;
    }
    tracing::debug!(group = %rt.name, "pulled event handed back");
}

/// Waits for a free handler slot for `msg`, heartbeating its delivery so its ack wait does not
/// run out meanwhile; `None` when the worker shuts down first. With tenant weights
/// (`weighted`: the partition's held slots and weight), it first waits until the partition
/// holds less than its share.
async fn wait_for_slot<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    (slots, weighted): (&Slots, Option<(&Arc<Held>, usize)>),
    msg: &jetstream::Message,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    let reply = msg.message.reply.as_ref()?;
    let beat = settle::Heartbeat {
        conn: &rt.conn,
        reply,
        every: rt.heartbeat_every(),
    };
    beat.during(async {
        if let Some((held, weight)) = weighted {
            loop {
                let freed = held.freed.notified();
                if held.count() < slots.share(weight) {
                    break;
                }
                tokio::select! {
                    () = freed => {}
                    () = shutdown.cancelled() => return None,
                }
            }
        }
        tokio::select! {
            permit = slots.permits.clone().acquire_owned() => permit.ok(),
            () = shutdown.cancelled() => None,
        }
    })
    .await
}

/// Runs one delivery, containing a panic of the runtime's own code to that delivery: it is
/// logged, and the event, never settled, is redelivered after its ack wait. (Handler panics are
/// caught closer to the handler and become failed attempts.)
///
/// A combinator, not an `async fn`: an `async fn` would hold the delivery's future twice (as
/// its argument and as the future it awaits), doubling what every delivery allocates and copies.
fn guarded<S: Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    delivery: impl std::future::Future<Output = ()>,
) -> impl std::future::Future<Output = ()> {
    AssertUnwindSafe(delivery).catch_unwind().map(move |ran| {
        if let Err(panic) = ran {
            tracing::error!(group = %rt.name, panic = %panic_message(&panic), "delivery panicked; the event will be redelivered");
        }
    })
}

/// Reads the outstanding pulls to their end and hands back what still arrives: the loop is
/// stopping (shutdown, or acks refused), so nothing more is run.
async fn finish_pulls<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    pulls: &mut Vec<Pull>,
) {
    for mut current in pulls.drain(..) {
        while let Some(Ok(msg)) = current.batch.next().await {
            hand_back(rt, &msg).await;
        }
    }
}

async fn sleep_or_cancel(d: Duration, token: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = token.cancelled() => {}
    }
}

#[cfg(test)]
mod tests;
