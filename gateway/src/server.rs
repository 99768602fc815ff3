//! Serving: the router, and an HTTP/1.1 accept loop with a header read timeout (axum's own
//! `serve` has none, and a client sending its headers slowly must not hold a connection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use conveyor::telemetry::{HttpServer, Telemetry};
use conveyor::{Connection, Error};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::handler::{App, post_events};
use crate::keys::Keys;
use crate::metrics::Metrics;

/// How a gateway serves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// The `source` of events whose request gives none (the minimal form).
    pub default_source: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8800)),
            max_body: 4 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            default_source: "conveyor-gateway".into(),
        }
    }
}

/// Why a gateway could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GatewayErrorKind {
    /// The listen address could not be bound.
    Bind,
    /// The key store could not be opened.
    Keys,
}

impl std::fmt::Display for GatewayErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bind => "cannot bind the gateway address",
            Self::Keys => "cannot open the key store",
        })
    }
}

/// A gateway that could not start.
pub type GatewayError = Error<GatewayErrorKind>;

/// A running gateway; dropping it stops accepting connections.
#[derive(Debug)]
pub struct Gateway(HttpServer);

impl Gateway {
    /// Starts serving `POST /v1/events`, `/metrics`, `/healthz` and `/readyz` (ready while
    /// connected to NATS).
    pub async fn start(
        conn: &Connection,
        telemetry: &Telemetry,
        config: GatewayConfig,
    ) -> Result<Self, GatewayError> {
        let keys = Keys::open(conn).await.map_err(|e| {
            Error::with_source(GatewayErrorKind::Keys, "cannot open the key store", e)
        })?;
        let client = conn.client().clone();
        telemetry.add_check("nats connected", move || {
            client.connection_state() == async_nats::connection::State::Connected
        });
        let app = Arc::new(App {
            conn: conn.clone(),
            auth: Auth::new(keys),
            metrics: Metrics::new(telemetry),
            max_body: config.max_body,
            body_timeout: config.body_timeout,
            default_source: config.default_source.clone(),
        });
        let router = axum::Router::new()
            .route("/v1/events", post(post_events))
            .with_state(app)
            .merge(telemetry.router());
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                Error::with_source(
                    GatewayErrorKind::Bind,
                    format!("cannot listen on {}", config.listen),
                    e,
                )
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::with_source(GatewayErrorKind::Bind, "no local address", e))?;
        tracing::info!(%local_addr, "gateway serving POST /v1/events");
        let header_timeout = config.header_timeout;
        Ok(Self(HttpServer::spawn(local_addr, move |stop| {
            accept_loop(listener, router, header_timeout, stop)
        })))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops accepting, lets requests in progress finish, and waits for the accept loop.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    token: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = token.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = token.clone();
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
