//! What the browser test runs against: a nats-server, a worker whose groups fail, hang and
//! record history, the dashboard, chromedriver and a headless Chromium.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conveyor::testing::NatsServer;
use conveyor::{
    Connection, Context, EventOptions, Group, HandlerError, HandlerResult, Publisher, Worker,
};
use conveyor_dashboard::{Dashboard, DashboardConfig};
use conveyor_schemas::commerce::OrderCreated;
use conveyor_schemas::reviews::ReviewSubmitted;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Health(Arc<AtomicBool>);

/// Orders whose id starts with `bad` fail for good until healed.
async fn order(o: OrderCreated, ctx: Context<Health>) -> HandlerResult {
    if o.order_id.as_str().starts_with("bad") && !ctx.state().0.load(Ordering::SeqCst) {
        return Err(HandlerError::permanent(format!(
            "refused order {}",
            o.order_id.as_str()
        )));
    }
    Ok(())
}

/// A review takes until it is cancelled.
async fn slow(_: ReviewSubmitted, ctx: Context<Health>) -> HandlerResult {
    ctx.progress(40, "reading the review").await;
    tokio::select! {
        () = ctx.cancelled() => Ok(()),
        () = tokio::time::sleep(Duration::from_secs(120)) => Ok(()),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct World {
    _server: NatsServer,
    pub conn: Connection,
    health: Health,
    worker: Option<conveyor::WorkerHandle>,
    dashboard: Option<Dashboard>,
    _driver: Driver,
    pub browser: Client,
    _profile: tempfile::TempDir,
    pub bad_letter: u64,
    pub script_letter: u64,
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut DashboardConfig)) -> Self {
        conveyor_tests::init_tracing();
        let server = NatsServer::start().unwrap();
        let conn = server.connect().await.unwrap();
        conveyor::topology::provision(&conn, &conveyor::topology::Topology::default())
            .await
            .unwrap();
        let health = Health::default();
        let worker = Worker::builder(&conn, health.clone())
            .group(Group::new("orders").history(true).handle(order))
            .group(Group::new("slow").history(true).handle(slow))
            .build()
            .unwrap()
            .spawn();
        let publisher = Publisher::new(&conn).with_source("shop");
        let mut bad = conveyor_tests::order("bad-1", 1200);
        bad.placed_at = chrono::Utc::now();
        publisher
            .publish_with("acme", &bad, EventOptions::default().id("order-bad-1"))
            .await
            .unwrap();
        let script = conveyor_tests::order("bad-<script>alert(1)</script>", 900);
        publisher
            .publish_with(
                "globex",
                &script,
                EventOptions::default().id("order-script"),
            )
            .await
            .unwrap();
        publisher
            .publish("acme", &conveyor_tests::order("good-1", 500))
            .await
            .unwrap();
        let review: ReviewSubmitted = serde_json::from_value(
            conveyor_schemas::find("review.submitted")
                .unwrap()
                .example(),
        )
        .unwrap();
        publisher
            .publish_with("globex", &review, EventOptions::default().id("review-1"))
            .await
            .unwrap();
        let letters = conveyor_tests::dead_letters(&conn, 2, Duration::from_secs(20)).await;
        assert_eq!(letters.len(), 2, "the two bad orders are dead letters");
        let (bad_letter, script_letter) = letter_seqs(&conn).await;

        let mut config = DashboardConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            schedules: vec![
                conveyor_scheduler::Schedule::new("nightly-health", "0 3 * * *", "health.check")
                    .timezone("Europe/Paris")
                    .tenants(["acme", "globex"]),
            ],
            sample_every: Duration::from_millis(500),
            ..DashboardConfig::default()
        };
        configure(&mut config);
        let dashboard = Dashboard::start(&conn, config).await.unwrap();
        let w = Self::with_browser(
            server,
            conn,
            health,
            worker,
            dashboard,
            bad_letter,
            script_letter,
        )
        .await;
        w.wait_for_state("review-1", "slow", "running").await;
        w
    }

    async fn with_browser(
        server: NatsServer,
        conn: Connection,
        health: Health,
        worker: conveyor::WorkerHandle,
        dashboard: Dashboard,
        bad_letter: u64,
        script_letter: u64,
    ) -> Self {
        let chromedriver = which("chromedriver").expect(
            "chromedriver is not installed: run `python3 dev.py install-browser` (Debian's chromium and chromium-driver)",
        );
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|n| which(n))
            .expect("chromium is not installed: run `python3 dev.py install-browser`");
        let port = free_port();
        let driver = Driver(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1360,900",
                         format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let browser = loop {
            // chromedriver speaks plain HTTP on loopback: no TLS connector.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start Chromium through chromedriver: {e}"),
            }
        };
        Self {
            _server: server,
            conn,
            health,
            worker: Some(worker),
            dashboard: Some(dashboard),
            _driver: driver,
            browser,
            _profile: profile,
            bad_letter,
            script_letter,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let addr = self.dashboard.as_ref().map(|d| d.local_addr()).unwrap();
        format!("http://{addr}{path}")
    }

    pub fn heal(&self) {
        self.health.0.store(true, Ordering::SeqCst);
    }

    /// Waits until the latest attempt at `event_id` in `group` is in `state`.
    pub async fn wait_for_state(&self, event_id: &str, group: &str, state: &str) {
        conveyor_tests::eventually(
            Duration::from_secs(20),
            &format!("{event_id} {state} in {group}"),
            || async {
                conveyor::history::runs_of_event(&self.conn, event_id)
                    .await
                    .unwrap_or_default()
                    .iter()
                    .filter(|r| r.group == group)
                    .max_by_key(|r| r.attempt)
                    .is_some_and(|r| r.state.as_str() == state)
            },
        )
        .await;
    }

    /// Waits for an event of `EVENTS` matching `pred`.
    pub async fn find_event(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for m in conveyor_tests::read_stream(&self.conn, "EVENTS", 0, Duration::ZERO).await {
                if let Ok(v) = serde_json::from_slice::<Value>(&m.payload)
                    && pred(&v)
                {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "no such event");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.browser.clone().close().await;
        if let Some(d) = self.dashboard.take() {
            d.shutdown().await;
        }
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
    }
}

/// The DLQ sequences of the `order-bad-1` and `order-script` letters.
async fn letter_seqs(conn: &Connection) -> (u64, u64) {
    let stored = conveyor::dlq::list(conn, &conveyor::dlq::Filter::default())
        .await
        .unwrap();
    let find = |needle: &str| {
        stored
            .iter()
            .find(|s| s.letter.error.contains(needle))
            .map(|s| s.sequence)
            .unwrap_or_else(|| panic!("no dead letter for {needle}"))
    };
    (find("refused order bad-1"), find("<script>"))
}
