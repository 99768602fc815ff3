//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.

use std::fmt;
use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::error::Error;

use super::*;

impl Telemetry {
    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (port 0 picks a free port) until
    /// the returned server is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> Result<TelemetryServer, TelemetryError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::with_source(
                TelemetryErrorKind::Bind,
                format!("cannot listen on {addr}"),
                e,
            )
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::with_source(TelemetryErrorKind::Bind, "no local address", e))?;
        let app = self.router();
        tracing::info!(%local_addr, "serving /metrics, /healthz and /readyz");
        Ok(HttpServer::spawn(local_addr, move |stop| async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "telemetry endpoint failed");
            }
        }))
    }
}

impl Telemetry {
    /// The routes `/metrics`, `/healthz` and `/readyz`, to serve beside an app's own (a
    /// service that already has an HTTP server merges them into its router).
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }
}

fn router(telemetry: Telemetry) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let metrics = telemetry.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let failing = telemetry.failing_checks();
                async move {
                    if failing.is_empty() {
                        (StatusCode::OK, "ready\n".to_owned())
                    } else {
                        let mut body = String::from("not ready\n");
                        for name in failing {
                            body.push_str(&name);
                            body.push('\n');
                        }
                        (StatusCode::SERVICE_UNAVAILABLE, body)
                    }
                }
            }),
        )
}

/// A running HTTP server (the telemetry endpoint, the gateway, the dashboard): its address,
/// and a stop that lets requests in progress finish. Dropping it stops serving too.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    token: CancellationToken,
    join: Option<tokio::task::JoinHandle<()>>,
}

/// The running HTTP endpoint of a [`Telemetry`].
pub type TelemetryServer = HttpServer;

impl HttpServer {
    /// Runs `serve` in a task: it is given the token that is cancelled when the server is
    /// shut down or dropped, and should stop accepting then.
    pub fn spawn<F>(local_addr: SocketAddr, serve: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let token = CancellationToken::new();
        let join = tokio::spawn(serve(token.clone()));
        Self {
            local_addr,
            token,
            join: Some(join),
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The token cancelled when it stops (for tasks that should end with it).
    pub fn stopping(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops accepting, lets requests in progress finish, and waits until the server's task
    /// has ended.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        if let Some(join) = self.join.take()
            && let Err(e) = join.await
        {
            tracing::error!(error = %e, "HTTP server task failed");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Why the telemetry endpoint could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TelemetryErrorKind {
    /// The address could not be bound (in use, not permitted, ...).
    Bind,
}

impl fmt::Display for TelemetryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bind => "cannot bind the telemetry address",
        })
    }
}

/// A telemetry endpoint that could not start.
pub type TelemetryError = Error<TelemetryErrorKind>;
