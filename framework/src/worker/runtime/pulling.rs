//! Pulling: the group's consumer loop, pull requests sized to free handler slots, dispatch.

use super::*;

/// An outstanding pull request and the handler slots reserved for the messages it asked for.
/// Dropping it releases the slots no message arrived for.
struct Pull {
    batch: pull::Batch,
    slots: Vec<OwnedSemaphorePermit>,
}

/// How many pulls may be outstanding at once: one being consumed, one on its way.
const MAX_PULLS: usize = 2;

/// Polls every outstanding pull; returns the index of the one that yielded and what it yielded
/// (`None`: that pull has ended).
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

/// Pulls and dispatches the group's events until `shutdown`, rebinding the consumer whenever a
/// pull fails.
///
/// Each pull asks for exactly as many messages as it has free handler slots for, so nothing is
/// prefetched beyond what can start at once (a prefetched message's ack timer already runs).
/// A second pull goes out once half the slots are free, so the next messages are on their way
/// while the current ones are handled. A pull is a bounded request: it ends when its messages
/// have arrived or it expires. On shutdown the loop reads the outstanding pulls to their end and
/// hands every message back, so none is left in transit to a process that is going away.
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
    let pulling = pull_loop(rt.clone(), shutdown, abort, tracker);
    if let Err(panic) = AssertUnwindSafe(pulling).catch_unwind().await {
        rt.set_bound(false);
        tracing::error!(group = %rt.name, panic = %panic_message(&panic), "the group's pull loop died; the group is not ready");
    }
}

async fn pull_loop<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    let concurrency = rt.config.concurrency;
    let permits = Arc::new(Semaphore::new(concurrency));
    let refill = u32::try_from((concurrency / 2).max(1)).unwrap_or(u32::MAX);
    let mut backoff = Duration::from_millis(250);
    let mut pulls: Vec<Pull> = Vec::with_capacity(MAX_PULLS);
    // The server reports a refused ack only as a permission violation: watched here, so a user
    // without `$JS.ACK` rights stops the group (and fails readiness) instead of running every
    // event until its deliveries run out.
    let ack_prefix = format!("$JS.ACK.{EVENTS_STREAM}.{}.", rt.name);
    let mut violations = rt.conn.violations().map(|v| v.subscribe());
    'bind: while !shutdown.is_cancelled() {
        let consumer = match rt.ensure_consumer().await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::error!(group = %rt.name, error = %e, retry_in = ?backoff, "cannot bind consumer");
                rt.set_bound(false);
                sleep_or_cancel(backoff, &shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        tracing::info!(group = %rt.name, "consumer bound");
        rt.set_bound(true);
        let mut floor_read = tokio::time::Instant::now();
        loop {
            // The first pull needs one free slot; a second one waits until half are free.
            let wanted = if pulls.is_empty() { 1 } else { refill };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'bind,
                refused = refused_ack(&mut violations, &ack_prefix) => {
                    tracing::error!(group = %rt.name, subject = %refused, retry_in = ?ACKS_REFUSED_PAUSE, "the server refuses this user's acks; the group stops pulling: allow it to publish to {ack_prefix}>");
                    rt.set_bound(false);
                    finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                    sleep_or_cancel(ACKS_REFUSED_PAUSE, &shutdown).await;
                    continue 'bind;
                }
                first = permits.clone().acquire_many_owned(wanted), if pulls.len() < MAX_PULLS => {
                    let Ok(first) = first else { break 'bind };
                    let mut slots = Vec::with_capacity(concurrency);
                    slots.push(first);
                    while let Ok(p) = permits.clone().try_acquire_owned() {
                        slots.push(p);
                    }
                    let slots: Vec<OwnedSemaphorePermit> =
                        slots.into_iter().flat_map(split_permit).collect();
                    match consumer
                        .batch()
                        .max_messages(slots.len())
                        .expires(PULL_EXPIRES)
                        .messages()
                        .await
                    {
                        Ok(batch) => pulls.push(Pull { batch, slots }),
                        Err(e) => {
                            tracing::warn!(group = %rt.name, error = %e, retry_in = ?backoff, "pull failed; rebinding");
                            rt.set_bound(false);
                            drop(slots);
                            finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                            sleep_or_cancel(backoff, &shutdown).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                            continue 'bind;
                        }
                    }
                }
                (i, item) = next_from(&mut pulls), if !pulls.is_empty() => match item {
                    Some(Ok(msg)) => dispatch(&rt, &mut pulls[i], msg, &tracker, &abort, &shutdown).await,
                    Some(Err(e)) => {
                        tracing::warn!(group = %rt.name, error = %e, "pull ended with an error; rebinding");
                        rt.set_bound(false);
                        pulls.swap_remove(i);
                        finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
                        sleep_or_cancel(backoff, &shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue 'bind;
                    }
                    None => {
                        pulls.swap_remove(i);
                        backoff = Duration::from_millis(250);
                        if floor_read.elapsed() >= ACK_FLOOR_EVERY {
                            floor_read = tokio::time::Instant::now();
                            tokio::spawn(read_ack_floor(rt.clone(), consumer.clone()));
                        }
                    }
                },
            }
        }
    }
    finish_pulls(&rt, &mut pulls, &tracker, &abort, &shutdown).await;
    rt.set_bound(false);
}

