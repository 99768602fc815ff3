//! Fraud team handlers.
//!
//! - `fraud-triage` on `fraud.detection.created`: keeps the detection, requests an AI
//!   explanation (`fraud.explanation.requested`) with priority HIGH for a BLOCK decision and
//!   NORMAL otherwise, and for a BLOCK also asks for an alert email (`email.alert.requested`).
//!   HIGH requests go on the `high` lane.
//! - `fraud-explain` (default lane) and `fraud-explain-high` (the `high` lane) on
//!   `fraud.explanation.requested`: ask the LLM endpoint for an explanation, keep it, and publish
//!   `fraud.explanation.completed`. A 5xx, a timeout or a connection failure is retried with
//!   backoff; a 429 is retried after its `Retry-After`; any other 4xx is permanent.
//!
//! Two groups for one event type are the priority design: HIGH requests have a consumer of
//! their own, so a backlog of NORMAL requests never delays them.
//!
//! ```no_run
//! # async fn run(conn: conveyor::Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//! use conveyor::store::FileStore;
//! use conveyor_fraud::{Fraud, FraudConfig};
//!
//! let fraud = Arc::new(Fraud::new(FraudConfig::default(), Arc::new(FileStore::new(".conveyor/store")))?);
//! let mut worker = conveyor::Worker::builder(&conn, fraud.clone());
//! for group in conveyor_fraud::groups() {
//!     worker = worker.group(group);
//! }
//! worker.build()?.run().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor::store::{Store, StoreExt};
use conveyor::{
    Context, EventOptions, Group, HandlerError, HandlerOptions, HandlerResult, RetryPolicy,
};
use conveyor_schemas::EmailAddress;
use conveyor_schemas::fraud::{
    Decision, FraudDetectionCreated, FraudExplanationCompleted, FraudExplanationRequested, Priority,
};
use conveyor_schemas::notifications::{EmailAlertRequested, EmailTemplate};
use serde::Deserialize;
use serde_json::json;

/// The lane of HIGH priority explanation requests.
pub const HIGH_LANE: &str = "high";
/// Store collection of detections (kept by triage for the explainer).
pub const DETECTIONS: &str = "fraud_detections";
/// Store collection of explanations.
pub const EXPLANATIONS: &str = "fraud_explanations";
/// The groups this crate defines.
pub const GROUPS: [&str; 3] = ["fraud-triage", "fraud-explain", "fraud-explain-high"];

/// Settings of the fraud handlers.
#[derive(Debug, Clone)]
pub struct FraudConfig {
    /// Base URL of the LLM API (`<base>/v1/chat/completions`).
    pub llm_base_url: String,
    /// The model to ask.
    pub model: String,
    /// Timeout of one LLM request.
    pub request_timeout: Duration,
    /// Who gets the alert of a blocked order (checked by [`Fraud::new`]).
    pub alert_to: String,
    /// Attempts and backoff of the explanation handlers.
    pub retry: RetryPolicy,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            llm_base_url: "http://127.0.0.1:8089".into(),
            model: "fraud-explainer-1".into(),
            request_timeout: Duration::from_secs(20),
            alert_to: "risk-team@example.com".into(),
            retry: RetryPolicy::exponential(6, Duration::from_secs(1)),
        }
    }
}

