//! Test support: run a handler in-process, and start real nats-server processes.
//!
//! # Running a handler
//!
//! [`TestDelivery`] runs a handler the way the worker would, without a server: the event is
//! encoded into a real envelope and decoded back (so a serde mismatch fails the test), and events
//! the handler publishes are recorded instead of sent.
//!
//! ```
//! use conveyor::testing::TestDelivery;
//! use conveyor::{Context, HandlerError, HandlerResult, TenantId};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct OrderCreated { order_id: String }
//! # impl conveyor::Event for OrderCreated { const TYPE: &'static str = "order.created"; }
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct InvoiceRequested { order_id: String }
//! # impl conveyor::Event for InvoiceRequested { const TYPE: &'static str = "invoice.requested"; }
//!
//! async fn on_order(e: OrderCreated, ctx: Context) -> HandlerResult {
//!     ctx.publish(&InvoiceRequested { order_id: e.order_id }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tenant = TenantId::parse("acme").unwrap();
//! let run = TestDelivery::new(tenant, OrderCreated { order_id: "o-1".into() })
//!     .run(on_order, ())
//!     .await;
//! assert!(run.result.is_ok());
//! assert_eq!(run.published[0].event_type, "invoice.requested");
//! # }
//! ```
//!
//! # A nats-server per test
//!
//! [`NatsServer::start`] starts a JetStream-enabled nats-server on a random port with its own
//! temporary store; dropping it kills the process and deletes the store. The binary is found
//! through `CONVEYOR_NATS_SERVER`, then the project's install (`.tools/nats/bin/nats-server`,
//! made by `python3 dev.py install-nats`), then `PATH`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::{ConnectError, Connection};
use crate::envelope::{self, EventOptions, RawEnvelope};
use crate::error::Error;
use crate::event::Event;
use crate::handler::{
    Context, Delivery, FollowUps, Handler, HandlerResult, ProgressSink, RecordedEvent, RunHooks,
};
use crate::tenant::TenantId;
use crate::trace::TraceParent;
use tokio_util::sync::CancellationToken;

/// Environment variable naming the nats-server binary to use.
pub const NATS_SERVER_ENV: &str = "CONVEYOR_NATS_SERVER";
/// Where `python3 dev.py install-nats` puts nats-server, relative to the workspace root.
pub const PROJECT_NATS_SERVER: &str = ".tools/nats/bin/nats-server";

/// One handler run by [`TestDelivery::run`].
#[derive(Debug)]
pub struct HandlerRun {
    /// What the handler returned.
    pub result: HandlerResult,
    /// The events it published, in order.
    pub published: Vec<RecordedEvent>,
    /// The progress it reported (percent, message), in order.
    pub progress: Vec<(u8, String)>,
}

/// Records progress reports of a test run.
struct RecordProgress(Arc<Mutex<Vec<(u8, String)>>>);

impl ProgressSink for RecordProgress {
    fn report(&self, percent: u8, message: String) -> futures::future::BoxFuture<'_, ()> {
        if let Ok(mut log) = self.0.lock() {
            log.push((percent, message));
        }
        Box::pin(async {})
    }
}

/// A fake delivery of one event to a handler, for unit tests.
#[derive(Debug, Clone)]
pub struct TestDelivery<E> {
    tenant: TenantId,
    event: E,
    attempt: u32,
    max_attempts: u32,
    options: EventOptions,
    group: String,
    cancel_after: Option<Duration>,
}

impl<E: Event> TestDelivery<E> {
    /// A first attempt (of 5) at `event` for `tenant`.
    pub fn new(tenant: TenantId, event: E) -> Self {
        Self {
            tenant,
            event,
            attempt: 1,
            max_attempts: 5,
            options: EventOptions::default(),
            group: "test".into(),
            cancel_after: None,
        }
    }

    /// Sets the attempt number and the attempts allowed.
    pub fn attempt(mut self, attempt: u32, max_attempts: u32) -> Self {
        self.attempt = attempt;
        self.max_attempts = max_attempts;
        self
    }

    /// Sets envelope attributes (id, correlation id, ...).
    pub fn options(mut self, options: EventOptions) -> Self {
        self.options = options;
        self
    }

