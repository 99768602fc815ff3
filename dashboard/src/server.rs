//! Serving: configuration, the router of pages and API, start and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use conveyor::telemetry::HttpServer;
use conveyor::{Connection, Error};
use conveyor_scheduler::Schedule;
use tokio_util::sync::CancellationToken;

use crate::charts::Samples;
use crate::security::Guard;
use crate::{api, dead_letters, events, overview, runs, schedules, tenants};

/// How the dashboard serves.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Where it listens (`127.0.0.1:8700`). Any address but a loopback one needs a `token`.
    pub listen: SocketAddr,
    /// The token every request must carry (`Authorization: Bearer`, or once as `?token=` to
    /// set a cookie); `None` on loopback: none needed.
    pub token: Option<String>,
    /// Refuse every action that changes something.
    pub read_only: bool,
    /// The schedules the scheduler runs (the Schedules page and "trigger now").
    pub schedules: Vec<Schedule>,
    /// How often the overview's charts are sampled.
    pub sample_every: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            token: None,
            read_only: false,
            schedules: Vec::new(),
            sample_every: Duration::from_secs(10),
        }
    }
}

/// Why the dashboard could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DashboardErrorKind {
    /// The address could not be bound.
    Bind,
    /// A non-loopback address without a token.
    Insecure,
    /// A schedule does not compile.
    Schedules,
}

impl std::fmt::Display for DashboardErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bind => "cannot bind the dashboard address",
            Self::Insecure => "refusing to serve without a token",
            Self::Schedules => "invalid schedules",
        })
    }
}

/// A dashboard that could not start.
pub type DashboardError = Error<DashboardErrorKind>;

/// What every handler reads.
pub(crate) struct App {
    pub(crate) conn: Connection,
    pub(crate) read_only: bool,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) samples: Samples,
    pub(crate) activity: crate::activity::Activity,
}

/// A running dashboard; dropping it stops serving.
#[derive(Debug)]
pub struct Dashboard(HttpServer);

impl Dashboard {
    /// Starts serving.
    pub async fn start(conn: &Connection, config: DashboardConfig) -> Result<Self, DashboardError> {
        if !config.listen.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
            return Err(Error::new(
                DashboardErrorKind::Insecure,
                format!(
                    "{} is not a loopback address: give a token (--token or CONVEYOR_DASHBOARD_TOKEN), or listen on 127.0.0.1",
                    config.listen
                ),
            ));
        }
        conveyor_scheduler::schedule::compile_all(&config.schedules)
            .map_err(|e| Error::new(DashboardErrorKind::Schedules, e.to_string()))?;
        let stop = CancellationToken::new();
        let samples = Samples::default();
        tokio::spawn(crate::charts::sample(
            conn.clone(),
            samples.clone(),
            config.sample_every,
            stop.clone(),
        ));
        let activity = crate::activity::Activity::default();
        tokio::spawn(crate::activity::follow(
            conn.clone(),
            activity.clone(),
            stop.clone(),
        ));
        let app = Arc::new(App {
            conn: conn.clone(),
            read_only: config.read_only,
            schedules: config.schedules.clone(),
            samples,
            activity,
        });
        let guard = Guard::new(config.token.clone(), config.read_only);
        let router = routes()
            .with_state(app)
            .layer(axum::middleware::from_fn_with_state(
                guard,
                crate::security::check,
            ));
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                Error::with_source(
                    DashboardErrorKind::Bind,
                    format!("cannot listen on {}", config.listen),
                    e,
                )
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::with_source(DashboardErrorKind::Bind, "no local address", e))?;
        let server = HttpServer::spawn(local_addr, move |shutdown| async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            // The samplers end with the server.
            stop.cancel();
            if let Err(e) = served {
                tracing::error!(error = %e, "dashboard failed");
            }
        });
        Ok(Self(server))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(overview::page))
        .route("/assets/style.css", get(crate::layout::stylesheet))
        .route("/tenants", get(tenants::page))
        .route("/tenants/{tenant}/pause", post(tenants::pause_form))
        .route("/tenants/{tenant}/resume", post(tenants::resume_form))
        .route("/runs", get(runs::page))
        .route("/runs/{event_id}", get(runs::run_page))
        .route("/runs/{event_id}/cancel", post(runs::cancel_form))
        .route("/dead-letters", get(dead_letters::page))
        .route(
            "/dead-letters/replay",
            post(dead_letters::replay_matching_form),
        )
        .route("/dead-letters/purge", post(dead_letters::purge_form))
        .route("/dead-letters/{seq}", get(dead_letters::letter_page))
        .route(
            "/dead-letters/{seq}/replay",
            post(dead_letters::replay_form),
        )
        .route("/schedules", get(schedules::page))
        .route("/schedules/{name}/trigger", post(schedules::trigger_form))
        .route("/events", get(events::page))
        .route("/events/{event_type}", get(events::type_page))
        .route("/events/{event_type}/send", post(events::send_form))
        .merge(api::routes())
}
