//! The NATS connection the framework works through.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::broadcast;

use crate::error::Error;

/// Default bound for JetStream API requests and awaited publish acks.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why connecting failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The server address could not be parsed.
    InvalidAddress,
    /// The server rejected the credentials.
    Authorization,
    /// The server could not be reached (refused, unreachable, timed out).
    Unreachable,
    /// TLS setup or handshake failed.
    Tls,
    /// The connection options are inconsistent (flags that go together given alone) or a
    /// credentials file cannot be read.
    InvalidOptions,
    /// Anything else.
    Other,
}

impl fmt::Display for ConnectErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidAddress => "invalid server address",
            Self::Authorization => "authorization failed",
            Self::Unreachable => "server unreachable",
            Self::Tls => "TLS failed",
            Self::InvalidOptions => "invalid connection options",
            Self::Other => "connect failed",
        })
    }
}

/// A failed connection attempt.
pub type ConnectError = Error<ConnectErrorKind>;

/// Permission violations the server reported, so a publish that only times out can be reported as
/// "permission denied" (async-nats surfaces a violation as a server error event plus a timeout).
#[derive(Debug)]
pub(crate) struct Violations {
    tx: broadcast::Sender<Arc<str>>,
    recent: Mutex<VecDeque<(Instant, Arc<str>)>>,
    /// The last subscription the server refused (e.g. the reply inbox of a user without
    /// `--inbox-prefix`), and when.
    subscribe: Mutex<Option<(Instant, String)>>,
}

const RECENT_VIOLATIONS: usize = 64;
const VIOLATION_MEMORY: Duration = Duration::from_secs(60);

impl Violations {
    fn new() -> Self {
        Self {
            tx: broadcast::channel(64).0,
            recent: Mutex::new(VecDeque::new()),
            subscribe: Mutex::new(None),
        }
    }

    fn record(&self, subject: &str) {
        let subject: Arc<str> = subject.into();
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_VIOLATIONS {
                recent.pop_front();
            }
            recent.push_back((Instant::now(), subject.clone()));
        }
        let _ = self.tx.send(subject);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    fn latest(&self) -> Option<String> {
        self.recent.lock().ok().and_then(|recent| {
            recent
                .back()
                .filter(|(at, _)| at.elapsed() < VIOLATION_MEMORY)
                .map(|(_, s)| s.to_string())
        })
    }

    fn record_subscribe(&self, subject: &str) {
        if let Ok(mut s) = self.subscribe.lock() {
            *s = Some((Instant::now(), subject.to_owned()));
        }
    }

    /// A subscription the server refused in the last minute.
    pub(crate) fn subscribe_refused(&self) -> Option<String> {
        self.subscribe.lock().ok().and_then(|s| {
            s.as_ref()
                .filter(|(at, _)| at.elapsed() < VIOLATION_MEMORY)
                .map(|(_, subject)| subject.clone())
        })
    }

    pub(crate) fn seen_recently(&self, subject: &str) -> bool {
        self.recent.lock().is_ok_and(|recent| {
            recent
                .iter()
                .any(|(at, s)| &**s == subject && at.elapsed() < VIOLATION_MEMORY)
        })
    }
}

/// Extracts the subject from a server error like
/// `Permissions Violation for Publish to "events.other.x"`.
fn publish_violation_subject(error: &str) -> Option<&str> {
    violation_subject(error, "permissions violation for publish to")
}

/// Extracts the subject from a server error like
/// `Permissions Violation for Subscription to "_INBOX.abc.*"`.
fn subscribe_violation_subject(error: &str) -> Option<&str> {
    violation_subject(error, "permissions violation for subscription to")
}

fn violation_subject<'a>(error: &'a str, prefix: &str) -> Option<&'a str> {
    let head = error.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = error[prefix.len()..].trim();
    Some(rest.trim_matches(|c| c == '"' || c == '\''))
}