/// The fraud handlers' state: configuration, an HTTP client, the store.
pub struct Fraud {
    config: FraudConfig,
    alert_to: EmailAddress,
    http: reqwest::Client,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Fraud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fraud")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why the fraud handlers' state could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// `alert_to` is no email address.
    AlertTo(conveyor_schemas::InvalidValue),
    /// The HTTP client could not be built.
    Http(reqwest::Error),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlertTo(e) => write!(f, "invalid alert_to: {e}"),
            Self::Http(e) => write!(f, "cannot build the HTTP client: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

impl Fraud {
    /// Builds the state; fails when `alert_to` is no email address or the HTTP client cannot
    /// be built.
    pub fn new(config: FraudConfig, store: Arc<dyn Store>) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(SetupError::Http)?;
        Ok(Self {
            alert_to: EmailAddress::new(config.alert_to.as_str()).map_err(SetupError::AlertTo)?,
            config,
            http,
            store,
        })
    }

    /// The store explanations are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The state handlers of this crate run with.
pub type State = Arc<Fraud>;

/// Every group of this crate: triage, and explanation on the default and the `high` lane.
pub fn groups() -> Vec<Group<State>> {
    let explain_options = |retry: RetryPolicy| {
        HandlerOptions::default()
            .retry(retry)
            .timeout(Duration::from_secs(120))
    };
    let retry = FraudConfig::default().retry;
    vec![
        Group::new(GROUPS[0]).handle(triage),
        Group::new(GROUPS[1]).handle_with(explain, explain_options(retry.clone())),
        Group::new(GROUPS[2])
            .lane(HIGH_LANE)
            .handle_with(explain, explain_options(retry)),
    ]
}

/// Keeps the detection, requests its explanation, and alerts on a block.
pub async fn triage(d: FraudDetectionCreated, ctx: Context<State>) -> HandlerResult {
    let fraud = ctx.state();
    fraud
        .store
        .put_as(ctx.tenant(), DETECTIONS, d.detection_id.as_str(), &d)
        .await?;
    let priority = if d.decision == Decision::Block {
        Priority::High
    } else {
        Priority::Normal
    };
    let request = FraudExplanationRequested {
        detection_id: d.detection_id.clone(),
        decision: d.decision,
        priority,
        requested_at: Utc::now(),
    };
    // The follow-up's id is derived from this event's: a redelivered triage publishes a
    // duplicate the stream drops.
    let mut options = EventOptions::default();
    if priority == Priority::High {
        options = options.lane(HIGH_LANE);
    }
    ctx.publish_with(&request, options).await?;
    if d.decision == Decision::Block {
        let variables = BTreeMap::from([
            ("order_id".to_owned(), d.order_id.to_string()),
            ("detection_id".to_owned(), d.detection_id.to_string()),
            ("score".to_owned(), d.score.to_string()),
            (
                "amount".to_owned(),
                format!("{} {}", d.amount.amount_minor, d.amount.currency),
            ),
            ("tenant".to_owned(), ctx.tenant().to_string()),
        ]);
        let alert = EmailAlertRequested {
            alert_id: conveyor_schemas::Id::new(format!("fraud-{}", d.detection_id))
                .map_err(HandlerError::permanent)?,
            to: vec![fraud.alert_to.clone()],
            template: EmailTemplate::FraudBlocked,
            variables,
            requested_at: Utc::now(),
        };
        ctx.publish(&alert).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    model: String,
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChatMessage,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    content: String,
}

/// Asks the LLM to explain a decision, keeps the explanation, and announces it.
pub async fn explain(r: FraudExplanationRequested, ctx: Context<State>) -> HandlerResult {
    let fraud = ctx.state();
    let id = r.detection_id.as_str();
    if let Some(done) = fraud.store.get(ctx.tenant(), EXPLANATIONS, id).await? {
        tracing::info!(detection = id, "explanation exists; not asking again");
        return announce(&ctx, &r, &done.value).await;
    }
    let detection: Option<FraudDetectionCreated> =
        fraud.store.get_as(ctx.tenant(), DETECTIONS, id).await?;
    let prompt = match &detection {
        Some(d) => format!(
            "Explain why order {} was scored {} and decided {:?}.\nSignals: {}",
            d.order_id.as_str(),
            d.score,
            r.decision,
            serde_json::to_string(&d.signals).unwrap_or_default()
        ),
        None => format!("Explain fraud decision {:?} of detection {id}.", r.decision),
    };
    let url = format!(
        "{}/v1/chat/completions",
        fraud.config.llm_base_url.trim_end_matches('/')
    );
    let response = fraud
        .http
        .post(&url)
        .header("traceparent", ctx.traceparent())
        .json(&json!({
            "model": fraud.config.model,
            "messages": [
                {"role": "system", "content": "You explain fraud decisions to risk analysts in two sentences."},
                {"role": "user", "content": prompt},
            ],
        }))
        .send()
        .await
        .map_err(|e| HandlerError::transient(format!("LLM request to {url} failed: {e}")))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    if let Some(e) = HandlerError::for_http_response(status, retry_after, format!("LLM at {url}")) {
        return Err(e);
    }
    let answer: ChatResponse = response
        .json()
        .await
        .map_err(|e| HandlerError::transient(format!("LLM answer unreadable: {e}")))?;
    let text = answer
        .choices
        .into_iter()
        .next()
        .map(|c| c.message.content)
        .ok_or_else(|| HandlerError::transient("LLM answer has no choices"))?;
    let record = json!({
        "detection_id": id,
        "decision": r.decision,
        "priority": r.priority,
        "explanation": text,
        "model": answer.model,
        "attempts": ctx.attempt(),
    });
    fraud
        .store
        .put(ctx.tenant(), EXPLANATIONS, id, &record)
        .await?;
    announce(&ctx, &r, &record).await
}

async fn announce(
    ctx: &Context<State>,
    r: &FraudExplanationRequested,
    record: &serde_json::Value,
) -> HandlerResult {
    let completed = FraudExplanationCompleted {
        detection_id: r.detection_id.clone(),
        explanation: record["explanation"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        model: record["model"].as_str().unwrap_or_default().to_owned(),
        completed_at: Utc::now(),
    };
    ctx.publish(&completed).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use conveyor::store::MemoryStore;
    use conveyor::testing::TestDelivery;
    use conveyor::{Retry, TenantId};
    use conveyor_llm_stub::{LlmStub, StubOptions};
    use conveyor_schemas::fraud::Signal;
    use conveyor_schemas::{Id, Money};

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn detection(decision: Decision) -> FraudDetectionCreated {
        FraudDetectionCreated {
            detection_id: Id::new("d-1").unwrap(),
            order_id: Id::new("o-1").unwrap(),
            amount: Money::new(99_900, "EUR").unwrap(),
            score: 930,
            decision,
            signals: vec![Signal {
                name: "card_testing".into(),
                weight_bps: 4200,
            }],
            detected_at: Utc::now(),
        }
    }

    fn state(base: &str) -> State {
        let config = FraudConfig {
            llm_base_url: base.into(),
            request_timeout: Duration::from_millis(500),
            ..FraudConfig::default()
        };
        Arc::new(Fraud::new(config, Arc::new(MemoryStore::default())).unwrap())
    }

    fn request(priority: Priority) -> FraudExplanationRequested {
        FraudExplanationRequested {
            detection_id: Id::new("d-1").unwrap(),
            decision: Decision::Block,
            priority,
            requested_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_block_is_explained_first_and_alerted() {
        let run = TestDelivery::new(acme(), detection(Decision::Block))
            .run(triage, state("http://127.0.0.1:9"))
            .await;
        run.result.unwrap();
        assert_eq!(run.published.len(), 2);
        let explain = &run.published[0];
        assert_eq!(explain.event_type, "fraud.explanation.requested");
        assert_eq!(explain.data["priority"], "HIGH");
        assert_eq!(explain.lane.as_deref(), Some(HIGH_LANE));
        let alert = &run.published[1];
        assert_eq!(alert.event_type, "email.alert.requested");
        assert_eq!(alert.data["template"], "fraud_blocked");
        assert_eq!(alert.data["variables"]["order_id"], "o-1");
    }

    #[tokio::test]
    async fn a_review_is_explained_in_turn_without_alert() {
        let run = TestDelivery::new(acme(), detection(Decision::Review))
            .run(triage, state("http://127.0.0.1:9"))
            .await;
        run.result.unwrap();
        assert_eq!(run.published.len(), 1);
        assert_eq!(run.published[0].data["priority"], "NORMAL");
        assert_eq!(run.published[0].lane, None);
    }

    #[tokio::test]
    async fn the_explanation_is_stored_and_announced() {
        let stub = LlmStub::start("127.0.0.1:0".parse().unwrap(), StubOptions::default())
            .await
            .unwrap();
        let s = state(&stub.base_url());
        TestDelivery::new(acme(), detection(Decision::Block))
            .run(triage, s.clone())
            .await
            .result
            .unwrap();
        let run = TestDelivery::new(acme(), request(Priority::High))
            .run(explain, s.clone())
            .await;
        run.result.unwrap();
        let stored = s
            .store
            .get(&acme(), EXPLANATIONS, "d-1")
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored.value["explanation"]
                .as_str()
                .unwrap()
                .contains("Explain why order o-1 was scored 930"),
            "{stored:?}"
        );
        assert_eq!(run.published[0].event_type, "fraud.explanation.completed");
        // A redelivery does not ask the LLM again.
        TestDelivery::new(acme(), request(Priority::High))
            .run(explain, s)
            .await
            .result
            .unwrap();
        assert_eq!(stub.requests(), 1);
    }

    #[tokio::test]
    async fn server_errors_and_timeouts_retry_with_backoff() {
        let failing = LlmStub::start(
            "127.0.0.1:0".parse().unwrap(),
            StubOptions {
                fail_first: 1,
                ..StubOptions::default()
            },
        )
        .await
        .unwrap();
        let err = TestDelivery::new(acme(), request(Priority::Normal))
            .run(explain, state(&failing.base_url()))
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Backoff);
        assert!(err.to_string().contains("HTTP 500"), "{err}");

        let slow = LlmStub::start(
            "127.0.0.1:0".parse().unwrap(),
            StubOptions {
                delay: Duration::from_secs(3),
                ..StubOptions::default()
            },
        )
        .await
        .unwrap();
        let err = TestDelivery::new(acme(), request(Priority::Normal))
            .run(explain, state(&slow.base_url()))
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Backoff);
        assert!(err.to_string().contains("LLM request"), "{err}");
    }

    #[tokio::test]
    async fn a_429_is_retried_after_its_retry_after() {
        let limited = LlmStub::start(
            "127.0.0.1:0".parse().unwrap(),
            StubOptions {
                rate_limit_next: 1,
                retry_after_secs: 7,
                ..StubOptions::default()
            },
        )
        .await
        .unwrap();
        let err = TestDelivery::new(acme(), request(Priority::Normal))
            .run(explain, state(&limited.base_url()))
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::After(Duration::from_secs(7)));
    }
}
