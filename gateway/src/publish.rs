//! From events read off a request to events stored: scope and schema checks, then one publish
//! or one atomic batch, answered only after the stream acknowledged.

use axum::http::StatusCode;
use conveyor::trace::TraceParent;
use conveyor::{EventOptions, PublishError, PublishErrorKind, Publisher, TenantId};
use futures::StreamExt;
use serde_json::Value;

use crate::ingest::Incoming;
use crate::keys::KeyRecord;
use crate::outcome::EventResult;
use crate::rejection::{Rejection, Violation};

/// Longest `source` attribute accepted.
const MAX_SOURCE_LEN: usize = 512;

/// An event that passed every check, ready to publish.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) id: String,
    event_type: String,
    data: Value,
    options: EventOptions,
}

/// Checks one event against the key (tenant, scope) and the catalog (type, schema), and fills
/// in its id, source and trace.
pub(crate) fn check(
    incoming: Incoming,
    key: &KeyRecord,
    trace: Option<TraceParent>,
    default_source: &str,
) -> Result<Checked, Rejection> {
    if let Some(tenant) = &incoming.tenant
        && *tenant != key.tenant
    {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "forbidden_tenant",
            format!(
                "this key publishes for tenant {:?} only, not {tenant:?}",
                key.tenant
            ),
        )
        .at("/tenantid"));
    }
    if !key.allows(&incoming.event_type) {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "forbidden_type",
            format!(
                "this key may not publish {:?} events (its types: {})",
                incoming.event_type,
                key.types.join(", ")
            ),
        )
        .at("/type"));
    }
    if let Err(e) = conveyor_schemas::validate(&incoming.event_type, &incoming.data) {
        return Err(match e {
            conveyor_schemas::ValidateError::UnknownType(t) => Rejection::bad_request(
                "unknown_type",
                format!("unknown event type {t:?}: not in the catalog"),
            )
            .at("/type"),
            conveyor_schemas::ValidateError::Invalid(violations) => {
                let first = violations
                    .first()
                    .map(|v| format!("/data{}", v.path))
                    .unwrap_or_else(|| "/data".into());
                let mut r = Rejection::bad_request(
                    "invalid_data",
                    format!(
                        "the data breaks the {} schema: {}",
                        incoming.event_type,
                        conveyor_schemas::ValidateError::Invalid(violations.clone())
                    ),
                )
                .at(first);
                r.extra.violations = violations
                    .into_iter()
                    .map(|v| Violation {
                        pointer: format!("/data{}", v.path),
                        message: v.message,
                    })
                    .collect();
                r
            }
        });
    }
    let id = match incoming.id {
        Some(id) => {
            conveyor::envelope::validate_event_id(&id).map_err(|e| {
                Rejection::bad_request("invalid_event", e.message().to_owned()).at("/id")
            })?;
            id
        }
        None => conveyor::envelope::new_event_id(),
    };
    let source = incoming.source.unwrap_or_else(|| default_source.to_owned());
    if source.len() > MAX_SOURCE_LEN || source.chars().any(char::is_control) {
        return Err(Rejection::bad_request(
            "invalid_event",
            format!("source must be at most {MAX_SOURCE_LEN} bytes without control characters"),
        )
        .at("/source"));
    }
    // The event's own trace context wins over the request's; an invalid one starts a new
    // trace, as W3C asks.
    let trace = incoming
        .traceparent
        .as_deref()
        .and_then(|t| t.parse::<TraceParent>().ok())
        .or(trace);
    let mut options = EventOptions::default().id(id.clone()).source(source);
    options.time = incoming.time;
    options.correlation_id = incoming.correlation_id;
    options.causation_id = incoming.causation_id;
    options.traceparent = trace.map(|t| t.to_string());
    options.deliver = incoming.deliver;
    Ok(Checked {
        id,
        event_type: incoming.event_type,
        data: incoming.data,
        options,
    })
}

/// Refuses a batch that holds one id twice (the stream would refuse it whole, unexplained).
pub(crate) fn check_unique(events: &[Checked]) -> Result<(), Rejection> {
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if !seen.insert(e.id.as_str()) {
            return Err(Rejection::bad_request(
                "invalid_event",
                format!("event id {:?} is twice in the batch", e.id),
            )
            .at("/id")
            .in_batch(i));
        }
    }
    Ok(())
}