    /// Cancels the run `after` this long (zero: cancelled before it starts), as
    /// `conveyor cancel` would.
    pub fn cancel_after(mut self, after: Duration) -> Self {
        self.cancel_after = Some(after);
        self
    }

    /// Sets the group name the context reports.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Round-trips the event through the wire codec and runs `handler` on it. Panics (failing
    /// the test) if the event does not survive the round trip.
    pub async fn run<S, H: Handler<E, S>>(self, handler: H, state: S) -> HandlerRun {
        let id = self
            .options
            .id
            .clone()
            .unwrap_or_else(envelope::new_event_id);
        let time = self.options.time.unwrap_or_else(chrono::Utc::now);
        let body = match envelope::encode(
            &envelope::Attributes {
                id: &id,
                source: "test",
                event_type: E::TYPE,
                time: &time,
                tenant: &self.tenant,
                traceparent: self.options.traceparent.as_deref(),
                correlation_id: self.options.correlation_id.as_deref(),
                causation_id: self.options.causation_id.as_deref(),
            },
            &self.event,
        ) {
            Ok(b) => b,
            Err(e) => panic!("the {} event does not encode: {e}", E::TYPE),
        };
        let raw = match RawEnvelope::parse(&body) {
            Ok(r) => r,
            Err(e) => panic!("the {} envelope does not decode: {e}", E::TYPE),
        };
        let event: E = match raw.decode_data() {
            Ok(e) => e,
            Err(e) => panic!(
                "the {} event does not survive its JSON round trip: {e}",
                E::TYPE
            ),
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let delivery = Arc::new(Delivery {
            group: self.group,
            tenant: self.tenant,
            correlation_id: self.options.correlation_id.unwrap_or_else(|| id.clone()),
            event_id: id,
            event_type: E::TYPE.to_owned(),
            source: "test".into(),
            time: Some(time),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            trace: self
                .options
                .traceparent
                .as_deref()
                .and_then(|tp| tp.parse::<TraceParent>().ok())
                .map_or_else(TraceParent::generate, |tp| tp.child()),
            stream_sequence: 1,
        });
        let progress = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let hooks = Arc::new(RunHooks::new(
            cancel.clone(),
            Box::new(RecordProgress(progress.clone())),
        ));
        let ctx = Context::new(delivery, FollowUps::Recorder(log.clone()), hooks, state);
        let run = handler.call(event, ctx);
        let result = match self.cancel_after {
            None => run.await,
            Some(after) => {
                let canceller = tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    cancel.cancel();
                });
                let result = run.await;
                canceller.abort();
                result
            }
        };
        let published = log.lock().map(|l| l.clone()).unwrap_or_default();
        let progress = progress.lock().map(|l| l.clone()).unwrap_or_default();
        HandlerRun {
            result,
            published,
            progress,
        }
    }
}

/// Why the nats-server fixture failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FixtureErrorKind {
    /// No nats-server binary was found.
    BinaryNotFound,
    /// The process or its temporary directory could not be created.
    Spawn,
    /// The server did not report its port in time.
    StartTimeout,
}

impl fmt::Display for FixtureErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BinaryNotFound => "nats-server not found",
            Self::Spawn => "cannot start nats-server",
            Self::StartTimeout => "nats-server did not start",
        })
    }
}

/// A failure of the nats-server fixture.
pub type FixtureError = Error<FixtureErrorKind>;

/// Finds the nats-server binary: `CONVEYOR_NATS_SERVER`, then the project's install under
/// `.tools/` (searched upwards from the current directory and from this crate), then `PATH`.
pub fn nats_server_binary() -> Result<PathBuf, FixtureError> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::new(
                FixtureErrorKind::BinaryNotFound,
                format!("{NATS_SERVER_ENV}={} is not a file", path.display()),
            ))
        };
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for root in &roots {
        for dir in root.ancestors() {
            let candidate = dir.join(PROJECT_NATS_SERVER);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::new(
        FixtureErrorKind::BinaryNotFound,
        format!(
            "no nats-server binary: run `python3 dev.py install-nats` in the repository (installs nats-server 2.15.1 into {PROJECT_NATS_SERVER}), or set {NATS_SERVER_ENV}=/path/to/nats-server"
        ),
    ))
}