/// Reads the consumer's ack floor into the group's runtime.
async fn read_ack_floor<S: Clone + Send + Sync + 'static>(
    rt: Arc<GroupRuntime<S>>,
    mut consumer: PullConsumer,
) {
    match consumer.info().await {
        Ok(info) => rt.note_ack_floor(info.ack_floor.stream_sequence),
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

/// Splits a permit for several slots into one permit per slot.
fn split_permit(mut permit: OwnedSemaphorePermit) -> Vec<OwnedSemaphorePermit> {
    let mut out = Vec::with_capacity(permit.num_permits());
    while permit.num_permits() > 1 {
        if let Some(one) = permit.split(1) {
            out.push(one);
        }
    }
    out.push(permit);
    out
}

/// Starts the handler for `msg` in one of the pull's slots, or hands it back when the worker is
/// shutting down (or the server sent more than was asked for).
async fn dispatch<S: Clone + Send + Sync + 'static>(
    rt: &Arc<GroupRuntime<S>>,
    pull: &mut Pull,
    msg: jetstream::Message,
    tracker: &TaskTracker,
    abort: &CancellationToken,
    shutdown: &CancellationToken,
) {
    match pull.slots.pop() {
        Some(permit) if !shutdown.is_cancelled() => {
            // Run the delivery here until it first waits: a handler that finishes at once
            // costs no task. One that waits continues as a task of its own.
            let mut delivery = Box::pin(tracker.track_future(guarded(
                rt.clone(),
                deliver(rt.clone(), msg, permit, abort.clone()),
            )));
            if futures::poll!(delivery.as_mut()).is_pending() {
                tokio::spawn(delivery);
            }
        }
        _ => {
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
                send_ack(&rt.conn, reply, Bytes::from_static(b"-NAK")).await;
            }
            if shutdown.is_cancelled() {
                tracing::debug!(group = %rt.name, "shutdown: pulled event handed back");
            }
        }
    }
}

/// Runs one delivery, containing a panic of the runtime's own code to that delivery: it is
/// logged, and the event, never settled, is redelivered after its ack wait. (Handler panics are
/// caught closer to the handler and become failed attempts.)
async fn guarded<S>(rt: Arc<GroupRuntime<S>>, delivery: impl std::future::Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(delivery).catch_unwind().await {
        tracing::error!(group = %rt.name, panic = %panic_message(&panic), "delivery panicked; the event will be redelivered");
    }
}

/// Reads every outstanding pull to its end, dispatching (or, on shutdown, handing back) what
/// still arrives.
async fn finish_pulls<S: Clone + Send + Sync + 'static>(
    rt: &Arc<GroupRuntime<S>>,
    pulls: &mut Vec<Pull>,
    tracker: &TaskTracker,
    abort: &CancellationToken,
    shutdown: &CancellationToken,
) {
    while !pulls.is_empty() {
        match next_from(pulls).await {
            (i, Some(Ok(msg))) => dispatch(rt, &mut pulls[i], msg, tracker, abort, shutdown).await,
            (i, Some(Err(_)) | None) => {
                pulls.swap_remove(i);
            }
        }
    }
}

async fn sleep_or_cancel(d: Duration, token: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = token.cancelled() => {}
    }
}
