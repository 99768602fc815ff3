//! The deployable worker: composes the handler crates and runs the groups it is told to.
//!
//! Each handler crate has its own state, so each runs in a [`conveyor::Worker`] of its own; all
//! of them share one connection, one telemetry registry and one shutdown. Running several copies
//! of the binary (on one machine or many) is how operators scale: copies running a group share
//! its consumer.
//!
//! Groups: `fraud-triage`, `fraud-explain`, `fraud-explain-high`, `webhooks`, `email`,
//! `video-intake`, `video-transcribe`, `video-summarize`, `analysis`, `reports`, `maintenance`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conveyor::store::{FileStore, KvStore, STORE_BUCKET, Store, StoreError};
use conveyor::telemetry::Telemetry;
use conveyor::{Connection, Group, Worker, WorkerBuilder, WorkerHandle};

/// Every group the worker knows, in start order.
pub fn all_groups() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    all.extend(conveyor_fraud::GROUPS);
    all.extend(conveyor_notifications::GROUPS);
    all.extend(conveyor_video::GROUPS);
    all.push(conveyor_analysis::GROUP);
    all.extend(conveyor_reports::GROUPS);
    all
}

/// Where handler state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In a JetStream key-value bucket: every worker process on any host sees the same state
    /// (the default).
    Kv {
        /// The bucket (default [`STORE_BUCKET`]).
        bucket: String,
    },
    /// In files under a local directory: for a single host.
    Dir(PathBuf),
}

impl Default for StoreChoice {
    fn default() -> Self {
        Self::Kv {
            bucket: STORE_BUCKET.into(),
        }
    }
}

impl StoreChoice {
    /// Opens the store.
    pub async fn open(&self, conn: &Connection) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Self::Kv { bucket } => Arc::new(KvStore::open_bucket(conn, bucket).await?),
            Self::Dir(dir) => Arc::new(FileStore::new(dir)),
        })
    }
}

/// What the worker runs and with which settings.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Groups to run (empty: all).
    pub groups: Vec<String>,
    /// Handlers per group this process runs at once (`None`: each group's default).
    pub concurrency: Option<usize>,
    /// Where handler state is kept.
    pub store: StoreChoice,
    /// Where rendered emails are written (when no SMTP server is given).
    pub outbox_dir: PathBuf,
    /// Send emails through this SMTP server instead (`smtp://host:25`,
    /// `smtp://user:pass@host:587?tls=required`, `smtps://user:pass@host:465`).
    pub smtp_url: Option<String>,
    /// Base URL of the LLM / AI API.
    pub ai_base_url: String,
    /// The webhook signing secret.
    pub webhook_secret: String,
    /// The analysis job's length: files and time per file.
    pub analysis: conveyor_analysis::AnalysisConfig,
    /// Where alerts of blocked orders go.
    pub alert_to: String,
    /// Grace period of a shutdown.
    pub shutdown_grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            concurrency: None,
            store: StoreChoice::default(),
            outbox_dir: ".conveyor/outbox".into(),
            smtp_url: None,
            ai_base_url: "http://127.0.0.1:8089".into(),
            webhook_secret: conveyor_notifications::NotificationsConfig::default().webhook_secret,
            analysis: conveyor_analysis::AnalysisConfig::default(),
            alert_to: "risk-team@example.com".into(),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A group name the worker does not know.
    #[error("unknown group {0:?}; known groups: {known}", known = all_groups().join(", "))]
    UnknownGroup(String),
    /// A handler crate's state could not be built.
    #[error("cannot set up {what}: {source}")]
    Setup {
        /// Which crate.
        what: &'static str,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A worker could not be built.
    #[error(transparent)]
    Build(#[from] conveyor::BuildError),
}

/// The running workers.
#[derive(Debug)]
pub struct Running {
    handle: WorkerHandle,
    groups: Vec<String>,
}

impl Running {
    /// The groups running.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Shuts the worker down gracefully.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}

fn selected(options: &WorkerOptions) -> Result<Vec<String>, StartError> {
    let known = all_groups();
    if options.groups.is_empty() {
        return Ok(known.iter().map(|g| (*g).to_owned()).collect());
    }
    for g in &options.groups {
        if !known.contains(&g.as_str()) {
            return Err(StartError::UnknownGroup(g.clone()));
        }
    }
    Ok(options.groups.clone())
}

fn setup<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    what: &'static str,
) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Setup {
        what,
        source: e.into(),
    }
}