/// Where a server keeps its store and log.
#[derive(Debug)]
enum ServerDir {
    /// Deleted on drop.
    Temporary(tempfile::TempDir),
    /// Kept (local development).
    Kept(PathBuf),
}

impl ServerDir {
    fn path(&self) -> &Path {
        match self {
            Self::Temporary(t) => t.path(),
            Self::Kept(p) => p,
        }
    }
}

/// A nats-server process with JetStream, a random port and a temporary store, killed and
/// deleted on drop.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    dir: ServerDir,
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a server on a random loopback port.
    pub fn start() -> Result<Self, FixtureError> {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `["-c", "x.conf"]`).
    pub fn start_with_args(args: &[&str]) -> Result<Self, FixtureError> {
        let binary = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("conveyor-nats-")
            .tempdir()
            .map_err(|e| Error::with_source(FixtureErrorKind::Spawn, "no temp dir", e))?;
        let mut server = Self {
            binary,
            dir: ServerDir::Temporary(dir),
            child: None,
            port: 0,
            extra_args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn(None)?;
        Ok(server)
    }

    /// Starts a server whose store and log live in `dir` and are kept after it stops (for
    /// local development), on `port` (`None`: a random one). It is still killed on drop.
    pub fn start_in(dir: impl Into<PathBuf>, port: Option<u16>) -> Result<Self, FixtureError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::with_source(
                FixtureErrorKind::Spawn,
                format!("cannot create {}", dir.display()),
                e,
            )
        })?;
        let mut server = Self {
            binary: nats_server_binary()?,
            dir: ServerDir::Kept(dir),
            child: None,
            port: 0,
            extra_args: Vec::new(),
        };
        server.spawn(port)?;
        Ok(server)
    }

    fn spawn(&mut self, port: Option<u16>) -> Result<(), FixtureError> {
        let store = self.dir.path().join("store");
        let ports_dir = self.dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir)
            .map_err(|e| Error::with_source(FixtureErrorKind::Spawn, "no ports dir", e))?;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg])
            .arg("-sd")
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .arg("-l")
            .arg(self.dir.path().join("nats-server.log"))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::with_source(
                    FixtureErrorKind::Spawn,
                    format!("cannot run {}", self.binary.display()),
                    e,
                )
            })?;
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        self.port = wait_for_port(&ports_file).inspect_err(|_| self.stop())?;
        Ok(())
    }

    /// The client URL, e.g. `nats://127.0.0.1:43121`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the store and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects a [`Connection`] to this server.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        Connection::connect(&self.url()).await
    }

    /// Kills the server (SIGKILL) and waits for it to exit. The store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn start_again(&mut self) -> Result<(), FixtureError> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn(Some(self.port)) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Kills the server and starts it again on the same port with the same store.
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.start_again()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(ports_file: &Path) -> Result<u16, FixtureError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(ports_file)
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = json["nats"][0].as_str()
            && let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok())
        {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(Error::new(
        FixtureErrorKind::StartTimeout,
        format!("no ports file {} within 15 s", ports_file.display()),
    ))
}

/// A 3-node nats-server cluster with JetStream on loopback, each node with its own temporary
/// store; every node is killed and the stores deleted on drop.
#[derive(Debug)]
pub struct NatsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<ClusterNode>,
}

#[derive(Debug)]
struct ClusterNode {
    name: String,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> Result<u16, FixtureError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::with_source(FixtureErrorKind::Spawn, "no free port", e))
}

