//! The scheduler: fires each schedule's ticks while this process leads.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use conveyor::runs::RUNS_BUCKET;
use conveyor::telemetry::Telemetry;
use conveyor::{Connection, Publisher, TenantId};
use tokio_util::sync::CancellationToken;

use crate::Schedule;
use crate::fire::{Fired, OWED_RETRY_MS, fire, retry_owed};
use crate::lease::{self, Leadership};
use crate::registry::{load_registry, watch_registry};
use crate::schedule::{CatchUp, CompiledSchedule, ScheduleError, compile_all};
use crate::stats::SchedulerCollector;
pub use crate::stats::Stats;

/// The key-value bucket holding the last fired tick of each schedule.
pub const STATE_BUCKET: &str = conveyor::topology::SCHEDULES_BUCKET;
/// The key-value bucket of the tenant registry: one key per tenant id.
pub const TENANT_BUCKET: &str = conveyor::topology::TENANTS_BUCKET;
/// A tick published more than this after its time is logged and counted as late.
pub const LATE_AFTER: Duration = Duration::from_secs(1);

/// Settings of a scheduler process.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's id in the lease (default: host name + process id + random suffix).
    pub node_id: String,
    /// Lease TTL (default 2 s): a dead leader is replaced within about this long.
    pub lease_ttl: Duration,
    /// Act as leader without an election. Only for testing what happens when two processes
    /// both believe they lead.
    pub force_leader: bool,
    /// How often the leader samples what retention limits removed (see
    /// [`conveyor::retention`]); `None`: never. Default 10 s.
    pub retention_sample_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_id: default_node_id(),
            lease_ttl: Duration::from_secs(2),
            force_leader: false,
            retention_sample_every: Some(crate::retention::DEFAULT_SAMPLE_EVERY),
        }
    }
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "scheduler".into());
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &suffix[suffix.len() - 6..]
    )
}

/// A leader-elected cron scheduler.
///
/// ```no_run
/// use conveyor_scheduler::{Options, Schedule, Scheduler};
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let conn = conveyor::Connection::connect("nats://127.0.0.1:4222").await?;
/// let schedules = vec![
///     Schedule::new("health-check", "*/15 * * * *", "health.check").tenant_registry(),
/// ];
/// let scheduler = Scheduler::new(&conn, &schedules, Options::default())?;
/// scheduler
///     .run_until(async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Scheduler {
    conn: Connection,
    schedules: Vec<CompiledSchedule>,
    options: Options,
    leadership: Arc<Leadership>,
    stats: Arc<Stats>,
    telemetry: Option<Telemetry>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Ctx {
    pub(crate) publisher: Publisher,
    pub(crate) leadership: Arc<Leadership>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) state: kv::Store,
    pub(crate) runs: kv::Store,
    /// The tenant registry; `None` until it has loaded once.
    pub(crate) registry: Arc<RwLock<Option<BTreeSet<TenantId>>>>,
    pub(crate) ids: crate::ids::TickIds,
}

async fn bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
    description: &str,
) -> Result<kv::Store, crate::RunError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.into(),
        description: description.into(),
        history: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| crate::error::bucket_error(name, e))
}

impl Scheduler {
    /// Validates `schedules`; the first invalid one is the error.
    pub fn new(
        conn: &Connection,
        schedules: &[Schedule],
        options: Options,
    ) -> Result<Self, ScheduleError> {
        Ok(Self {
            conn: conn.clone(),
            schedules: compile_all(schedules)?,
            leadership: Arc::new(Leadership::new(options.force_leader)),
            options,
            stats: Arc::new(Stats::default()),
            telemetry: None,
        })
    }

    /// Exposes the scheduler's counters and leadership in `telemetry`
    /// (`conveyor_scheduler_ticks_fired_total`, `..._skipped_total`, `..._late_total`,
    /// `..._duplicates_total`, `..._errors_total`, `conveyor_scheduler_leader`), counts its
    /// publish errors, and adds the readiness check `nats` (connected).
    pub fn with_telemetry(mut self, telemetry: &Telemetry) -> Self {
        let collector = SchedulerCollector {
            stats: self.stats.clone(),
            leadership: self.leadership.clone(),
        };
        telemetry.register(|r| r.register_collector(Box::new(collector)));
        let client = self.conn.client().clone();
        telemetry.add_check("nats", move || {
            client.connection_state() == async_nats::connection::State::Connected
        });
        self.telemetry = Some(telemetry.clone());
        self
    }

