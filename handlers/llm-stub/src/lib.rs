//! A local stand-in for an LLM HTTP API, for development and tests.
//!
//! It speaks the small part of an OpenAI-style API the handlers use:
//! - `POST /v1/chat/completions` `{model, messages: [{role, content}]}` →
//!   `{model, choices: [{message: {role, content}}]}`: a deterministic answer derived from the
//!   last user message;
//! - `POST /v1/audio/transcriptions` `{url, language}` → `{language, text, segments: [{start_ms,
//!   end_ms, text}]}`;
//! - `GET /health` → `ok`.
//!
//! [`StubOptions`] injects failures: the first N requests answer 500, the next M answer 429 with
//! `Retry-After`, every answer can be delayed. The counters are shared by all endpoints.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let stub = conveyor_llm_stub::LlmStub::start("127.0.0.1:0".parse().unwrap(), Default::default()).await?;
//! println!("LLM stub on {}", stub.base_url());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Failure injection and latency.
#[derive(Debug, Clone, Default)]
pub struct StubOptions {
    /// The first this-many requests answer `500 Internal Server Error`.
    pub fail_first: u32,
    /// The next this-many requests answer `429 Too Many Requests`.
    pub rate_limit_next: u32,
    /// The `Retry-After` (seconds) of a 429.
    pub retry_after_secs: u64,
    /// Every answer waits this long first.
    pub delay: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    options: StubOptions,
    requests: AtomicU64,
    failed: AtomicU32,
    limited: AtomicU32,
}

/// A running stub; stops when dropped.
#[derive(Debug)]
pub struct LlmStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
}

impl LlmStub {
    /// Starts the stub on `addr` (port 0 picks a free one).
    pub async fn start(addr: SocketAddr, options: StubOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/audio/transcriptions", post(transcribe))
            .route("/health", get(|| async { "ok\n" }))
            .with_state(shared.clone());
        let token = CancellationToken::new();
        let stop = token.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "LLM stub failed");
            }
        });
        Ok(Self {
            addr,
            shared,
            token,
        })
    }

    /// `http://<addr>`: the base URL to configure handlers with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far (failed ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

impl Drop for LlmStub {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Counts the request, waits the configured delay, and answers a failure if one is due.
async fn injected(shared: &Shared) -> Option<Response> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if !shared.options.delay.is_zero() {
        tokio::time::sleep(shared.options.delay).await;
    }
    let o = &shared.options;
    if shared
        .failed
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < o.fail_first).then_some(n + 1)
        })
        .is_ok()
    {
        return Some((StatusCode::INTERNAL_SERVER_ERROR, "model overloaded\n").into_response());
    }
    if shared
        .limited
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < o.rate_limit_next).then_some(n + 1)
        })
        .is_ok()
    {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(o.retry_after_secs));
        return Some((StatusCode::TOO_MANY_REQUESTS, headers, "rate limited\n").into_response());
    }
    None
}

/// A chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A chat completion request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model asked for.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
}

async fn chat(State(shared): State<Arc<Shared>>, body: Json<ChatRequest>) -> Response {
    if let Some(failure) = injected(&shared).await {
        return failure;
    }
    let prompt = body
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let content = answer(prompt);
    Json(json!({
        "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }))
    .into_response()
}

/// A deterministic answer: the first line of the prompt, summarised.
fn answer(prompt: &str) -> String {
    let first = prompt.lines().next().unwrap_or("").trim();
    let words = prompt.split_whitespace().count();
    format!("Summary of a {words}-word request: {first}")
}

#[derive(Debug, Deserialize)]
struct TranscriptionRequest {
    url: String,
    #[serde(default)]
    language: Option<String>,
}

async fn transcribe(
    State(shared): State<Arc<Shared>>,
    body: Json<TranscriptionRequest>,
) -> Response {
    if let Some(failure) = injected(&shared).await {
        return failure;
    }
    let name = body.url.rsplit('/').next().unwrap_or("video");
    let lines = [
        format!("Welcome to {name}."),
        "Today we look at the product in detail.".to_owned(),
        "Thanks for watching.".to_owned(),
    ];
    let segments: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let start = i as u64 * 4000;
            json!({"start_ms": start, "end_ms": start + 3500, "text": text})
        })
        .collect();
    Json(json!({
        "language": body.language.clone().unwrap_or_else(|| "en".into()),
        "text": lines.join(" "),
        "segments": segments,
    }))
    .into_response()
}