impl NatsCluster {
    /// Starts three nodes (`n1`, `n2`, `n3`) routed to each other.
    pub fn start() -> Result<Self, FixtureError> {
        let binary = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("conveyor-cluster-")
            .tempdir()
            .map_err(|e| Error::with_source(FixtureErrorKind::Spawn, "no temp dir", e))?;
        let client_ports = [free_port()?, free_port()?, free_port()?];
        let route_ports = [free_port()?, free_port()?, free_port()?];
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let conf = dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\ncluster {{ name: conveyor-test\n  listen: 127.0.0.1:{}\n  routes: [{routes}] }}\n",
                client_ports[i],
                store.display().to_string(),
                route_ports[i]
            );
            std::fs::write(&conf, text).map_err(|e| {
                Error::with_source(FixtureErrorKind::Spawn, "cannot write config", e)
            })?;
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&conf)
                .arg("-l")
                .arg(dir.path().join(format!("{name}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    Error::with_source(FixtureErrorKind::Spawn, "cannot run nats-server", e)
                })?;
            nodes.push(ClusterNode {
                name,
                port: client_ports[i],
                child: Some(child),
            });
        }
        let cluster = Self { dir, nodes };
        for node in &cluster.nodes {
            let deadline = Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
                if Instant::now() > deadline {
                    return Err(Error::new(
                        FixtureErrorKind::StartTimeout,
                        format!("node {} did not listen within 15 s", node.name),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// Client URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Connects a [`Connection`] that knows every node.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let addrs: Vec<async_nats::ServerAddr> =
            self.urls().iter().filter_map(|u| u.parse().ok()).collect();
        Connection::connect_with(addrs, async_nats::ConnectOptions::new()).await
    }

    /// Kills (SIGKILL) the node named `name`.
    pub fn kill(&mut self, name: &str) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.name == name)
            && let Some(mut child) = node.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The directory holding the nodes' stores, configs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{HandlerError, PublishErrorKind};
    use serde::{Deserialize, Deserializer, Serialize};

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Order {
        n: u32,
    }
    impl Event for Order {
        const TYPE: &'static str = "test.order";
    }

    /// A follow-up whose own type refuses `n == 0` when decoding.
    #[derive(Debug, Serialize, schemars::JsonSchema)]
    struct Invoice {
        n: u32,
    }
    impl<'de> Deserialize<'de> for Invoice {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            struct Raw {
                n: u32,
            }
            let raw = Raw::deserialize(d)?;
            if raw.n == 0 {
                return Err(serde::de::Error::custom("an invoice needs a number"));
            }
            Ok(Self { n: raw.n })
        }
    }
    impl Event for Invoice {
        const TYPE: &'static str = "test.invoice";
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[tokio::test]
    async fn follow_ups_are_refused_as_a_publish_would_refuse_them() {
        let publish = |n: u32, options: EventOptions| async move {
            let kind = std::sync::Arc::new(Mutex::new(None));
            let seen = kind.clone();
            let handler = move |_: Order, ctx: Context| {
                let seen = seen.clone();
                let options = options.clone();
                async move {
                    if let Err(e) = ctx.publish_with(&Invoice { n }, options).await {
                        *seen.lock().unwrap() = Some(e.kind());
                        return Err(HandlerError::permanent(e));
                    }
                    Ok(())
                }
            };
            let run = TestDelivery::new(acme(), Order { n: 1 })
                .run(handler, ())
                .await;
            (run, kind.lock().unwrap().take())
        };
        let (run, kind) = publish(0, EventOptions::default()).await;
        assert!(run.result.is_err() && run.published.is_empty());
        assert_eq!(
            kind,
            Some(PublishErrorKind::Encode),
            "the decode-back check"
        );
        let (_, kind) = publish(1, EventOptions::default().lane("Not A Lane")).await;
        assert_eq!(
            kind,
            Some(PublishErrorKind::InvalidEventType),
            "the lane check"
        );
        let (_, kind) = publish(1, EventOptions::default().header("X", "a\r\nb")).await;
        assert_eq!(kind, Some(PublishErrorKind::InvalidHeader));
        let (run, kind) = publish(1, EventOptions::default().lane("high")).await;
        assert_eq!(kind, None);
        assert_eq!(run.published[0].lane.as_deref(), Some("high"));
    }

    #[tokio::test]
    async fn follow_ups_get_ids_derived_from_the_handled_event() {
        let handler = |_: Order, ctx: Context| async move {
            ctx.publish(&Invoice { n: 1 }).await?;
            ctx.publish(&Invoice { n: 2 }).await?;
            ctx.publish_with(&Invoice { n: 3 }, EventOptions::default().id("mine"))
                .await?;
            Ok(())
        };
        let run = TestDelivery::new(acme(), Order { n: 1 })
            .options(EventOptions::default().id("order-7"))
            .run(handler, ())
            .await;
        assert!(run.result.is_ok());
        let ids: Vec<&str> = run.published.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            ["order-7:test.invoice", "order-7:test.invoice:2", "mine"]
        );
    }
}
