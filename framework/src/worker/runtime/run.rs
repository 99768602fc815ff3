//! Running one handler: timeout, panics, heartbeats, progress, cancellation, SLA.
//!
//! [`supervise`] is the run itself, the same for the worker and for
//! [`TestDelivery`](crate::testing::TestDelivery); what a run does while its handler waits
//! (heartbeats, history, the SLA) is a [`RunWatch`].

use super::*;

/// Sends a handler's progress reports: on its progress subject, into its run record, and as a
/// heartbeat of its delivery.
pub(super) struct LiveProgress {
    pub(super) conn: Connection,
    pub(super) reply: async_nats::Subject,
    pub(super) delivery: Arc<Delivery>,
    pub(super) record: Option<Arc<RunRecorder>>,
}

impl ProgressSink for LiveProgress {
    fn report(&self, percent: u8, message: String) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let d = &self.delivery;
            let at = Utc::now();
            send_ack(&self.conn, self.reply.clone(), jetstream::AckKind::Progress).await;
            let update = ProgressUpdate {
                event_id: d.event_id.clone(),
                event_type: d.event_type.to_owned(),
                tenant: d.tenant.as_str().to_owned(),
                group: d.group.to_string(),
                attempt: d.attempt,
                percent,
                message: message.clone(),
                at,
            };
            match serde_json::to_vec(&update) {
                Ok(body) => {
                    let subject = progress_subject(d.tenant.as_str(), &d.group, &d.event_id);
                    if let Err(e) = self.conn.client().publish(subject, body.into()).await {
                        tracing::warn!(error = %e, "could not publish progress");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not encode progress"),
            }
            if let Some(record) = &self.record {
                record
                    .write(|r| {
                        r.progress = Some(ProgressReport {
                            percent,
                            message,
                            at,
                        });
                    })
                    .await;
            }
        })
    }
}

/// The time limits of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunLimits {
    /// The run is stopped after this long.
    pub(crate) timeout: Duration,
    /// How long a cancelled run may take to return.
    pub(crate) cancel_grace: Duration,
    /// Expected duration: passing it calls [`RunWatch::over_expected`] once.
    pub(crate) expected: Option<Duration>,
    /// How often [`RunWatch::heartbeat`] is called while the handler waits.
    pub(crate) heartbeat_every: Duration,
}

impl RunLimits {
    /// The limits of a handler with `options`, heartbeating `every`.
    pub(crate) fn of(options: &crate::HandlerOptions, every: Duration) -> Self {
        Self {
            timeout: options.timeout,
            cancel_grace: options.cancel_grace,
            expected: options.expected_duration,
            heartbeat_every: every,
        }
    }
}

/// What a run does while its handler waits. None of it is called for a handler that completes
/// on its first poll.
pub(crate) trait RunWatch: Sync {
    /// The handler did not complete at once: it is now in flight.
    fn waiting(&self);
    /// Keep the delivery alive (`+WPI`).
    fn heartbeat(&self) -> futures::future::BoxFuture<'_, ()>;
    /// The run passed its expected duration.
    fn over_expected(&self, elapsed: Duration) -> futures::future::BoxFuture<'_, ()>;
    /// The cancellations changed: whether this run's event is cancelled now.
    fn cancelled(&self) -> bool;
}

/// Runs the handler future with its timeout, catching panics, calling `watch` while it waits,
/// stopping it after its cancel grace once `cancel` fires (or the cancellations say so), and
/// giving up when `abort` fires. A handler that completes on its first poll costs no timer at
/// all; otherwise one timer serves heartbeats, the expected duration and the timeout. A
/// cancelled handler that returns within its grace reports what it returned.
pub(crate) async fn supervise(
    future: impl std::future::Future<Output = HandlerResult>,
    limits: &RunLimits,
    (cancel, cancellations): (
        &CancellationToken,
        Option<tokio::sync::watch::Receiver<u64>>,
    ),
    abort: Option<&CancellationToken>,
    watch: &dyn RunWatch,
) -> Run {
    let finished = |r: Result<HandlerResult, Box<dyn std::any::Any + Send>>| match r {
        Ok(r) => Run::Done(r),
        Err(panic) => Run::Panicked(panic_message(&panic)),
    };
    let start = tokio::time::Instant::now();
    let guarded = AssertUnwindSafe(future).catch_unwind();
    tokio::pin!(guarded);
    if let std::task::Poll::Ready(r) = futures::poll!(guarded.as_mut()) {
        return finished(r);
    }
    watch.waiting();
    let deadline = start + limits.timeout;
    let mut sla_at = limits.expected.map(|d| start + d);
    let every = limits.heartbeat_every;
    let next_wake = |now: tokio::time::Instant, sla_at: Option<tokio::time::Instant>| {
        let mut at = (now + every).min(deadline);
        if let Some(sla) = sla_at {
            at = at.min(sla);
        }
        at
    };
    let timer = tokio::time::sleep_until(next_wake(start, sla_at));
    tokio::pin!(timer);
    let (mut cancellations, mut watching) = match cancellations {
        Some(c) => (c, true),
        None => (tokio::sync::watch::channel(0).1, false),
    };
    // A token that never fires, made only when there is no abort (tests): the worker's runs
    // always have one, and a token is an allocation.
    let never;
    let abort = match abort {
        Some(abort) => abort,
        None => {
            never = CancellationToken::new();
            &never
        }
    };
    loop {
        tokio::select! {
            biased;
            r = guarded.as_mut() => return finished(r),
            () = abort.cancelled() => return Run::Aborted,
            changed = cancellations.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if watch.cancelled() {
                    tracing::info!("cancellation received");
                    cancel.cancel();
                }
            }
            () = cancel.cancelled() => {
                let grace = limits.cancel_grace;
                return match tokio::time::timeout(grace, guarded.as_mut()).await {
                    Ok(r) => finished(r),
                    Err(_) => {
                        tracing::info!(?grace, "cancelled handler did not return in its grace; stopped");
                        Run::Cancelled
                    }
                };
            }
            () = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Run::TimedOut;
                }
                if sla_at.is_some_and(|at| now >= at) {
                    sla_at = None;
                    watch.over_expected(now - start).await;
                } else {
                    watch.heartbeat().await;
                }
                timer.as_mut().reset(next_wake(now, sla_at));
            }
        }
    }
}

