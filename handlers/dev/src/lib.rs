//! Local development in one command: `python3 dev.py run` (or `cargo run -p conveyor-dev`).
//!
//! [`DevSystem::start`] starts, in one process:
//! - a nats-server with JetStream whose data lives under `<data>/nats` (unless a server URL is
//!   given), and applies the topology;
//! - the LLM stub (the first request answers 500 and the next 429, so retries show);
//! - a webhook sink with an endpoint that accepts (`/hooks/ok`) and one that is gone
//!   (`/hooks/gone`, 410);
//! - the worker with every group (handler state in the `conveyor_store` key-value bucket, as in
//!   production; emails under `<data>/outbox`);
//! - the scheduler with the dev schedules (a health check every 30 s, daily metrics every
//!   minute, for every sample tenant);
//! - the HTTP gateway on `127.0.0.1:8800` with an API key for tenant `acme` in
//!   `<data>/gateway-key`;
//! - the operator dashboard on `127.0.0.1:8700`;
//! - a stream of sample events from three tenants: orders screened by fraud (some blocked), webhook
//!   deliveries (some to the gone endpoint), video uploads and analyses.
//!
//! [`lines`] prints what happens in readable lines; Ctrl-C stops everything it started.

pub mod gateway;
pub mod lines;
pub mod samples;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use conveyor::telemetry::{Telemetry, TelemetryServer};
use conveyor::testing::NatsServer;
use conveyor::topology::{Topology, provision};
use conveyor::{Connection, Publisher};
use conveyor_llm_stub::{LlmStub, StubOptions};
use conveyor_scheduler::{Options as SchedulerOptions, Schedule, Scheduler};
use conveyor_worker::{Running, WorkerOptions};
use tokio_util::sync::CancellationToken;

/// The tenants of the sample events.
pub const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// How to start the dev system.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Everything it writes goes under this directory (git-ignored `.conveyor`).
    pub data_dir: PathBuf,
    /// Use this NATS server instead of starting one.
    pub nats_url: Option<String>,
    /// Port of the embedded nats-server (`None`: 4222 when free, else any; `Some(0)`: any).
    pub nats_port: Option<u16>,
    /// Time between two sample events (`None`: no samples).
    pub sample_every: Option<Duration>,
    /// LLM stub behaviour.
    pub stub: StubOptions,
    /// The analysis job's length.
    pub analysis: conveyor_analysis::AnalysisConfig,
    /// Handlers per group (`None`: each group's default).
    pub concurrency: Option<usize>,
    /// Serve /metrics, /healthz and /readyz here.
    pub metrics_addr: Option<SocketAddr>,
    /// Serve the HTTP gateway here (`None`: no gateway).
    pub gateway_addr: Option<SocketAddr>,
    /// Serve the dashboard here (`None`: no dashboard).
    pub dashboard_addr: Option<SocketAddr>,
    /// Run the scheduler.
    pub scheduler: bool,
    /// Where handler state is kept (default: the `conveyor_store` key-value bucket, as in
    /// production).
    pub store: conveyor_worker::StoreChoice,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            data_dir: ".conveyor".into(),
            nats_url: None,
            nats_port: None,
            sample_every: Some(Duration::from_millis(1500)),
            stub: StubOptions {
                fail_first: 1,
                rate_limit_next: 1,
                retry_after_secs: 1,
                delay: Duration::from_millis(20),
            },
            analysis: conveyor_analysis::AnalysisConfig {
                files: 20,
                step_duration: Duration::from_millis(250),
                ack_wait: Duration::from_secs(2),
            },
            concurrency: None,
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            gateway_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8800))),
            dashboard_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8700))),
            scheduler: true,
            store: conveyor_worker::StoreChoice::default(),
        }
    }
}

/// The schedules of the dev system.
pub fn dev_schedules() -> Vec<Schedule> {
    vec![
        Schedule::new("health-check", "*/30 * * * * *", "health.check").tenants(TENANTS),
        Schedule::new("daily-metrics", "0 * * * * *", "daily.metrics").tenants(TENANTS),
    ]
}

/// Starts the dashboard on `addr` (with the dev schedules when the scheduler runs); says why
/// not when it cannot.
async fn start_dashboard(
    conn: &Connection,
    addr: SocketAddr,
    scheduler: bool,
) -> Option<conveyor_dashboard::Dashboard> {
    let config = conveyor_dashboard::DashboardConfig {
        listen: addr,
        schedules: if scheduler {
            dev_schedules()
        } else {
            Vec::new()
        },
        ..conveyor_dashboard::DashboardConfig::default()
    };
    match conveyor_dashboard::Dashboard::start(conn, config).await {
        Ok(d) => {
            lines::say("dashboard", &format!("http://{}/", d.local_addr()));
            Some(d)
        }
        Err(e) => {
            lines::say("dashboard", &format!("not serving the dashboard: {e}"));
            None
        }
    }
}

