//! Running one handler: timeout, panics, heartbeats, progress, cancellation, SLA.

use super::*;

/// Sends a handler's progress reports: on its progress subject, into its run record, and as a
/// heartbeat of its delivery.
pub(super) struct LiveProgress {
    pub(super) conn: Connection,
    pub(super) reply: async_nats::Subject,
    pub(super) delivery: Arc<Delivery>,
    pub(super) history: Option<HistoryWriter>,
    pub(super) record: Option<Arc<Mutex<RunRecord>>>,
}

impl ProgressSink for LiveProgress {
    fn report(&self, percent: u8, message: String) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let d = &self.delivery;
            let at = Utc::now();
            send_ack(&self.conn, self.reply.clone(), Bytes::from_static(b"+WPI")).await;
            let update = ProgressUpdate {
                event_id: d.event_id.clone(),
                event_type: d.event_type.clone(),
                tenant: d.tenant.as_str().to_owned(),
                group: d.group.clone(),
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
            if let (Some(history), Some(record)) = (&self.history, &self.record) {
                let snapshot = record.lock().ok().map(|mut r| {
                    r.progress = Some(ProgressReport {
                        percent,
                        message,
                        at,
                    });
                    r.clone()
                });
                if let Some(snapshot) = snapshot {
                    history.put_nowait(&snapshot).await;
                }
            }
        })
    }
}

/// Runs the handler future with its timeout, catching panics, sending in-progress heartbeats
/// while it runs, watching its expected duration, stopping it after its cancel grace once it
/// is cancelled, and giving up when the worker aborts. A handler that completes on its first
/// poll costs no timer at all; otherwise one timer serves heartbeats, the expected duration
/// and the timeout.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_handler<S: Clone + Send + Sync + 'static>(
    rt: &GroupRuntime<S>,
    reply: &async_nats::Subject,
    future: impl std::future::Future<Output = HandlerResult>,
    route: &Route<S>,
    delivery: &Delivery,
    (cancel, mut cancellations): (&CancellationToken, tokio::sync::watch::Receiver<u64>),
    abort: &CancellationToken,
    tracking: &Tracking<'_>,
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
    // In flight: counted for handlers that wait (one that finished on its first poll was in
    // flight for no measurable time).
    let _in_flight = rt.metrics.as_ref().map(|m| InFlight::new(&m.in_flight));
    if let (Some(history), Some(record)) = (&rt.history, &tracking.record) {
        let snapshot = record.lock().ok().map(|r| r.clone());
        if let Some(snapshot) = snapshot {
            history.put_nowait(&snapshot).await;
        }
    }
    let timeout = route.options.timeout;
    let deadline = start + timeout;
    let mut sla_at = route.options.expected_duration.map(|d| start + d);
    let every = rt.heartbeat_every();
    let next_wake = |now: tokio::time::Instant, sla_at: Option<tokio::time::Instant>| {
        let mut at = (now + every).min(deadline);
        if let Some(sla) = sla_at {
            at = at.min(sla);
        }
        at
    };
    let timer = tokio::time::sleep_until(next_wake(start, sla_at));
    tokio::pin!(timer);
    let mut watching = true;
    loop {
        tokio::select! {
            biased;
            r = guarded.as_mut() => return finished(r),
            () = abort.cancelled() => return Run::Aborted,
            changed = cancellations.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if rt.cancels.is_cancelled(&delivery.group, delivery.tenant.as_str(), &delivery.event_id) {
                    tracing::info!("cancellation received");
                    cancel.cancel();
                }
            }
            () = cancel.cancelled() => {
                let grace = route.options.cancel_grace;
                return match tokio::time::timeout(grace, guarded.as_mut()).await {
                    Ok(_) => Run::Cancelled,
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
                    sla_breached(rt, route, delivery, now - start, tracking).await;
                } else {
                    send_ack(&rt.conn, reply.clone(), Bytes::from_static(b"+WPI")).await;
                }
                timer.as_mut().reset(next_wake(now, sla_at));
            }
        }
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
    if let (Some(history), Some(record)) = (&rt.history, &tracking.record) {
        let snapshot = record.lock().ok().map(|mut r| {
            r.sla_breached = true;
            r.clone()
        });
        if let Some(snapshot) = snapshot {
            history.put_nowait(&snapshot).await;
        }
    }
    if route.options.sla_event {
        let event = SlaBreached {
            group: delivery.group.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt: delivery.attempt,
            expected_ms: u64::try_from(expected.as_millis()).unwrap_or(u64::MAX),
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            detected_at: Utc::now(),
        };
        let options = crate::EventOptions {
            correlation_id: Some(delivery.correlation_id.clone()),
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

/// Counts a running handler in the in-flight gauge until dropped.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
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
