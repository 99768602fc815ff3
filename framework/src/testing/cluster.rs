//! The cluster fixture: three routed nats-server nodes with JetStream, ready to serve when
//! [`NatsCluster::start`] returns.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{FixtureError, FixtureErrorKind, nats_server_binary};
use crate::connection::{ConnectError, Connection};
use crate::error::Error;

/// How many times the cluster is started on new ports before [`NatsCluster::start`] gives up.
const ATTEMPTS: usize = 3;
/// How long one attempt waits for every node to join and JetStream to answer.
const READY_WITHIN: Duration = Duration::from_secs(40);

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
    conf: std::path::PathBuf,
    child: Option<Child>,
}

fn free_port() -> Result<u16, FixtureError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::with_source(FixtureErrorKind::Spawn, "no free port", e))
}

impl NatsCluster {
    /// Starts three nodes (`n1`, `n2`, `n3`) routed to each other, and returns once every node
    /// runs, lists all three servers to its clients and answers JetStream requests (the meta
    /// leader is elected), so a test can provision streams at once.
    ///
    /// The nodes' client and route ports are picked free before the nodes bind them; when
    /// another process takes one in between (a node exits, or never joins), the cluster is
    /// started again on new ports, up to three times. The error of the last attempt names the
    /// node and ends with its log.
    pub fn start() -> Result<Self, FixtureError> {
        let binary = nats_server_binary()?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut cluster = Self::spawn(&binary, &["n1", "n2", "n3"])?;
            match cluster.wait_ready(READY_WITHIN) {
                Ok(()) => return Ok(cluster),
                // Dropping the cluster kills its nodes.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::new(FixtureErrorKind::StartTimeout, "the cluster did not start")
        }))
    }

    /// Starts only the nodes named in `running` of the three, and returns once they accept
    /// clients, without waiting for JetStream: the others are started with
    /// [`NatsCluster::start_node`]. For tests of a cluster that is still forming (one node has
    /// no JetStream quorum; two of three elect a meta leader).
    pub fn start_partial(running: &[&str]) -> Result<Self, FixtureError> {
        let cluster = Self::spawn(&nats_server_binary()?, running)?;
        for node in cluster.nodes.iter().filter(|n| n.child.is_some()) {
            let deadline = Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
                if Instant::now() > deadline {
                    return Err(Error::new(
                        FixtureErrorKind::StartTimeout,
                        format!(
                            "node {} did not listen within 15 s; its log ends:\n{}",
                            node.name,
                            log_tail(&cluster.log_path(&node.name))
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// Starts node `name` (`n1`, `n2` or `n3`) if it is not running, on its ports, with its
    /// store.
    pub fn start_node(&mut self, name: &str) -> Result<(), FixtureError> {
        let binary = nats_server_binary()?;
        let dir = self.dir.path().to_path_buf();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::new(FixtureErrorKind::Spawn, format!("no node {name}")))?;
        if node.child.is_none() {
            node.child = Some(spawn_node(&binary, &dir, &node.name, &node.conf)?);
        }
        Ok(())
    }

    fn spawn(binary: &Path, running: &[&str]) -> Result<Self, FixtureError> {
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
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
        };
        for i in 0..3 {
            let name = format!("n{}", i + 1);
            let store = cluster.dir.path().join(&name);
            let conf = cluster.dir.path().join(format!("{name}.conf"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\ncluster {{ name: conveyor-test\n  listen: 127.0.0.1:{}\n  routes: [{routes}] }}\n",
                client_ports[i],
                store.display().to_string(),
                route_ports[i]
            );
            std::fs::write(&conf, text).map_err(|e| {
                Error::with_source(FixtureErrorKind::Spawn, "cannot write config", e)
            })?;
            let child = if running.contains(&name.as_str()) {
                Some(spawn_node(binary, cluster.dir.path(), &name, &conf)?)
            } else {
                None
            };
            cluster.nodes.push(ClusterNode {
                name,
                port: client_ports[i],
                conf,
                child,
            });
        }
        Ok(cluster)
    }

    fn log_path(&self, name: &str) -> std::path::PathBuf {
        log_path(self.dir.path(), name)
    }

    /// Waits until every node runs and [`probe`] passes on all of them.
    fn wait_ready(&mut self, within: Duration) -> Result<(), FixtureError> {
        let deadline = Instant::now() + within;
        loop {
            for node in &mut self.nodes {
                let exited = match node.child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    Some(Err(e)) => Some(e.to_string()),
                    Some(Ok(None)) | None => None,
                };
                if let Some(status) = exited {
                    let dir = self.dir.path();
                    let log = log_tail(&log_path(dir, &node.name));
                    let stderr = log_tail(&dir.join(format!("{}.stderr", node.name)));
                    return Err(Error::new(
                        FixtureErrorKind::Spawn,
                        format!(
                            "node {} exited ({status}); its log ends:\n{log}\n{stderr}",
                            node.name
                        ),
                    ));
                }
            }
            let urls = self.urls();
            let not_ready = match std::thread::spawn(move || probe(&urls)).join() {
                Ok(result) => result.err(),
                Err(_) => Some("the readiness probe panicked".to_owned()),
            };
            let Some(why) = not_ready else {
                return Ok(());
            };
            if Instant::now() > deadline {
                let logs = self
                    .nodes
                    .iter()
                    .map(|n| format!("{}:\n{}", n.name, log_tail(&self.log_path(&n.name))))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(Error::new(
                    FixtureErrorKind::StartTimeout,
                    format!("the cluster was not ready within {within:?}: {why}\n{logs}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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

/// Whether every node is ready: it accepts a client, its INFO lists all three servers (what a
/// client, `conveyor setup` among them, counts the cluster by), and it answers a JetStream
/// account request (which needs the meta leader). Runs on its own thread with its own runtime,
/// so that `start` stays a plain function callable from sync and async tests alike.
fn probe(urls: &[String]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime for the probe: {e}"))?;
    runtime.block_on(async {
        for url in urls {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(url.as_str())
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let seen = client.server_info().connect_urls.len();
            if seen < 3 {
                return Err(format!("{url} lists {seen} of 3 servers"));
            }
            let jetstream = async_nats::jetstream::new(client);
            match tokio::time::timeout(Duration::from_secs(2), jetstream.query_account()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{url}: JetStream: {e}")),
                Err(_) => return Err(format!("{url}: JetStream did not answer within 2 s")),
            }
        }
        Ok(())
    })
}

fn log_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.log"))
}

/// Runs node `name` with its config; its log and stderr go to files in `dir`.
fn spawn_node(binary: &Path, dir: &Path, name: &str, conf: &Path) -> Result<Child, FixtureError> {
    // A fatal error at start (a port taken) goes to stderr, not to the log.
    let stderr = std::fs::File::create(dir.join(format!("{name}.stderr"))).map_err(|e| {
        Error::with_source(FixtureErrorKind::Spawn, "cannot create a stderr file", e)
    })?;
    Command::new(binary)
        .arg("-c")
        .arg(conf)
        .arg("-l")
        .arg(log_path(dir, name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| Error::with_source(FixtureErrorKind::Spawn, "cannot run nats-server", e))
}

/// The last lines of a node's log, for an error that says why it did not start.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
