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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor::store::Store;
use conveyor::{Context, Group, HandlerError, HandlerOptions, HandlerResult, Retry, RetryPolicy};
use conveyor_schemas::notifications::{
    EmailAlertRequested, EmailTemplate, WebhookDeliveryFailed, WebhookDeliveryRequested,
};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

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

/// Where rendered emails go.
pub trait Outbox: Send + Sync + 'static {
    /// Sends (or stores) one message. Sending the same message id twice must not send it twice.
    fn send<'a>(&'a self, message: &'a EmailMessage) -> BoxFuture<'a, Result<(), std::io::Error>>;
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailMessage {
    /// A unique id (the alert id); also the `Message-ID` local part.
    pub id: String,
    /// The tenant it is for.
    pub tenant: String,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl EmailMessage {
    /// The message in RFC 5322 form.
    pub fn to_rfc5322(&self) -> String {
        format!(
            "Message-ID: <{id}@conveyor>\r\nDate: {date}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nX-Conveyor-Tenant: {tenant}\r\n\r\n{body}\r\n",
            id = self.id,
            date = Utc::now().to_rfc2822(),
            from = self.from,
            to = self.to.join(", "),
            subject = self.subject,
            tenant = self.tenant,
            body = self.body.replace('\n', "\r\n"),
        )
    }
}

/// An [`Outbox`] that writes `<dir>/<tenant>/<id>.eml`.
#[derive(Debug, Clone)]
pub struct DirectoryOutbox {
    dir: PathBuf,
}

impl DirectoryOutbox {
    /// An outbox under `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file a message goes to.
    pub fn path_of(&self, message: &EmailMessage) -> PathBuf {
        self.dir.join(&message.tenant).join(format!(
            "{}.eml",
            conveyor::history::escape_token(&message.id)
        ))
    }
}

impl Outbox for DirectoryOutbox {
    fn send<'a>(&'a self, message: &'a EmailMessage) -> BoxFuture<'a, Result<(), std::io::Error>> {
        Box::pin(async move {
            let path = self.path_of(message);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let tmp = path.with_extension("eml.tmp");
            tokio::fs::write(&tmp, message.to_rfc5322()).await?;
            tokio::fs::rename(&tmp, &path).await
        })
    }
}

/// An [`Outbox`] that sends through an SMTP server.
pub struct SmtpOutbox {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
}

impl std::fmt::Debug for SmtpOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpOutbox").finish_non_exhaustive()
    }
}

impl SmtpOutbox {
    /// An outbox sending through the server of `url`: `smtp://host:25` (plain, e.g. a local
    /// catcher), `smtp://user:pass@host:587?tls=required` (STARTTLS) or
    /// `smtps://user:pass@host:465` (TLS).
    pub fn from_url(url: &str) -> Result<Self, lettre::transport::smtp::Error> {
        Ok(Self {
            transport: lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)?
                .timeout(Some(Duration::from_secs(30)))
                .build(),
        })
    }

    fn build(message: &EmailMessage) -> Result<lettre::Message, std::io::Error> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mut builder = lettre::Message::builder()
            .message_id(Some(format!("<{}@conveyor>", message.id)))
            .from(
                message
                    .from
                    .parse()
                    .map_err(|e| invalid(format!("from: {e}")))?,
            )
            .subject(message.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        for to in &message.to {
            builder = builder.to(to.parse().map_err(|e| invalid(format!("to {to}: {e}")))?);
        }
        builder
            .body(message.body.clone())
            .map_err(|e| invalid(e.to_string()))
    }
}

impl Outbox for SmtpOutbox {
    fn send<'a>(&'a self, message: &'a EmailMessage) -> BoxFuture<'a, Result<(), std::io::Error>> {
        use lettre::AsyncTransport;
        Box::pin(async move {
            let email = Self::build(message)?;
            self.transport
                .send(email)
                .await
                .map(|_| ())
                .map_err(|e| std::io::Error::other(format!("SMTP: {e}")))
        })
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

/// `t=<unix>,v1=<hex hmac-sha256(secret, "<unix>.<body>")>`.
pub fn sign(secret: &str, unix: i64, body: &[u8]) -> String {
    format!("t={unix},v1={}", hex(&mac(secret, unix, body)))
}

fn mac(secret: &str, unix: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return Vec::new(),
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a `Conveyor-Signature` header against `body`, as a webhook receiver should: the
/// signature must match and its time be within `tolerance` of now.
pub fn verify_signature(secret: &str, header: &str, body: &[u8], tolerance: Duration) -> bool {
    let mut unix = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => unix = t.parse::<i64>().ok(),
            Some(("v1", s)) => v1 = Some(s),
            _ => {}
        }
    }
    let (Some(unix), Some(v1)) = (unix, v1) else {
        return false;
    };
    let age = (Utc::now().timestamp() - unix).unsigned_abs();
    if age > tolerance.as_secs() {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: Vec<u8> = (0..v1.len() / 2)
        .filter_map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    mac.verify_slice(&expected).is_ok()
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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use conveyor::TenantId;
    use conveyor::store::MemoryStore;
    use conveyor::testing::TestDelivery;
    use conveyor_schemas::{HttpUrl, Id};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    /// A webhook receiver answering `status` (and sleeping `delay` first), recording requests.
    async fn receiver(
        status: u16,
        delay: Duration,
    ) -> (String, Arc<Mutex<Vec<(HeaderMap, String)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let log = log.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    log.lock().unwrap().push((headers, body));
                    let mut h = HeaderMap::new();
                    h.insert("Retry-After", "30".parse().unwrap());
                    (StatusCode::from_u16(status).unwrap(), h, "")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), seen)
    }

