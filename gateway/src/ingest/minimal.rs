//! The minimal form for hand-written calls: `{"type", "data", "id"}`.

use serde::Deserialize;
use serde_json::Value;

use super::{Incoming, deliver, parse_time};
use crate::rejection::Rejection;

/// The minimal form for hand-written calls: `{"type", "data", "id"?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Minimal {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Value,
    id: Option<String>,
    source: Option<String>,
    time: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    delay: Option<String>,
    deliver_at: Option<String>,
}

pub(super) fn minimal(body: &[u8]) -> Result<Incoming, Rejection> {
    let m: Minimal = serde_json::from_slice(body).map_err(|e| {
        Rejection::bad_request(
            "invalid_request",
            format!(
                "the body is not an event {{\"type\", \"data\", \"id\", \"source\", \"time\", \"correlation_id\", \"causation_id\", \"delay\", \"deliver_at\"}}: {e}"
            ),
        )
    })?;
    let time = m
        .time
        .as_deref()
        .map(|t| parse_time(t).map_err(|r| r.at("/time")))
        .transpose()?;
    Ok(Incoming {
        deliver: deliver(
            m.delay.as_deref(),
            m.deliver_at.as_deref(),
            ("/delay", "/deliver_at"),
        )?,
        id: m.id,
        event_type: m.event_type,
        source: m.source,
        time,
        tenant: None,
        traceparent: None,
        correlation_id: m.correlation_id,
        causation_id: m.causation_id,
        data: m.data,
    })
}
