//! The connection flags every Conveyor binary takes (`conveyor`, `conveyor-worker`,
//! `conveyor-scheduler`, and a deployment's own binaries): one set, one meaning. Needs the
//! `cli` feature (clap).
//!
//! ```no_run
//! use clap::Parser;
//!
//! /// My worker.
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     nats: conveyor::connect_args::ConnectArgs,
//! }
//!
//! # async fn run() -> Result<(), conveyor::ConnectError> {
//! let cli = Cli::parse();
//! let conn = cli.nats.connect().await?;
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use crate::connection::{ConnectError, ConnectErrorKind, Connection};
use crate::error::Error;

/// How to reach NATS: server URLs, credentials, TLS, inbox prefix. Every flag also reads an
/// environment variable; secrets are never printed (`--help` hides their values).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// NATS server URL(s), comma-separated for a cluster.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub server: String,
    /// User name (with --password).
    #[arg(long, env = "NATS_USER", global = true)]
    pub user: Option<String>,
    /// Password (with --user).
    #[arg(long, env = "NATS_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// Token.
    #[arg(long, env = "NATS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// NKey seed.
    #[arg(long, env = "NATS_NKEY", global = true, hide_env_values = true)]
    pub nkey: Option<String>,
    /// Credentials file (.creds).
    #[arg(long, env = "NATS_CREDS", global = true)]
    pub creds: Option<PathBuf>,
    /// CA certificate to trust (PEM).
    #[arg(long, env = "NATS_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM, with --tls-key).
    #[arg(long, env = "NATS_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM, with --tls-cert).
    #[arg(long, env = "NATS_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// TLS before the NATS handshake (server `handshake_first`).
    #[arg(long, global = true)]
    pub tls_first: bool,
    /// Inbox prefix (the one the user's permissions allow, e.g. _INBOX_admin).
    #[arg(long, env = "NATS_INBOX_PREFIX", global = true)]
    pub inbox_prefix: Option<String>,
}

fn invalid(message: impl Into<String>) -> ConnectError {
    Error::new(ConnectErrorKind::InvalidOptions, message)
}

impl ConnectArgs {
    /// The server addresses of `--server`.
    pub fn addresses(&self) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
        self.server
            .split(',')
            .map(|s| {
                let s = s.trim();
                s.parse().map_err(|_| {
                    Error::new(
                        ConnectErrorKind::InvalidAddress,
                        format!("{s:?} is not a NATS URL (e.g. nats://127.0.0.1:4222)"),
                    )
                })
            })
            .collect()
    }

    /// `options` with the credentials, TLS and inbox prefix of these flags. Fails on flags
    /// that go together given alone, and on a credentials file that cannot be read.
    pub async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, ConnectError> {
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => options = options.user_and_password(u.clone(), p.clone()),
            (None, None) => {}
            _ => return Err(invalid("--user and --password go together")),
        }
        if let Some(t) = &self.token {
            options = options.token(t.clone());
        }
        if let Some(seed) = &self.nkey {
            options = options.nkey(seed.clone());
        }
        if let Some(path) = &self.creds {
            options = options.credentials_file(path).await.map_err(|e| {
                Error::with_source(
                    ConnectErrorKind::InvalidOptions,
                    format!("cannot read credentials file {}", path.display()),
                    e,
                )
            })?;
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                options = options
                    .add_client_certificate(c.clone(), k.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => return Err(invalid("--tls-cert and --tls-key go together")),
        }
        if self.tls_first {
            options = options.tls_first();
        }
        if let Some(p) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(p.clone());
        }
        Ok(options)
    }

    /// Connects with these flags and async-nats' defaults otherwise (it reconnects for as long
    /// as the process runs: right for workers and schedulers).
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let addrs = self.addresses()?;
        let options = self.apply(async_nats::ConnectOptions::new()).await?;
        Connection::connect_with(addrs, options).await
    }
}