    fn state(timeout: Duration, dir: &std::path::Path) -> (State, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::default());
        let config = NotificationsConfig {
            webhook_timeout: timeout,
            ..NotificationsConfig::default()
        };
        let n =
            Notifications::new(config, store.clone(), Arc::new(DirectoryOutbox::new(dir))).unwrap();
        (Arc::new(n), store)
    }

    fn webhook(url: &str) -> WebhookDeliveryRequested {
        WebhookDeliveryRequested {
            delivery_id: Id::new("wd-1").unwrap(),
            subscription_id: Id::new("sub-1").unwrap(),
            url: HttpUrl::new(url).unwrap(),
            event_name: "order.created".into(),
            body: r#"{"order":"o-1"}"#.into(),
            requested_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn delivers_with_a_verifiable_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (url, seen) = receiver(204, Duration::ZERO).await;
        let (s, store) = state(Duration::from_secs(2), dir.path());
        TestDelivery::new(acme(), webhook(&url))
            .run(deliver_webhook, s)
            .await
            .result
            .unwrap();
        let (headers, body) = seen.lock().unwrap()[0].clone();
        let sig = headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
        let secret = NotificationsConfig::default().webhook_secret;
        assert!(verify_signature(
            &secret,
            sig,
            body.as_bytes(),
            Duration::from_secs(300)
        ));
        assert!(!verify_signature(
            "other",
            sig,
            body.as_bytes(),
            Duration::from_secs(300)
        ));
        assert!(!verify_signature(
            &secret,
            sig,
            b"tampered",
            Duration::from_secs(300)
        ));
        let record = store
            .get(&acme(), DELIVERIES, "wd-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.value["status"], 204);
    }

    #[tokio::test]
    async fn a_4xx_is_permanent_and_announced_but_408_and_429_retry() {
        let dir = tempfile::tempdir().unwrap();
        let (gone, _) = receiver(410, Duration::ZERO).await;
        let (s, store) = state(Duration::from_secs(2), dir.path());
        let run = TestDelivery::new(acme(), webhook(&gone))
            .run(deliver_webhook, s.clone())
            .await;
        let err = run.result.unwrap_err();
        assert_eq!(err.retry(), Retry::Never);
        assert!(err.to_string().contains("HTTP 410"), "{err}");
        assert_eq!(run.published[0].event_type, "webhook.delivery.failed");
        assert_eq!(run.published[0].data["last_status"], 410);
        let record = store
            .get(&acme(), DELIVERIES, "wd-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.value["delivered"], false);

        let (timeout, _) = receiver(408, Duration::ZERO).await;
        let run = TestDelivery::new(acme(), webhook(&timeout))
            .run(deliver_webhook, s.clone())
            .await;
        assert_eq!(run.result.unwrap_err().retry(), Retry::Backoff);
        assert!(run.published.is_empty(), "attempts left: not given up");

        let (limited, _) = receiver(429, Duration::ZERO).await;
        let run = TestDelivery::new(acme(), webhook(&limited))
            .run(deliver_webhook, s)
            .await;
        assert_eq!(
            run.result.unwrap_err().retry(),
            Retry::After(Duration::from_secs(30))
        );
    }

    #[tokio::test]
    async fn server_errors_and_timeouts_retry_and_the_last_attempt_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let (failing, _) = receiver(503, Duration::ZERO).await;
        let (s, _) = state(Duration::from_millis(300), dir.path());
        let err = TestDelivery::new(acme(), webhook(&failing))
            .run(deliver_webhook, s.clone())
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Backoff);
        let (slow, _) = receiver(200, Duration::from_secs(2)).await;
        let run = TestDelivery::new(acme(), webhook(&slow))
            .run(deliver_webhook, s.clone())
            .await;
        let err = run.result.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        let run = TestDelivery::new(acme(), webhook(&failing))
            .attempt(8, 8)
            .run(deliver_webhook, s)
            .await;
        assert!(run.result.is_err());
        assert_eq!(run.published[0].data["last_status"], 503);
        assert_eq!(run.published[0].data["attempts"], 8);
    }

    /// A minimal SMTP server: accepts one session and returns what DATA carried.
    async fn smtp_server() -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let session = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut data = String::new();
            let mut in_data = false;
            while let Some(line) = lines.next_line().await.unwrap() {
                if in_data {
                    if line == "." {
                        in_data = false;
                        write.write_all(b"250 queued\r\n").await.unwrap();
                    } else {
                        data.push_str(&line);
                        data.push('\n');
                    }
                    continue;
                }
                let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                    "EHLO" | "HELO" => b"250 test\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 go ahead\r\n"
                    }
                    "QUIT" => {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    }
                    _ => b"250 ok\r\n",
                };
                write.write_all(reply).await.unwrap();
            }
            data
        });
        (url, session)
    }

    #[tokio::test]
    async fn an_alert_is_sent_over_smtp_once() {
        let (url, session) = smtp_server().await;
        let store = Arc::new(MemoryStore::default());
        let n = Notifications::new(
            NotificationsConfig::default(),
            store,
            Arc::new(SmtpOutbox::from_url(&url).unwrap()),
        )
        .unwrap();
        let s = Arc::new(n);
        let alert = EmailAlertRequested {
            alert_id: Id::new("report-1").unwrap(),
            to: vec![conveyor_schemas::EmailAddress::new("ops@example.com").unwrap()],
            template: EmailTemplate::DailyReport,
            variables: BTreeMap::from([
                ("date".into(), "2026-11-21".into()),
                ("summary".into(), "12 explanations".into()),
            ]),
            requested_at: Utc::now(),
        };
        TestDelivery::new(acme(), alert.clone())
            .run(send_email, s.clone())
            .await
            .result
            .unwrap();
        let data = session.await.unwrap();
        assert!(
            data.contains("Subject: [acme] Daily report 2026-11-21"),
            "{data}"
        );
        assert!(data.contains("12 explanations"), "{data}");
        assert!(data.contains("Message-ID: <report-1@conveyor>"), "{data}");
        // A redelivery sends nothing (the server is gone: sending would fail).
        TestDelivery::new(acme(), alert)
            .run(send_email, s)
            .await
            .result
            .unwrap();
    }

    #[tokio::test]
    async fn an_alert_is_rendered_into_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = state(Duration::from_secs(1), dir.path());
        let alert = EmailAlertRequested {
            alert_id: Id::new("fraud-d-1").unwrap(),
            to: vec![conveyor_schemas::EmailAddress::new("risk@example.com").unwrap()],
            template: EmailTemplate::FraudBlocked,
            variables: BTreeMap::from([
                ("order_id".into(), "o-1".into()),
                ("amount".into(), "99900 EUR".into()),
                ("score".into(), "930".into()),
                ("detection_id".into(), "d-1".into()),
            ]),
            requested_at: Utc::now(),
        };
        TestDelivery::new(acme(), alert.clone())
            .run(send_email, s.clone())
            .await
            .result
            .unwrap();
        let eml = std::fs::read_to_string(dir.path().join("acme/fraud-d-1.eml")).unwrap();
        assert!(
            eml.contains("Subject: [acme] Order o-1 blocked by fraud screening"),
            "{eml}"
        );
        assert!(eml.contains("To: risk@example.com"));
        assert!(eml.contains("fraud score 930"));

        let mut missing = alert;
        missing.alert_id = Id::new("fraud-d-2").unwrap();
        missing.variables.remove("score");
        let err = TestDelivery::new(acme(), missing)
            .run(send_email, s)
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Never);
        assert!(err.to_string().contains("score"));
    }

    #[tokio::test]
    async fn the_catalog_example_of_an_alert_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = state(Duration::from_secs(1), dir.path());
        let entry = conveyor_schemas::find("email.alert.requested").unwrap();
        let example: EmailAlertRequested = serde_json::from_value(entry.example()).unwrap();
        let id = example.alert_id.to_string();
        TestDelivery::new(acme(), example)
            .run(send_email, s)
            .await
            .result
            .unwrap();
        assert!(dir.path().join(format!("acme/{id}.eml")).exists());
    }
}
