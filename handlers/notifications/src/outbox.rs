//! Where rendered emails go: [`Outbox`], a directory of `.eml` files or an SMTP server.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;

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
