//! Notification handlers.
//!
//! - `webhooks` on `webhook.delivery.requested`: POSTs the body to the subscriber's URL with an
//!   HMAC-SHA256 signature (`Conveyor-Signature: t=<unix>,v1=<hex>` over `"<unix>.<body>"`, see
//!   [`sign`] and [`verify_signature`]), a per-request timeout, and retries with exponential
//!   backoff. 2xx is delivered; 408, 429 (after its `Retry-After`), 5xx, timeouts and
//!   connection failures are retried; any other 4xx is permanent. An undeliverable webhook
//!   (permanent, or out of attempts) is recorded, announced as `webhook.delivery.failed`, and
//!   dead-lettered with its HTTP status.
//! - `email` on `email.alert.requested`: renders the template with the alert's variables and
//!   writes the message to the outbox ([`Outbox`]; [`DirectoryOutbox`] writes one `.eml` file
//!   per alert).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor::store::Store;
use conveyor::{Context, Group, HandlerError, HandlerOptions, HandlerResult, Retry, RetryPolicy};
use conveyor_schemas::notifications::{
    EmailAlertRequested, EmailTemplate, WebhookDeliveryFailed, WebhookDeliveryRequested,
};
use serde_json::json;

mod outbox;
mod signature;

pub use outbox::{DirectoryOutbox, EmailMessage, Outbox, SmtpOutbox};
pub use signature::{sign, verify_signature};

/// The groups this crate defines.
pub const GROUPS: [&str; 2] = ["webhooks", "email"];
/// Store collection of webhook delivery records.
pub const DELIVERIES: &str = "webhook_deliveries";
/// Store collection of sent email alerts.
pub const EMAILS: &str = "emails_sent";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "Conveyor-Signature";

/// Settings of the notification handlers.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// The secret webhook signatures are made with (share it with subscribers).
    pub webhook_secret: String,
    /// Timeout of one webhook request.
    pub webhook_timeout: Duration,
    /// Attempts and backoff of webhook deliveries.
    pub webhook_retry: RetryPolicy,
    /// The sender of email alerts.
    pub email_from: String,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            webhook_secret: "change-me-webhook-secret".into(),
            webhook_timeout: Duration::from_secs(10),
            webhook_retry: RetryPolicy::exponential(8, Duration::from_secs(2))
                .with_max_delay(Duration::from_secs(600)),
            email_from: "Conveyor Alerts <alerts@example.com>".into(),
        }
    }
}

/// The notification handlers' state.
pub struct Notifications {
    config: NotificationsConfig,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    outbox: Arc<dyn Outbox>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl Notifications {
    /// Builds the state.
    pub fn new(
        config: NotificationsConfig,
        store: Arc<dyn Store>,
        outbox: Arc<dyn Outbox>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .build()?;
        Ok(Self {
            config,
            http,
            store,
            outbox,
        })
    }
}

/// The state handlers of this crate run with.
pub type State = Arc<Notifications>;

/// Every group of this crate, with the webhook retry policy of `config`.
pub fn groups(config: &NotificationsConfig) -> Vec<Group<State>> {
    vec![
        Group::new(GROUPS[0]).handle_with(
            deliver_webhook,
            HandlerOptions::default()
                .retry(config.webhook_retry.clone())
                .timeout(config.webhook_timeout + Duration::from_secs(5)),
        ),
        Group::new(GROUPS[1]).handle(send_email),
    ]
}

/// Delivers one webhook.
pub async fn deliver_webhook(w: WebhookDeliveryRequested, ctx: Context<State>) -> HandlerResult {
    let n = ctx.state();
    let result = post_webhook(n, &w, &ctx).await;
    let (status, error) = match &result {
        Ok(status) => {
            let record = json!({
                "delivery_id": w.delivery_id, "subscription_id": w.subscription_id,
                "url": w.url, "event_name": w.event_name, "status": status,
                "attempts": ctx.attempt(), "delivered": true,
            });
            n.store
                .put(ctx.tenant(), DELIVERIES, w.delivery_id.as_str(), &record)
                .await?;
            return Ok(());
        }
        Err((status, e)) => (*status, e),
    };
    let gives_up = error.retry() == Retry::Never || ctx.is_last_attempt();
    if gives_up {
        let record = json!({
            "delivery_id": w.delivery_id, "subscription_id": w.subscription_id,
            "url": w.url, "event_name": w.event_name, "status": status,
            "attempts": ctx.attempt(), "delivered": false, "error": error.to_string(),
        });
        n.store
            .put(ctx.tenant(), DELIVERIES, w.delivery_id.as_str(), &record)
            .await?;
        let failed = WebhookDeliveryFailed {
            delivery_id: w.delivery_id.clone(),
            subscription_id: w.subscription_id.clone(),
            url: w.url.clone(),
            last_status: status,
            error: error.to_string(),
            attempts: ctx.attempt(),
            failed_at: Utc::now(),
        };
        ctx.publish(&failed).await?;
    }
    result.map(|_| ()).map_err(|(_, e)| e)
}

/// POSTs the webhook; the status it got and the failure, if any.
async fn post_webhook(
    n: &Notifications,
    w: &WebhookDeliveryRequested,
    ctx: &Context<State>,
) -> Result<u16, (Option<u16>, HandlerError)> {
    let body = w.body.clone().into_bytes();
    let signature = sign(&n.config.webhook_secret, Utc::now().timestamp(), &body);
    let url = w.url.as_str();
    let response = n
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("Conveyor-Delivery-Id", w.delivery_id.as_str())
        .header("Conveyor-Event", w.event_name.as_str())
        .header("traceparent", ctx.traceparent())
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "failed"
            };
            (
                None,
                HandlerError::transient(format!("webhook POST to {url} {what}: {e}")),
            )
        })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    match HandlerError::for_http_response(status, retry_after, format!("webhook endpoint {url}")) {
        Some(e) => Err((Some(status), e)),
        None => Ok(status),
    }
}

