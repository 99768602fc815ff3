//! Every refusal of the gateway: an HTTP status, a stable code, a message, and where it applies,
//! answered as a JSON body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::outcome::EventResult;

/// A refused request.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Boxed: a refusal travels in every `Result` of the request's path.
    pub(crate) extra: Box<Extra>,
}

/// The parts of a refusal that only some have.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    /// JSON Pointer into the request body of what is wrong (`/data/lines/0/quantity`; in a
    /// batch `/3/type`).
    pub(crate) pointer: Option<String>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) retry_after: Option<u64>,
    /// For a request that was refused after publishing began: what happened to each event.
    pub(crate) events: Option<Vec<EventResult>>,
}

/// One way a payload breaks its schema.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Violation {
    pub(crate) pointer: String,
    pub(crate) message: String,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Box::default(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn at(mut self, pointer: impl Into<String>) -> Self {
        self.extra.pointer = Some(pointer.into());
        self
    }

    /// Prefixes the pointer (and the violations') with `/<index>`: the event's place in a batch.
    pub(crate) fn in_batch(mut self, index: usize) -> Self {
        let prefix = format!("/{index}");
        self.extra.pointer = Some(format!(
            "{prefix}{}",
            self.extra.pointer.take().unwrap_or_default()
        ));
        for v in &mut self.extra.violations {
            v.pointer = format!("{prefix}{}", v.pointer);
        }
        self.message = format!("event {index} of the batch: {}", self.message);
        self
    }

    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.extra.retry_after = Some(seconds.max(1));
        self
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(2)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<&'a [EventResult]>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    violations: &'a [Violation],
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = Body {
            error: ErrorBody {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
                pointer: self.extra.pointer.as_deref(),
                violations: &self.extra.violations,
            },
            events: self.extra.events.as_deref(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.extra.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
