//! Preparing an event for the wire: validation of tenant, type, id, headers and lane, the
//! decode-back check of typed events, and the envelope. The worker's test support prepares
//! follow-up events through the same functions, so a unit test refuses what production refuses.

use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;

use super::{PublishError, PublishErrorKind, message_id};
use crate::envelope::{self, EventOptions};
use crate::error::Error;
use crate::event::{Event, validate_event_type};
use crate::tenant::{IntoTenantId, TenantId};

/// An event encoded and ready to send.
pub(crate) struct Prepared {
    pub(crate) id: String,
    /// The `Nats-Msg-Id`: the id scoped by the tenant (see [`message_id`]).
    pub(crate) message_id: String,
    pub(crate) subject: String,
    pub(crate) body: Bytes,
    pub(crate) headers: Vec<(String, String)>,
    /// When a delayed event becomes visible (it is then sent as a schedule).
    pub(crate) deliver_at: Option<chrono::DateTime<Utc>>,
    /// A debounced event's `max_wait`: its burst's first time is looked up before sending.
    pub(crate) debounce_max_wait: Option<std::time::Duration>,
}

/// Encodes a typed event. The payload is decoded back as `E` before anything is sent, so a
/// value its own type would reject (a custom `Deserialize` that validates, say) never leaves.
pub(crate) fn prepare_event<E: Event>(
    source: &str,
    tenant: impl IntoTenantId,
    event: &E,
    options: &EventOptions,
) -> Result<Prepared, PublishError> {
    let data = serde_json::value::to_raw_value(event).map_err(|e| {
        Error::with_source(
            PublishErrorKind::Encode,
            format!("could not encode a {} event", E::TYPE),
            e,
        )
    })?;
    // A `Deserialize` that panics is refused like one that fails: the worker would panic too.
    let decoded =
        std::panic::catch_unwind(|| envelope::decode_data::<E>(&data, E::TYPE)).map_err(|_| {
            Error::new(
                PublishErrorKind::Encode,
                format!(
                    "a {} event would not decode as its own type: its Deserialize panicked",
                    E::TYPE
                ),
            )
        })?;
    decoded.map_err(|e| {
        Error::with_source(
            PublishErrorKind::Encode,
            format!(
                "a {} event would not decode as its own type: {}",
                E::TYPE,
                e.message()
            ),
            e,
        )
    })?;
    prepare_sized(source, tenant, E::TYPE, (&*data, data.get().len()), options)
}

pub(crate) fn prepare<T: Serialize + ?Sized>(
    source: &str,
    tenant: impl IntoTenantId,
    event_type: &str,
    data: &T,
    options: &EventOptions,
) -> Result<Prepared, PublishError> {
    prepare_sized(source, tenant, event_type, (data, 0), options)
}

/// [`prepare`] with the data's encoded length when it is known (0 otherwise).
fn prepare_sized<T: Serialize + ?Sized>(
    source: &str,
    tenant: impl IntoTenantId,
    event_type: &str,
    (data, data_len): (&T, usize),
    options: &EventOptions,
) -> Result<Prepared, PublishError> {
    let tenant: TenantId = tenant
        .into_tenant_id()
        .map_err(|e| Error::restate(PublishErrorKind::InvalidTenant, e))?;
    validate_event_type(event_type)
        .map_err(|e| Error::restate(PublishErrorKind::InvalidEventType, e))?;
    let id = match &options.id {
        Some(id) => {
            envelope::check_event_id(id).map_err(|m| Error::new(PublishErrorKind::InvalidId, m))?;
            id.clone()
        }
        None => envelope::new_event_id(),
    };
    for (name, value) in &options.headers {
        check_header(name, value)?;
    }
    let now = Utc::now();
    let deliver_at = match options.deliver {
        Some(when) => when
            .resolve(now)
            .map_err(|m| Error::new(PublishErrorKind::InvalidDelay, m))?,
        None => None,
    };
    let time = options.time.unwrap_or(now);
    let generated;
    let traceparent = match options.traceparent.as_deref() {
        Some(tp) => tp,
        None => {
            generated = crate::trace::for_publish().to_string();
            &generated
        }
    };
    let body = envelope::encode(
        &envelope::Attributes {
            id: &id,
            source: options.source.as_deref().unwrap_or(source),
            event_type,
            time: &time,
            tenant: &tenant,
            traceparent: Some(traceparent),
            correlation_id: options.correlation_id.as_deref(),
            causation_id: options.causation_id.as_deref(),
            data_len,
        },
        data,
    )
    .map_err(|e| {
        Error::with_source(
            PublishErrorKind::Encode,
            format!("could not encode a {event_type} event"),
            e,
        )
    })?;
    if let Some(lane) = options.lane.as_deref() {
        envelope::validate_lane(lane)
            .map_err(|e| Error::restate(PublishErrorKind::InvalidEventType, e))?;
    }
    let target = envelope::event_subject_in_lane(&tenant, event_type, options.lane.as_deref());
    let mut headers = options.headers.clone();
    let mut debounce_max_wait = None;
    let (subject, deliver_at) = match (&options.debounce, deliver_at) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                PublishErrorKind::InvalidDelay,
                "an event is either debounced or delayed, not both",
            ));
        }
        (Some(d), None) => {
            envelope::check_event_id(&d.key).map_err(|m| {
                Error::new(
                    PublishErrorKind::InvalidDelay,
                    format!("invalid debounce key: {}", m.replace("event id", "key")),
                )
            })?;
            let at = crate::delay::When::After(d.period)
                .resolve(now)
                .map_err(|m| Error::new(PublishErrorKind::InvalidDelay, m))?
                .unwrap_or(now);
            headers.extend(crate::delay::schedule_headers(at, &target));
            headers.push((
                crate::delay::DEBOUNCE_FIRST_HEADER.to_owned(),
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ));
            debounce_max_wait = d.max_wait;
            (
                crate::delay::debounce_subject(&tenant, &d.key, event_type),
                Some(at),
            )
        }
        (None, Some(at)) => {
            headers.extend(crate::delay::schedule_headers(at, &target));
            (crate::delay::delayed_subject(&tenant, &id), Some(at))
        }
        (None, None) => (target, None),
    };
    Ok(Prepared {
        subject,
        message_id: message_id(&tenant, &id),
        id,
        body: body.into(),
        headers,
        deliver_at,
        debounce_max_wait,
    })
}

/// Checks an extra header: a name of visible ASCII without `:`, a value without control
/// characters (a CR or LF would end the header block early and let a value forge headers).
fn check_header(name: &str, value: &str) -> Result<(), PublishError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(Error::new(
            PublishErrorKind::InvalidHeader,
            format!("header name {name:?} must be visible ASCII characters without ':'"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(Error::new(
            PublishErrorKind::InvalidHeader,
            format!("the value of header {name} contains the control character {c:?}"),
        ));
    }
    Ok(())
}