/// Adds the chosen groups of one crate, each carrying that crate's state, to the worker.
fn add<S: Clone + Send + Sync + 'static>(
    builder: WorkerBuilder<()>,
    state: S,
    groups: Vec<Group<S>>,
    chosen: &[String],
    options: &WorkerOptions,
) -> WorkerBuilder<()> {
    groups
        .into_iter()
        .filter(|g| chosen.iter().any(|c| c == g.name()))
        .fold(builder, |builder, group| {
            let group = match options.concurrency {
                Some(n) => group.concurrency(n),
                None => group,
            };
            builder.group(group.with_state(state.clone()))
        })
}

/// Starts the chosen groups on `conn`, recording metrics in `telemetry`.
pub async fn start(
    conn: &Connection,
    options: &WorkerOptions,
    telemetry: &Telemetry,
) -> Result<Running, StartError> {
    let chosen = selected(options)?;
    let store = options
        .store
        .open(conn)
        .await
        .map_err(|e| StartError::Setup {
            what: "the store",
            source: Box::new(e),
        })?;
    // One worker for every crate: one consumer loop per group, one cancellation and pause
    // watcher, one backstop.
    let mut builder = Worker::builder(conn, ())
        .telemetry(telemetry)
        .shutdown_grace(options.shutdown_grace);

    let fraud = conveyor_fraud::Fraud::new(
        conveyor_fraud::FraudConfig {
            llm_base_url: options.ai_base_url.clone(),
            alert_to: options.alert_to.clone(),
            ..conveyor_fraud::FraudConfig::default()
        },
        store.clone(),
    )
    .map_err(setup("fraud handlers"))?;
    builder = add(
        builder,
        Arc::new(fraud),
        conveyor_fraud::groups(),
        &chosen,
        options,
    );

    let notifications_config = conveyor_notifications::NotificationsConfig {
        webhook_secret: options.webhook_secret.clone(),
        ..conveyor_notifications::NotificationsConfig::default()
    };
    let outbox: Arc<dyn conveyor_notifications::Outbox> = match &options.smtp_url {
        Some(url) => Arc::new(
            conveyor_notifications::SmtpOutbox::from_url(url).map_err(setup("the SMTP outbox"))?,
        ),
        None => Arc::new(conveyor_notifications::DirectoryOutbox::new(
            &options.outbox_dir,
        )),
    };
    let notifications = conveyor_notifications::Notifications::new(
        notifications_config.clone(),
        store.clone(),
        outbox,
    )
    .map_err(setup("notification handlers"))?;
    builder = add(
        builder,
        Arc::new(notifications),
        conveyor_notifications::groups(&notifications_config),
        &chosen,
        options,
    );

    let video = conveyor_video::Video::new(
        conveyor_video::VideoConfig {
            ai_base_url: options.ai_base_url.clone(),
            ..conveyor_video::VideoConfig::default()
        },
        store.clone(),
    )
    .map_err(setup("video handlers"))?;
    builder = add(
        builder,
        Arc::new(video),
        conveyor_video::groups(),
        &chosen,
        options,
    );

    let analysis = conveyor_analysis::Analysis::new(options.analysis.clone(), store.clone());
    builder = add(
        builder,
        Arc::new(analysis),
        conveyor_analysis::groups(&options.analysis),
        &chosen,
        options,
    );

    let reports = conveyor_reports::Reports::new(
        conveyor_reports::ReportsConfig {
            ai_base_url: options.ai_base_url.clone(),
            ..conveyor_reports::ReportsConfig::default()
        },
        store,
    )
    .map_err(setup("report handlers"))?;
    builder = add(
        builder,
        Arc::new(reports),
        conveyor_reports::groups(),
        &chosen,
        options,
    );

    Ok(Running {
        handle: builder.build()?.spawn(),
        groups: chosen,
    })
}