/// A running dev system.
pub struct DevSystem {
    /// The embedded server (when it started one).
    pub server: Option<NatsServer>,
    /// The connection every part shares.
    pub conn: Connection,
    /// The LLM stub.
    pub stub: LlmStub,
    /// The webhook sink's address.
    pub sink: SocketAddr,
    /// The handler state every group keeps (the `conveyor_store` key-value bucket).
    pub store: std::sync::Arc<dyn conveyor::store::Store>,
    /// Where emails go.
    pub outbox_dir: PathBuf,
    /// The telemetry endpoint, if serving.
    pub telemetry: Option<TelemetryServer>,
    /// The HTTP gateway and its dev key, if serving.
    pub gateway: Option<(conveyor_gateway::Gateway, String)>,
    /// The dashboard, if serving.
    pub dashboard: Option<conveyor_dashboard::Dashboard>,
    worker: Running,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Why the dev system could not start.
pub type DevError = Box<dyn std::error::Error + Send + Sync>;

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl std::fmt::Debug for DevSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSystem")
            .field("conn", &self.conn)
            .field("sink", &self.sink)
            .field("outbox_dir", &self.outbox_dir)
            .finish_non_exhaustive()
    }
}

impl DevSystem {
    /// Starts everything.
    pub async fn start(options: DevOptions) -> Result<Self, DevError> {
        let (server, url) = match &options.nats_url {
            Some(url) => (None, url.clone()),
            None => {
                let port = match options.nats_port {
                    Some(0) => None,
                    Some(p) => Some(p),
                    None => free(4222).then_some(4222),
                };
                let server = NatsServer::start_in(options.data_dir.join("nats"), port)?;
                let url = server.url();
                lines::say(
                    "nats",
                    &format!("nats-server at {url}, data in {}", server.dir().display()),
                );
                (Some(server), url)
            }
        };
        let conn = Connection::connect(&url).await?;
        for (name, change) in provision(&conn, &Topology::default()).await? {
            lines::say("setup", &format!("{name}: {change}"));
        }
        let stub =
            LlmStub::start(SocketAddr::from(([127, 0, 0, 1], 0)), options.stub.clone()).await?;
        lines::say("llm", &format!("LLM stub at {}", stub.base_url()));
        let sink = start_sink().await?;
        lines::say(
            "hooks",
            &format!("webhook sink at http://{sink} (/hooks/ok accepts, /hooks/gone answers 410)"),
        );

        let telemetry = Telemetry::new();
        let telemetry_server = match options.metrics_addr {
            Some(addr) => match telemetry.serve(addr).await {
                Ok(s) => {
                    lines::say(
                        "metrics",
                        &format!("http://{}/metrics, /healthz, /readyz", s.local_addr()),
                    );
                    Some(s)
                }
                Err(e) => {
                    lines::say("metrics", &format!("not serving metrics: {e}"));
                    None
                }
            },
            None => None,
        };
        let gateway = match options.gateway_addr {
            Some(addr) => gateway::start(&conn, &telemetry, addr, &options.data_dir).await,
            None => None,
        };
        let dashboard = match options.dashboard_addr {
            Some(addr) => start_dashboard(&conn, addr, options.scheduler).await,
            None => None,
        };
        let store = options.store.open(&conn).await?;
        let outbox_dir = options.data_dir.join("outbox");
        let worker_options = WorkerOptions {
            store: options.store.clone(),
            outbox_dir: outbox_dir.clone(),
            ai_base_url: stub.base_url(),
            analysis: options.analysis.clone(),
            concurrency: options.concurrency,
            shutdown_grace: Duration::from_secs(5),
            ..WorkerOptions::default()
        };
        let worker = conveyor_worker::start(&conn, &worker_options, &telemetry).await?;
        lines::say("worker", &format!("running {}", worker.groups().join(", ")));

        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if options.scheduler {
            let scheduler = Scheduler::new(
                &conn,
                &dev_schedules(),
                SchedulerOptions {
                    node_id: "dev".into(),
                    ..SchedulerOptions::default()
                },
            )?
            .with_telemetry(&telemetry);
            let token = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = scheduler.run_until(token.cancelled_owned()).await {
                    lines::say("scheduler", &format!("stopped: {e}"));
                }
            }));
            lines::say(
                "scheduler",
                "health-check every 30 s, daily-metrics every minute",
            );
        }
        tasks.push(tokio::spawn(lines::watch(conn.clone(), stop.clone())));
        if let Some(every) = options.sample_every {
            let publisher = Publisher::new(&conn)
                .with_source("dev-samples")
                .with_telemetry(&telemetry);
            tasks.push(tokio::spawn(samples::run(
                publisher,
                format!("http://{sink}"),
                every,
                stop.clone(),
            )));
        }
        Ok(Self {
            server,
            conn,
            stub,
            sink,
            store,
            outbox_dir,
            telemetry: telemetry_server,
            gateway,
            dashboard,
            worker,
            stop,
            tasks,
        })
    }

    /// Stops the samples, the scheduler and the worker (gracefully), then the server.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Some((g, _)) = self.gateway {
            g.shutdown().await;
        }
        if let Some(d) = self.dashboard {
            d.shutdown().await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.worker.shutdown().await;
        if let Some(t) = self.telemetry {
            t.shutdown().await;
        }
        drop(self.server);
    }
}

/// A webhook receiver: `/hooks/ok` accepts, `/hooks/gone` answers 410.
async fn start_sink() -> std::io::Result<SocketAddr> {
    use axum::http::StatusCode;
    use axum::routing::post;
    let app = axum::Router::new()
        .route("/hooks/ok", post(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/hooks/gone",
            post(|| async { (StatusCode::GONE, "subscription removed") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            lines::say("hooks", &format!("webhook sink failed: {e}"));
        }
    });
    Ok(addr)
}