    /// What the scheduler has done so far.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// This process's leadership.
    pub fn leadership(&self) -> Arc<Leadership> {
        self.leadership.clone()
    }

    /// Runs until `signal` completes, then stops firing and releases the lease. Fails, before it
    /// fires anything, with a [`RunError`](crate::RunError) when a bucket it needs or the
    /// tick-id secret cannot be opened; once running it does not fail (publish errors are retried
    /// and counted).
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), crate::RunError> {
        let js = self.conn.jetstream();
        let lease_store = lease::lease_bucket(js, self.options.lease_ttl).await?;
        let state = bucket(js, STATE_BUCKET, "Last fired tick per schedule").await?;
        let ids = crate::ids::TickIds::load(&state).await?;
        let ctx = Arc::new(Ctx {
            publisher: match &self.telemetry {
                Some(t) => Publisher::new(&self.conn)
                    .with_source("conveyor-scheduler")
                    .with_telemetry(t),
                None => Publisher::new(&self.conn).with_source("conveyor-scheduler"),
            },
            leadership: self.leadership.clone(),
            stats: self.stats.clone(),
            state,
            runs: bucket(js, RUNS_BUCKET, "Running scheduled runs").await?,
            registry: Arc::new(RwLock::new(None)),
            ids,
        });
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        if self.schedules.iter().any(|s| s.spec.tenant_registry) {
            let tenants = bucket(js, TENANT_BUCKET, "Tenant registry").await?;
            load_registry(&tenants, &ctx.registry).await;
            tasks.push(tokio::spawn(watch_registry(
                tenants,
                ctx.registry.clone(),
                shutdown.clone(),
            )));
        }
        if !self.options.force_leader {
            tasks.push(tokio::spawn(lease::run(
                lease_store,
                self.options.node_id.clone(),
                self.options.lease_ttl,
                self.leadership.clone(),
                shutdown.clone(),
            )));
        }
        for s in self.schedules {
            tasks.push(tokio::spawn(run_schedule(ctx.clone(), s, shutdown.clone())));
        }
        if let Some(every) = self.options.retention_sample_every {
            tasks.push(tokio::spawn(crate::retention::run(
                self.conn.clone(),
                self.leadership.clone(),
                self.stats.clone(),
                every,
                shutdown.clone(),
            )));
        }
        tracing::info!(node = %self.options.node_id, "scheduler running");
        signal.await;
        shutdown.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let _ = self.conn.client().flush().await;
        tracing::info!(node = %self.options.node_id, "scheduler stopped");
        Ok(())
    }
}

fn state_key(schedule: &str) -> String {
    format!("last.{schedule}")
}

/// Reads the last fired tick of a schedule and the revision to update it with.
async fn load_state(
    store: &kv::Store,
    schedule: &str,
) -> Result<(Option<DateTime<Utc>>, Option<u64>), kv::EntryError> {
    match store.entry(state_key(schedule)).await? {
        Some(e) if e.operation == kv::Operation::Put => {
            let tick = std::str::from_utf8(&e.value)
                .ok()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc));
            Ok((tick, Some(e.revision)))
        }
        _ => Ok((None, None)),
    }
}

/// Stores the last fired tick with compare-and-set; false when another process moved it.
async fn save_state(
    store: &kv::Store,
    schedule: &str,
    tick: DateTime<Utc>,
    rev: &mut Option<u64>,
) -> bool {
    let value = bytes::Bytes::from(tick.to_rfc3339());
    let result = match *rev {
        Some(r) => store
            .update(state_key(schedule), value, r)
            .await
            .map_err(|e| e.to_string()),
        None => store
            .create(state_key(schedule), value)
            .await
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(new_rev) => {
            *rev = Some(new_rev);
            true
        }
        Err(e) => {
            tracing::warn!(schedule, error = %e, "last fired tick was moved by another scheduler; reloading");
            false
        }
    }
}

