//! Structured mode: one CloudEvent as a JSON object (also each item of a batch).

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::{Incoming, deliver, is_json, parse_time};
use crate::rejection::Rejection;

/// A structured-mode CloudEvent (also each item of a batch).
pub(super) fn structured(value: Value) -> Result<Incoming, Rejection> {
    let Value::Object(mut attrs) = value else {
        return Err(Rejection::bad_request(
            "invalid_event",
            "a CloudEvent is a JSON object",
        ));
    };
    let specversion = required(&mut attrs, "specversion")?;
    if specversion != "1.0" {
        return Err(Rejection::bad_request(
            "invalid_event",
            format!("specversion {specversion:?} is not supported; send \"1.0\""),
        )
        .at("/specversion"));
    }
    if attrs.contains_key("data_base64") {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "binary data (data_base64) is not accepted: an event's data is JSON",
        )
        .at("/data_base64"));
    }
    if let Some(ct) = optional(&mut attrs, "datacontenttype")? {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !is_json(&ct) {
            return Err(Rejection::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("datacontenttype {ct:?} is not accepted: an event's data is JSON"),
            )
            .at("/datacontenttype"));
        }
    }
    let id = required(&mut attrs, "id")?;
    let source = required(&mut attrs, "source")?;
    let event_type = required(&mut attrs, "type")?;
    let time = optional(&mut attrs, "time")?
        .map(|t| parse_time(&t).map_err(|r| r.at("/time")))
        .transpose()?;
    let deliver = deliver(
        optional(&mut attrs, "delay")?.as_deref(),
        optional(&mut attrs, "deliverat")?.as_deref(),
        ("/delay", "/deliverat"),
    )?;
    Ok(Incoming {
        id: Some(id),
        event_type,
        source: Some(source),
        time,
        tenant: optional(&mut attrs, "tenantid")?,
        traceparent: optional(&mut attrs, "traceparent")?,
        correlation_id: optional(&mut attrs, "correlationid")?,
        causation_id: optional(&mut attrs, "causationid")?,
        deliver,
        data: attrs.remove("data").unwrap_or(Value::Null),
    })
}

pub(super) fn optional(
    attrs: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, Rejection> {
    match attrs.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::bad_request(
            "invalid_event",
            format!("attribute {name:?} must be a string"),
        )
        .at(format!("/{name}"))),
    }
}

pub(super) fn required(attrs: &mut Map<String, Value>, name: &str) -> Result<String, Rejection> {
    match optional(attrs, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Rejection::bad_request(
            "invalid_event",
            format!("attribute {name:?} is required"),
        )
        .at(format!("/{name}"))),
    }
}