/// A connection to NATS plus its JetStream context: what [`Publisher`](crate::Publisher) and
/// [`Worker`](crate::Worker) work through. Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), conveyor::ConnectError> {
/// let conn = conveyor::Connection::connect("nats://127.0.0.1:4222").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    violations: Option<Arc<Violations>>,
    timeout: Duration,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `url` with default options.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, async_nats::ConnectOptions::new()).await
    }

    /// Connects with the given options (credentials, TLS, inbox prefix, ...).
    ///
    /// The framework installs its own `event_callback` to turn permission violations into clear
    /// publish errors and to log connection events; one set on `options` is replaced.
    /// Credentials embedded in the URL are ignored by async-nats: use
    /// `ConnectOptions::with_user_and_password` and friends.
    pub async fn connect_with(
        addrs: impl async_nats::ToServerAddrs,
        options: async_nats::ConnectOptions,
    ) -> Result<Self, ConnectError> {
        let violations = Arc::new(Violations::new());
        let v = violations.clone();
        let options = options.event_callback(move |event| {
            let v = v.clone();
            async move {
                match &event {
                    async_nats::Event::ServerError(async_nats::ServerError::Other(msg)) => {
                        if let Some(subject) = publish_violation_subject(msg) {
                            v.record(subject);
                        } else if let Some(subject) = subscribe_violation_subject(msg) {
                            v.record_subscribe(subject);
                        }
                        tracing::warn!(error = %msg, "nats server error");
                    }
                    async_nats::Event::Connected => tracing::info!("nats connected"),
                    async_nats::Event::Disconnected => tracing::warn!("nats disconnected"),
                    other => tracing::debug!(event = %other, "nats event"),
                }
            }
        });
        let client = options.connect(addrs).await.map_err(map_connect_error)?;
        Ok(Self::build(
            client,
            Some(violations),
            DEFAULT_REQUEST_TIMEOUT,
        ))
    }

    /// Wraps an existing client. Permission violations are then reported as timeouts unless the
    /// client was connected through [`Connection::connect_with`].
    pub fn from_client(client: async_nats::Client) -> Self {
        Self::build(client, None, DEFAULT_REQUEST_TIMEOUT)
    }

    fn build(
        client: async_nats::Client,
        violations: Option<Arc<Violations>>,
        timeout: Duration,
    ) -> Self {
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        Self {
            inner: Arc::new(Inner {
                client,
                jetstream,
                violations,
                timeout,
            }),
        }
    }

    /// Returns this connection with another bound for JetStream API requests and awaited
    /// publish acks (default 5 s).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self::build(
            self.inner.client.clone(),
            self.inner.violations.clone(),
            timeout,
        )
    }

    /// The core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.jetstream
    }

    /// The bound for JetStream requests and publish acks.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The subject of the latest publish (or request) the server refused this user in the last
    /// minute, if any: a JetStream request that fails for permissions only times out, and this
    /// says why.
    pub fn recent_permission_violation(&self) -> Option<String> {
        self.violations().and_then(|v| v.latest())
    }

    pub(crate) fn violations(&self) -> Option<&Arc<Violations>> {
        self.inner.violations.as_ref()
    }
}

fn map_connect_error(e: async_nats::ConnectError) -> ConnectError {
    use async_nats::ConnectErrorKind as N;
    let kind = match e.kind() {
        N::ServerParse => ConnectErrorKind::InvalidAddress,
        N::AuthorizationViolation | N::Authentication => ConnectErrorKind::Authorization,
        N::Dns | N::Io | N::TimedOut => ConnectErrorKind::Unreachable,
        N::Tls => ConnectErrorKind::Tls,
        _ => ConnectErrorKind::Other,
    };
    Error::with_source(kind, "could not connect to NATS", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe_violations() {
        assert_eq!(
            subscribe_violation_subject(
                r#"Permissions Violation for Subscription to "_INBOX.abc.*""#
            ),
            Some("_INBOX.abc.*")
        );
        assert_eq!(
            subscribe_violation_subject("Permissions Violation for Publish to x"),
            None
        );
    }

    #[test]
    fn parses_publish_violations() {
        assert_eq!(
            publish_violation_subject(r#"Permissions Violation for Publish to "events.other.x""#),
            Some("events.other.x")
        );
        assert_eq!(
            publish_violation_subject(r#"permissions violation for publish to "a.b""#),
            Some("a.b")
        );
        assert_eq!(
            publish_violation_subject("Permissions Violation for Subscription to \"x\""),
            None
        );
    }
}
