//! Reading events from a request in the content modes of the CloudEvents HTTP binding
//! (structured, binary, batch) and the minimal JSON form, into one shape.

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use conveyor::delay::When;
use serde_json::Value;

use crate::rejection::Rejection;

mod binary;
mod minimal;
mod structured;

use binary::binary;
#[cfg(test)]
use binary::percent_decode;
use minimal::minimal;
use structured::structured;

/// Most events in one batch request.
pub const MAX_BATCH: usize = conveyor::publisher::MAX_ATOMIC_BATCH;
/// Deepest nesting of arrays and objects accepted in a body.
pub const MAX_DEPTH: usize = 64;

/// One event as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incoming {
    pub(crate) id: Option<String>,
    pub(crate) event_type: String,
    pub(crate) source: Option<String>,
    pub(crate) time: Option<DateTime<Utc>>,
    /// The `tenantid` attribute, when the client sent one: it must be the key's tenant.
    pub(crate) tenant: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) causation_id: Option<String>,
    pub(crate) deliver: Option<When>,
    pub(crate) data: Value,
}

/// How the request carries its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Structured,
    Binary,
    Batch,
    Minimal,
}

/// The mode of a request, from its headers; 415 when it has none of them.
pub(crate) fn mode(headers: &HeaderMap) -> Result<Mode, Rejection> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if headers.contains_key("ce-specversion") {
        return if is_json(&content_type) {
            Ok(Mode::Binary)
        } else {
            Err(unsupported(format!(
                "a binary-mode event's data must be JSON (Content-Type application/json), not {content_type:?}"
            )))
        };
    }
    match content_type.as_str() {
        "application/cloudevents+json" => Ok(Mode::Structured),
        "application/cloudevents-batch+json" => Ok(Mode::Batch),
        "application/json" => Ok(Mode::Minimal),
        "" => Err(unsupported("no Content-Type".to_owned())),
        other => Err(unsupported(format!(
            "Content-Type {other:?} is not accepted"
        ))),
    }
}

fn unsupported(why: String) -> Rejection {
    Rejection::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "{why}; send application/cloudevents+json, application/cloudevents-batch+json, binary mode (ce-* headers with a JSON body) or application/json ({{\"type\", \"data\", \"id\"}})"
        ),
    )
}

pub(super) fn is_json(content_type: &str) -> bool {
    content_type == "application/json" || content_type.ends_with("+json")
}

/// Reads the events of a request body in `mode`.
pub(crate) fn events(
    mode: Mode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<Incoming>, Rejection> {
    check_depth(body)?;
    match mode {
        Mode::Binary => Ok(vec![binary(headers, body)?]),
        Mode::Structured => Ok(vec![structured(json_body(body)?)?]),
        Mode::Minimal => Ok(vec![minimal(body)?]),
        Mode::Batch => {
            let Value::Array(items) = json_body(body)? else {
                return Err(Rejection::bad_request(
                    "invalid_request",
                    "a batch is a JSON array of CloudEvents",
                ));
            };
            if items.is_empty() {
                return Err(Rejection::bad_request(
                    "invalid_request",
                    "the batch is empty",
                ));
            }
            if items.len() > MAX_BATCH {
                return Err(Rejection::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "a batch holds at most {MAX_BATCH} events, not {}",
                        items.len()
                    ),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| structured(item).map_err(|r| r.in_batch(i)))
                .collect()
        }
    }
}

pub(super) fn json_body(body: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        Rejection::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

/// Refuses bodies nested deeper than [`MAX_DEPTH`] before they are parsed.
fn check_depth(body: &[u8]) -> Result<(), Rejection> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Rejection::bad_request(
                        "too_deep",
                        format!("the body nests arrays and objects deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, Rejection> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Rejection::bad_request(
                "invalid_event",
                format!("{text:?} is not an RFC 3339 time: {e}"),
            )
        })
}

