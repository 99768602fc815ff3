//! Binary mode: attributes in `ce-*` headers (percent-encoded), the data as the body.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{Incoming, deliver, json_body, parse_time};
use crate::rejection::Rejection;

/// A binary-mode CloudEvent: attributes in `ce-*` headers, the data as the body.
pub(super) fn binary(headers: &HeaderMap, body: &[u8]) -> Result<Incoming, Rejection> {
    let header = |name: &str| -> Result<Option<String>, Rejection> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => {
                let text = v.to_str().map_err(|_| {
                    Rejection::bad_request(
                        "invalid_event",
                        format!(
                            "header {name} is not visible ASCII (percent-encode other characters)"
                        ),
                    )
                })?;
                percent_decode(text).map(Some).ok_or_else(|| {
                    Rejection::bad_request(
                        "invalid_event",
                        format!("header {name} has a malformed percent-encoding"),
                    )
                })
            }
        }
    };
    let required = |name: &str| -> Result<String, Rejection> {
        match header(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(Rejection::bad_request(
                "invalid_event",
                format!("header {name} is required"),
            )),
        }
    };
    let specversion = required("ce-specversion")?;
    if specversion != "1.0" {
        return Err(Rejection::bad_request(
            "invalid_event",
            format!("ce-specversion {specversion:?} is not supported; send 1.0"),
        ));
    }
    let data = if body.is_empty() {
        Value::Null
    } else {
        json_body(body)?
    };
    let time = header("ce-time")?.map(|t| parse_time(&t)).transpose()?;
    Ok(Incoming {
        id: Some(required("ce-id")?),
        source: Some(required("ce-source")?),
        event_type: required("ce-type")?,
        time,
        tenant: header("ce-tenantid")?,
        traceparent: header("ce-traceparent")?,
        correlation_id: header("ce-correlationid")?,
        causation_id: header("ce-causationid")?,
        deliver: deliver(
            header("ce-delay")?.as_deref(),
            header("ce-deliverat")?.as_deref(),
            ("", ""),
        )?,
        data,
    })
}

/// Decodes the `%XX` escapes of a CloudEvents header value (UTF-8); `None` when malformed.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
