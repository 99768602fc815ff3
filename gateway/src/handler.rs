//! `POST /v1/events`: key, content mode, body, rate, checks, then the stream's ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use conveyor::trace::TraceParent;
use conveyor::{Connection, Publisher, TenantId};
use serde::Serialize;

use crate::auth::Auth;
use crate::ingest::{self, Mode};
use crate::metrics::Metrics;
use crate::outcome::EventResult;
use crate::publish;
use crate::rejection::Rejection;

/// What every request needs.
pub(crate) struct App {
    pub(crate) conn: Connection,
    pub(crate) auth: Auth,
    pub(crate) metrics: Metrics,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) default_source: String,
}

#[derive(Serialize)]
struct Accepted {
    events: Vec<EventResult>,
}

pub(crate) async fn post_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = match accept(&app, &headers, body).await {
        Ok(events) => {
            let duplicates = events.iter().filter(|e| e.status == "duplicate").count() as u64;
            app.metrics.events("duplicate", duplicates);
            app.metrics
                .events("stored", events.len() as u64 - duplicates);
            (StatusCode::ACCEPTED, axum::Json(Accepted { events })).into_response()
        }
        Err(r) => {
            if r.status.is_server_error() {
                tracing::warn!(status = r.status.as_u16(), code = r.code, message = %r.message, "request refused");
            }
            r.into_response()
        }
    };
    app.metrics
        .request(response.status().as_u16(), started.elapsed());
    response
}

async fn accept(app: &App, headers: &HeaderMap, body: Body) -> Result<Vec<EventResult>, Rejection> {
    let key = app.auth.authenticate(headers).await?;
    let mode = ingest::mode(headers)?;
    let bytes = read_body(body, headers, app.max_body, app.body_timeout).await?;
    let incoming = ingest::events(mode, headers, &bytes)?;
    app.auth.take(&key, incoming.len())?;
    let tenant = TenantId::parse(&key.tenant).map_err(|e| {
        Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_key",
            format!("the key's tenant is invalid: {e}"),
        )
    })?;
    let trace = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<TraceParent>().ok());
    let batched = mode == Mode::Batch;
    let checked = incoming
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            publish::check(e, &key, trace, &app.default_source)
                .map_err(|r| if batched { r.in_batch(i) } else { r })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if app.conn.client().connection_state() != async_nats::connection::State::Connected {
        return Err(Rejection::unavailable(
            "the gateway is not connected to NATS; nothing was stored",
        ));
    }
    let publisher = Publisher::new(&app.conn);
    if batched {
        publish::check_unique(&checked)?;
        publish::batch(&publisher, &tenant, checked).await
    } else {
        let Some(event) = checked.into_iter().next() else {
            return Err(Rejection::bad_request("invalid_request", "no event"));
        };
        Ok(vec![publish::one(&publisher, &tenant, event).await?])
    }
}

/// Reads the whole body: at most `max` bytes (413), within `timeout` (408).
///
/// A body over `max` but under [`DRAIN_FACTOR`] × `max` is read to its end and dropped before
/// the 413, so the client gets the answer instead of a connection reset (an answer sent while
/// the client is still sending makes the server's TCP stack reset the connection); a larger one
/// is refused at once.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Rejection> {
    use http_body_util::BodyExt;
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {max} bytes"),
        )
    };
    let drain_up_to = max.saturating_mul(DRAIN_FACTOR) as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_up_to) {
        return Err(too_large());
    }
    let read = async {
        let mut body = body;
        let mut kept = bytes::BytesMut::new();
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Rejection::bad_request(
                    "invalid_request",
                    format!("the body could not be read: {e}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > drain_up_to {
                    return Err(too_large());
                }
                if seen <= max as u64 {
                    kept.extend_from_slice(&data);
                }
            }
        }
        if seen > max as u64 {
            return Err(too_large());
        }
        Ok(kept.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the body did not arrive within {timeout:?}"),
        )),
        Ok(result) => result,
    }
}

/// How far past the size limit a body is still read (and dropped) to answer 413 cleanly.
const DRAIN_FACTOR: usize = 4;