/// Publishes one event.
pub(crate) async fn one(
    publisher: &Publisher,
    tenant: &TenantId,
    event: Checked,
) -> Result<EventResult, Rejection> {
    match publisher
        .publish_untyped(tenant, &event.event_type, &event.data, event.options)
        .await
    {
        Ok(p) => Ok(EventResult::from_published(&p)),
        Err(e) => {
            let status = unstored_status(&e);
            let mut r = refusal(&e);
            r.extra.events = Some(vec![EventResult::failed(&event.id, status, e.to_string())]);
            Err(r)
        }
    }
}

/// Publishes a batch atomically. A batch the stream refuses because an event's id is already
/// stored (a retried request) is published event by event: stored ones report `duplicate`,
/// and the answer names what was stored should any fail.
pub(crate) async fn batch(
    publisher: &Publisher,
    tenant: &TenantId,
    events: Vec<Checked>,
) -> Result<Vec<EventResult>, Rejection> {
    let mut atomic = publisher.atomic_batch(tenant).map_err(|e| refusal(&e))?;
    for (i, e) in events.iter().enumerate() {
        atomic
            .add_untyped(&e.event_type, &e.data, e.options.clone())
            .map_err(|err| refusal(&err).in_batch(i))?;
    }
    match atomic.commit().await {
        Ok(stored) => Ok(stored.iter().map(EventResult::from_published).collect()),
        Err(e) if e.kind() == PublishErrorKind::Duplicate => {
            one_by_one(publisher, tenant, events).await
        }
        Err(e) => {
            let status = unstored_status(&e);
            let mut r = refusal(&e);
            r.extra.events = Some(
                events
                    .iter()
                    .map(|ev| EventResult::failed(&ev.id, status, e.to_string()))
                    .collect(),
            );
            Err(r)
        }
    }
}

async fn one_by_one(
    publisher: &Publisher,
    tenant: &TenantId,
    events: Vec<Checked>,
) -> Result<Vec<EventResult>, Rejection> {
    let results: Vec<(String, Result<conveyor::Published, PublishError>)> =
        futures::stream::iter(events.into_iter().map(|e| async move {
            let result = publisher
                .publish_untyped(tenant, &e.event_type, &e.data, e.options)
                .await;
            (e.id, result)
        }))
        .buffered(64)
        .collect()
        .await;
    let mut first_error = None;
    let out: Vec<EventResult> = results
        .iter()
        .map(|(id, r)| match r {
            Ok(p) => EventResult::from_published(p),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(refusal(e));
                }
                EventResult::failed(id, unstored_status(e), e.to_string())
            }
        })
        .collect();
    match first_error {
        None => Ok(out),
        Some(mut r) => {
            r.message = format!("only part of the batch was stored: {}", r.message);
            r.extra.events = Some(out);
            Err(r)
        }
    }
}

/// `unknown` when the event may have been stored (its ack was lost), else `not_stored`.
fn unstored_status(e: &PublishError) -> &'static str {
    match e.kind() {
        PublishErrorKind::Timeout | PublishErrorKind::Other => "unknown",
        _ => "not_stored",
    }
}

/// The answer to a publish that failed.
fn refusal(e: &PublishError) -> Rejection {
    match e.kind() {
        PublishErrorKind::PayloadTooLarge | PublishErrorKind::BatchTooLarge => {
            Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        PublishErrorKind::InvalidTenant
        | PublishErrorKind::InvalidEventType
        | PublishErrorKind::Encode
        | PublishErrorKind::InvalidId
        | PublishErrorKind::InvalidHeader
        | PublishErrorKind::InvalidDelay
        | PublishErrorKind::Duplicate => Rejection::bad_request("invalid_event", e.to_string()),
        PublishErrorKind::PermissionDenied => Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "gateway_not_permitted",
            format!("the gateway's NATS user may not publish this event: {e}"),
        ),
        PublishErrorKind::NoStream => Rejection::unavailable(e.to_string()),
        _ => Rejection::unavailable(format!(
            "{e}; nothing is lost by retrying with the same event ids"
        )),
    }
}