/// The worker's [`RunWatch`] of one delivery: heartbeats on its reply subject, the in-flight
/// gauge, the run record, the SLA.
pub(super) struct DeliveryWatch<'a, S> {
    rt: &'a GroupRuntime<S>,
    reply: &'a async_nats::Subject,
    route: &'a Route<S>,
    delivery: &'a Delivery,
    tracking: &'a Tracking<'a>,
    /// Set once the handler waits: the in-flight gauge counts it until this watch is dropped.
    in_flight: std::sync::atomic::AtomicBool,
}

impl<'a, S: Clone + Send + Sync + 'static> DeliveryWatch<'a, S> {
    pub(super) fn new(
        rt: &'a GroupRuntime<S>,
        incoming: &'a Incoming<'_>,
        route: &'a Route<S>,
        delivery: &'a Delivery,
        tracking: &'a Tracking<'a>,
    ) -> Self {
        Self {
            rt,
            reply: &incoming.reply,
            route,
            delivery,
            tracking,
            in_flight: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn gauge(&self) -> Option<&prometheus_client::metrics::gauge::Gauge> {
        self.rt.metrics.as_ref().map(|m| &m.in_flight)
    }
}

impl<S> Drop for DeliveryWatch<'_, S> {
    fn drop(&mut self) {
        if *self.in_flight.get_mut()
            && let Some(m) = &self.rt.metrics
        {
            m.in_flight.dec();
        }
    }
}

impl<S: Clone + Send + Sync + 'static> RunWatch for DeliveryWatch<'_, S> {
    fn waiting(&self) {
        // In flight: counted for handlers that wait (one that finished on its first poll was
        // in flight for no measurable time).
        if let Some(gauge) = self.gauge() {
            gauge.inc();
            self.in_flight.store(true, Ordering::Relaxed);
        }
        if let Some(record) = &self.tracking.record {
            RunRecorder::write_running(record);
        }
    }

    fn heartbeat(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(send_ack(
            &self.rt.conn,
            self.reply.clone(),
            jetstream::AckKind::Progress,
        ))
    }

    fn over_expected(&self, elapsed: Duration) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(sla_breached(
            self.rt,
            self.route,
            self.delivery,
            elapsed,
            self.tracking,
        ))
    }

    fn cancelled(&self) -> bool {
        let d = self.delivery;
        self.rt
            .cancels
            .is_cancelled(&d.group, d.tenant.as_str(), &d.event_id)
    }
}

/// A run went over its expected duration: log, count, mark the record, publish if configured.
async fn sla_breached<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    route: &Route<S>,
    delivery: &Delivery,
    elapsed: Duration,
    tracking: &Tracking<'_>,
) {
    let expected = route.options.expected_duration.unwrap_or_default();
    tracing::warn!(?expected, ?elapsed, "run over its expected duration");
    if let Some(m) = tracking.metrics {
        m.sla_breaches.inc();
    }
    if let Some(record) = &tracking.record {
        record.write(|r| r.sla_breached = true).await;
    }
    if route.options.sla_event {
        let event = SlaBreached {
            group: delivery.group.to_string(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.to_owned(),
            attempt: delivery.attempt,
            expected_ms: u64::try_from(expected.as_millis()).unwrap_or(u64::MAX),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            detected_at: Utc::now(),
        };
        let options = crate::EventOptions {
            correlation_id: Some(delivery.correlation_id().to_owned()),
            causation_id: Some(delivery.event_id.clone()),
            traceparent: Some(delivery.trace.to_string()),
            ..crate::EventOptions::default()
        };
        if let Err(e) = rt
            .publisher
            .publish_with(delivery.tenant.clone(), &event, options)
            .await
        {
            tracing::warn!(error = %e, "could not publish sla.breached");
        }
    }
}

/// A handler future that re-raises a panic caught while the handler was being called.
pub(super) async fn resume_panic(panic: Box<dyn std::any::Any + Send>) -> HandlerResult {
    std::panic::resume_unwind(panic)
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