/// Subject and body of a template, with `{{name}}` placeholders.
fn template(t: EmailTemplate) -> (&'static str, &'static str) {
    match t {
        EmailTemplate::FraudBlocked => (
            "[{{tenant}}] Order {{order_id}} blocked by fraud screening",
            "Order {{order_id}} ({{amount}}) was blocked: fraud score {{score}}.\nDetection: {{detection_id}}.\nAn AI explanation follows in the dashboard.\n",
        ),
        EmailTemplate::DailyReport => (
            "[{{tenant}}] Daily report {{date}}",
            "The daily report for {{date}} is ready.\n{{summary}}\n",
        ),
        EmailTemplate::WebhookFailing => (
            "[{{tenant}}] Webhook endpoint {{url}} is failing",
            "Deliveries to {{url}} keep failing (last status {{status}}).\n",
        ),
        EmailTemplate::RightsExpiring => (
            "[{{tenant}}] Usage rights of {{asset}} expire on {{expires_on}}",
            "The usage rights of asset {{asset}} expire on {{expires_on}}.\n",
        ),
    }
}

/// Fills `{{name}}` placeholders; a placeholder without a value is an error naming it.
pub fn render(
    text: &str,
    variables: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed {{ in template".into());
        };
        let name = after[..end].trim();
        match variables.get(name) {
            Some(v) => out.push_str(v),
            None => return Err(format!("template variable {name:?} has no value")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders an email alert and puts it in the outbox, once: an alert already sent (a redelivery)
/// is not sent again.
pub async fn send_email(a: EmailAlertRequested, ctx: Context<State>) -> HandlerResult {
    let n = ctx.state();
    if n.store
        .get(ctx.tenant(), EMAILS, a.alert_id.as_str())
        .await?
        .is_some()
    {
        tracing::info!(alert = %a.alert_id, "alert already sent");
        return Ok(());
    }
    let mut variables = a.variables.clone();
    variables
        .entry("tenant".into())
        .or_insert_with(|| ctx.tenant().to_string());
    let (subject, body) = template(a.template);
    let message = EmailMessage {
        id: a.alert_id.to_string(),
        tenant: ctx.tenant().to_string(),
        from: n.config.email_from.clone(),
        to: a.to.iter().map(ToString::to_string).collect(),
        subject: render(subject, &variables).map_err(HandlerError::permanent)?,
        body: render(body, &variables).map_err(HandlerError::permanent)?,
    };
    n.outbox.send(&message).await?;
    let record = json!({"alert_id": a.alert_id, "template": a.template, "to": message.to, "subject": message.subject});
    n.store
        .put(ctx.tenant(), EMAILS, a.alert_id.as_str(), &record)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