async fn run_schedule(ctx: Arc<Ctx>, schedule: CompiledSchedule, shutdown: CancellationToken) {
    let name = schedule.name().to_owned();
    let mut loaded = false;
    let mut last: DateTime<Utc> = Utc::now();
    let mut rev: Option<u64> = None;
    // The leadership term the state was loaded in. A pause in acting (a renewal that came late
    // but succeeded) keeps the term: nobody else fired meanwhile, so there is nothing to catch up.
    let mut loaded_term = None;
    // Tenants whose event of a fired tick is not stored yet: retried on their own, so they hold
    // neither the schedule nor the tenants that got the tick.
    let mut owed: Vec<(DateTime<Utc>, Vec<TenantId>)> = Vec::new();
    while !shutdown.is_cancelled() {
        if !ctx.leadership.is_leader() {
            sleep_or(Duration::from_millis(50), &shutdown).await;
            continue;
        }
        if ctx.leadership.term() != loaded_term {
            loaded = false;
            owed.clear();
            loaded_term = ctx.leadership.term();
        }
        if !owed.is_empty() {
            retry_owed(&ctx, &schedule, &mut owed).await;
        }
        let now = Utc::now();
        let due = if loaded {
            // Leading without a break: every tick that came due fires.
            schedule.ticks_between(last, now, LEADING_MAX).0
        } else {
            // Taking over (start, failover, after an outage): the catch-up policy decides what
            // happens to the ticks nobody fired.
            let stored = match load_state(&ctx.state, &name).await {
                Ok((tick, r)) => {
                    rev = r;
                    tick
                }
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "cannot read schedule state");
                    sleep_or(Duration::from_millis(500), &shutdown).await;
                    continue;
                }
            };
            loaded = true;
            match stored {
                None => {
                    // A new schedule starts now: nothing before it was missed.
                    if !save_state(&ctx.state, &name, now, &mut rev).await {
                        loaded = false;
                    }
                    last = now;
                    continue;
                }
                Some(t) => {
                    let fire = catch_up(&ctx, &schedule, t, now);
                    last = t;
                    if schedule.spec.catch_up == CatchUp::Skip && t < now {
                        // Nothing before now fires: move the state past the missed ticks.
                        if !save_state(&ctx.state, &name, now, &mut rev).await {
                            loaded = false;
                            continue;
                        }
                        last = now;
                    }
                    fire
                }
            }
        };
        if let Some(&newest) = due.last() {
            let mut ok = true;
            for tick in &due {
                if !ctx.leadership.is_leader() {
                    ok = false;
                    break;
                }
                match fire(&ctx, &schedule, *tick, None).await {
                    Fired::All => {}
                    Fired::Partly(failed) => owed.push((*tick, failed)),
                    Fired::NoTenants => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                sleep_or(Duration::from_millis(200), &shutdown).await;
                continue;
            }
            if save_state(&ctx.state, &name, newest.max(last), &mut rev).await {
                last = newest.max(last);
            } else {
                loaded = false;
            }
            continue;
        }
        let Some(next) = schedule.next_after(last) else {
            tracing::info!(schedule = %name, "schedule has no further ticks");
            return;
        };
        let cap = if owed.is_empty() { 250 } else { OWED_RETRY_MS };
        let wait = (next - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(Duration::from_millis(cap));
        sleep_or(wait, &shutdown).await;
    }
}

/// Most ticks fired in one pass while leading without a break.
const LEADING_MAX: usize = 1000;

/// Applies the catch-up policy to the ticks in `(last, now]` when taking over. Returns the ticks
/// to fire; the others are counted and logged as skipped. With `Skip`, the state moves to `now`.
fn catch_up(
    ctx: &Ctx,
    schedule: &CompiledSchedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let policy = schedule.spec.catch_up;
    let limit = match policy {
        CatchUp::All => schedule.spec.catch_up_max as usize,
        _ => 1,
    };
    let (mut due, dropped) = schedule.ticks_between(last, now, limit);
    let mut skipped = dropped;
    if policy == CatchUp::Skip {
        skipped += due.len();
        due.clear();
    }
    if skipped > 0 {
        ctx.stats
            .skipped
            .fetch_add(skipped as u64, Ordering::Relaxed);
        tracing::info!(
            schedule = schedule.name(),
            skipped,
            since = %last,
            policy = ?policy,
            "missed ticks skipped"
        );
    }
    due
}

async fn sleep_or(d: Duration, token: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = token.cancelled() => {}
    }
}

#[cfg(test)]
mod tests;