pub(super) fn deliver(
    delay: Option<&str>,
    at: Option<&str>,
    pointers: (&str, &str),
) -> Result<Option<When>, Rejection> {
    match (delay, at) {
        (Some(_), Some(_)) => Err(Rejection::bad_request(
            "invalid_event",
            "an event has a delay or a delivery time, not both",
        )
        .at(pointers.0)),
        (Some(d), None) => humantime::parse_duration(d)
            .map(|d| Some(When::After(d)))
            .map_err(|e| {
                Rejection::bad_request(
                    "invalid_event",
                    format!("delay {d:?} is not a duration such as 10m or 3d: {e}"),
                )
                .at(pointers.0)
            }),
        (None, Some(t)) => Ok(Some(When::At(parse_time(t).map_err(|r| r.at(pointers.1))?))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn modes_follow_the_content_type_and_ce_headers() {
        let m = |pairs: &[(&'static str, &str)]| mode(&headers(pairs)).map_err(|r| r.status);
        assert_eq!(
            m(&[(
                "content-type",
                "application/cloudevents+json; charset=utf-8"
            )]),
            Ok(Mode::Structured)
        );
        assert_eq!(
            m(&[("content-type", "application/cloudevents-batch+json")]),
            Ok(Mode::Batch)
        );
        assert_eq!(
            m(&[("content-type", "application/json")]),
            Ok(Mode::Minimal)
        );
        assert_eq!(
            m(&[
                ("content-type", "application/json"),
                ("ce-specversion", "1.0")
            ]),
            Ok(Mode::Binary)
        );
        assert_eq!(
            m(&[("content-type", "text/plain")]),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            m(&[("content-type", "text/plain"), ("ce-specversion", "1.0")]),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(m(&[]), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }

    #[test]
    fn a_structured_event_keeps_its_attributes() {
        let body = br#"{"specversion":"1.0","id":"e-1","source":"/checkout","type":"order.created",
            "time":"2026-12-01T10:00:00Z","tenantid":"acme","correlationid":"c-1","delay":"10m","data":{"a":1},"other":"ignored"}"#;
        let e = &events(Mode::Structured, &HeaderMap::new(), body).unwrap()[0];
        assert_eq!(e.id.as_deref(), Some("e-1"));
        assert_eq!(e.event_type, "order.created");
        assert_eq!(e.tenant.as_deref(), Some("acme"));
        assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(
            e.deliver,
            Some(When::After(std::time::Duration::from_secs(600)))
        );
        assert_eq!(e.data, serde_json::json!({"a": 1}));
    }

    #[test]
    fn structured_errors_point_at_the_attribute() {
        let r = events(
            Mode::Structured,
            &HeaderMap::new(),
            br#"{"specversion":"1.0","source":"s","type":"t"}"#,
        )
        .unwrap_err();
        assert_eq!(r.extra.pointer.as_deref(), Some("/id"));
        let r = events(Mode::Batch, &HeaderMap::new(), br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"specversion":"0.3","id":"2","source":"s","type":"t"}]"#).unwrap_err();
        assert_eq!(r.extra.pointer.as_deref(), Some("/1/specversion"));
        let r = events(
            Mode::Structured,
            &HeaderMap::new(),
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AA=="}"#,
        )
        .unwrap_err();
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn binary_mode_decodes_percent_escapes() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "e%201"),
            ("ce-source", "s"),
            ("ce-type", "order.created"),
            ("ce-deliverat", "2030-01-01T00:00:00Z"),
        ]);
        let e = &events(Mode::Binary, &h, br#"{"a":1}"#).unwrap()[0];
        assert_eq!(e.id.as_deref(), Some("e 1"));
        assert!(matches!(e.deliver, Some(When::At(_))));
        assert_eq!(percent_decode("%E2%82%AC"), Some("€".to_owned()));
        assert_eq!(percent_decode("%zz"), None);
    }

    #[test]
    fn the_minimal_form_refuses_unknown_fields() {
        let e = &events(
            Mode::Minimal,
            &HeaderMap::new(),
            br#"{"type":"order.created","data":{},"id":"o-1"}"#,
        )
        .unwrap()[0];
        assert_eq!(e.id.as_deref(), Some("o-1"));
        assert!(
            events(
                Mode::Minimal,
                &HeaderMap::new(),
                br#"{"type":"order.created","data":{},"dealy":"1m"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn deep_bodies_and_big_batches_are_refused() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            events(Mode::Batch, &HeaderMap::new(), deep.as_bytes())
                .unwrap_err()
                .code,
            "too_deep"
        );
        let fine = format!("{{\"type\":\"t\",\"data\":\"{}\"}}", "[".repeat(100));
        assert!(check_depth(fine.as_bytes()).is_ok());
        let one = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
        let big = format!("[{}]", vec![one; MAX_BATCH + 1].join(","));
        assert_eq!(
            events(Mode::Batch, &HeaderMap::new(), big.as_bytes())
                .unwrap_err()
                .status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
