use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use conveyor::Connection;
use conveyor_scheduler::lease::{self, LEASE_BUCKET};
use conveyor_scheduler::{CatchUp, Options, Overlap, Schedule, Scheduler};
use conveyor_tests::{eventually, read_stream, server};

/// A cron event as stored: (schedule, tenant, scheduled time).
type Tick = (String, String, DateTime<Utc>);

async fn cron_events(conn: &Connection) -> Vec<Tick> {
    read_stream(conn, "EVENTS", 0, Duration::ZERO)
        .await
        .into_iter()
        .filter_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.message.payload).ok()?;
            let id = v["id"].as_str()?;
            if !id.starts_with("cron:") {
                return None;
            }
            let at = DateTime::parse_from_rfc3339(v["data"]["scheduled_at"].as_str()?).ok()?;
            Some((
                v["data"]["schedule"].as_str()?.to_owned(),
                v["tenantid"].as_str()?.to_owned(),
                at.with_timezone(&Utc),
            ))
        })
        .collect()
}

/// Ticks per (schedule, tenant), asserting none is stored twice.
fn by_stream(events: &[Tick]) -> BTreeMap<(String, String), Vec<DateTime<Utc>>> {
    let mut out: BTreeMap<(String, String), Vec<DateTime<Utc>>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (s, t, at) in events {
        assert!(
            seen.insert((s.clone(), t.clone(), *at)),
            "tick {s} {t} {at} stored twice"
        );
        out.entry((s.clone(), t.clone())).or_default().push(*at);
    }
    for ticks in out.values_mut() {
        ticks.sort();
    }
    out
}

fn assert_no_gaps(ticks: &[DateTime<Utc>], what: &str) {
    for w in ticks.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            1,
            "{what}: gap between {} and {}",
            w[0],
            w[1]
        );
    }
}

struct SchedulerProcess {
    child: Child,
    node: String,
    log: std::path::PathBuf,
}

impl SchedulerProcess {
    fn start(url: &str, config: &Path, node: &str, ttl_ms: u64, dir: &Path) -> Self {
        let log = dir.join(format!("{node}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_test_scheduler"))
            .args(["--server", url, "run", "--config"])
            .arg(config)
            .args(["--node-id", node, "--lease-ttl-ms", &ttl_ms.to_string()])
            .env("RUST_LOG", "conveyor_scheduler=debug")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self {
            child,
            node: node.into(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn leader(conn: &Connection) -> Option<String> {
    let store = conn.jetstream().get_key_value(LEASE_BUCKET).await.ok()?;
    lease::current_leader(&store).await.map(|l| l.node)
}

fn every_second_config(dir: &Path, tenants: &str) -> std::path::PathBuf {
    let path = dir.join("schedules.toml");
    std::fs::write(
        &path,
        format!(
            "[[schedule]]\nname = \"pulse\"\ncron = \"* * * * * *\"\nevent_type = \"health.check\"\ntenants = {tenants}\ncatch_up = \"all\"\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_fire_each_tick_once_and_survive_a_sigkill_of_the_leader() {
    let (server, conn) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = every_second_config(dir.path(), r#"["acme", "globex"]"#);
    let mut procs: Vec<SchedulerProcess> = (0..3)
        .map(|i| {
            SchedulerProcess::start(&server.url(), &config, &format!("n{i}"), 2000, dir.path())
        })
        .collect();
    eventually(Duration::from_secs(15), "ticks flowing", || async {
        cron_events(&conn).await.len() >= 6
    })
    .await;
    // Exactly one process fires; the others publish nothing.
    let firing: Vec<&str> = procs
        .iter()
        .filter(|p| p.log().contains("tick fired"))
        .map(|p| p.node.as_str())
        .collect();
    assert_eq!(firing.len(), 1, "firing processes: {firing:?}");
    assert!(
        procs
            .iter()
            .all(|p| !p.log().contains("tick already published"))
    );
    let old = leader(&conn).await.expect("a leader");
    assert_eq!(old, firing[0]);

    let killed_at = Instant::now();
    procs.iter_mut().find(|p| p.node == old).unwrap().kill();
    eventually(Duration::from_secs(10), "a new leader", || async {
        leader(&conn).await.is_some_and(|l| l != old)
    })
    .await;
    let failover = killed_at.elapsed();
    assert!(
        failover < Duration::from_secs(4),
        "failover took {failover:?} (lease TTL 2 s)"
    );
    let after_kill = Utc::now();
    eventually(
        Duration::from_secs(10),
        "ticks after the handover",
        || async {
            cron_events(&conn)
                .await
                .iter()
                .any(|(_, _, at)| *at > after_kill + chrono::Duration::seconds(2))
        },
    )
    .await;
    for p in &mut procs {
        p.terminate();
    }
    let ticks = by_stream(&cron_events(&conn).await);
    assert_eq!(ticks.len(), 2, "both tenants");
    for ((_, tenant), t) in &ticks {
        assert_no_gaps(t, tenant);
        assert!(t.len() >= 6, "{tenant}: {} ticks", t.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_over_without_waiting_for_the_lease_ttl() {
    let (server, conn) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = every_second_config(dir.path(), r#"["acme"]"#);
    // A long TTL: a handover faster than it can only come from the released lease.
    let mut procs: Vec<SchedulerProcess> = (0..2)
        .map(|i| {
            SchedulerProcess::start(&server.url(), &config, &format!("g{i}"), 15_000, dir.path())
        })
        .collect();
    eventually(Duration::from_secs(10), "a leader", || async {
        leader(&conn).await.is_some()
    })
    .await;
    let old = leader(&conn).await.unwrap();
    let stopped_at = Instant::now();
    procs
        .iter_mut()
        .find(|p| p.node == old)
        .unwrap()
        .terminate();
    eventually(Duration::from_secs(5), "the follower to lead", || async {
        leader(&conn).await.is_some_and(|l| l != old)
    })
    .await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "handover took {:?}",
        stopped_at.elapsed()
    );
    let after = Utc::now();
    eventually(
        Duration::from_secs(10),
        "ticks from the new leader",
        || async {
            cron_events(&conn)
                .await
                .iter()
                .any(|(_, _, at)| *at > after)
        },
    )
    .await;
    for p in &mut procs {
        p.terminate();
    }
    let ticks = by_stream(&cron_events(&conn).await);
    assert_no_gaps(&ticks[&("pulse".to_owned(), "acme".to_owned())], "acme");
}

fn pulse(name: &str, event_type: &str, catch_up: CatchUp) -> Schedule {
    Schedule::new(name, "* * * * * *", event_type)
        .tenants(["acme"])
        .catch_up(catch_up)
}

async fn run_for(
    conn: &Connection,
    schedules: &[Schedule],
    options: Options,
    d: Duration,
) -> std::sync::Arc<conveyor_scheduler::Stats> {
    let scheduler = Scheduler::new(conn, schedules, options).unwrap();
    let stats = scheduler.stats();
    scheduler.run_until(tokio::time::sleep(d)).await.unwrap();
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_that_both_believe_they_lead_store_each_tick_once() {
    let (server, conn) = server().await;
    let other = server.connect().await.unwrap();
    let schedules = vec![pulse("twin", "health.check", CatchUp::All).tenants(["acme", "globex"])];
    let forced = || Options {
        force_leader: true,
        ..Options::default()
    };
    let (a, b) = tokio::join!(
        run_for(&conn, &schedules, forced(), Duration::from_secs(4)),
        run_for(&other, &schedules, forced(), Duration::from_secs(4)),
    );
    let ticks = by_stream(&cron_events(&conn).await);
    let stored: usize = ticks.values().map(Vec::len).sum();
    let fired = a.fired.load(std::sync::atomic::Ordering::Relaxed)
        + b.fired.load(std::sync::atomic::Ordering::Relaxed);
    let dups = a.duplicates.load(std::sync::atomic::Ordering::Relaxed)
        + b.duplicates.load(std::sync::atomic::Ordering::Relaxed);
    assert!(stored >= 6, "{stored} stored");
    assert_eq!(
        fired as usize, stored,
        "each stored tick was new to the stream once"
    );
    assert!(dups > 0, "both processes published");
    for ((_, tenant), t) in &ticks {
        assert_no_gaps(t, tenant);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_policies_after_a_ten_second_outage() {
    let (_server, conn) = server().await;
    let schedules = vec![
        pulse("skipper", "health.check", CatchUp::Skip),
        pulse("latest", "hourly.sync", CatchUp::Latest),
        pulse("all", "daily.metrics", CatchUp::All),
    ];
    run_for(
        &conn,
        &schedules,
        Options::default(),
        Duration::from_secs(3),
    )
    .await;
    let stopped = Utc::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Ticks are whole seconds: restart early in a second, so the takeover (tens of ms, the lease
    // was released) happens before the next tick and the newest missed tick is before `restarted`.
    while !(100..300).contains(&Utc::now().timestamp_subsec_millis()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restarted = Utc::now();
    run_for(
        &conn,
        &schedules,
        Options::default(),
        Duration::from_secs(3),
    )
    .await;
    let ticks = by_stream(&cron_events(&conn).await);
    let in_outage = |name: &str| {
        ticks[&(name.to_owned(), "acme".to_owned())]
            .iter()
            .filter(|t| **t > stopped && **t < restarted)
            .count()
    };
    assert_eq!(
        in_outage("skipper"),
        0,
        "skip fires none of the missed ticks"
    );
    assert_eq!(
        in_outage("latest"),
        1,
        "latest fires the newest missed tick once"
    );
    let missed = (restarted - stopped).num_seconds();
    let all = in_outage("all") as i64;
    assert!(
        (missed - 1..=missed + 1).contains(&all),
        "all fires every missed tick: {all} of ~{missed}"
    );
    assert_no_gaps(&ticks[&("all".to_owned(), "acme".to_owned())], "all");
    for name in ["skipper", "latest"] {
        let t = &ticks[&(name.to_owned(), "acme".to_owned())];
        assert!(
            t.iter().any(|t| *t > restarted),
            "{name} fires again after the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_added_to_the_registry_gets_events_from_the_next_tick() {
    let (_server, conn) = server().await;
    // The topology provisions the registry bucket.
    let registry = conn
        .jetstream()
        .get_key_value(conveyor_scheduler::TENANT_BUCKET)
        .await
        .unwrap();
    registry.put("acme", "{}".into()).await.unwrap();
    let schedules = vec![
        Schedule::new("registry-pulse", "* * * * * *", "health.check")
            .tenant_registry()
            .catch_up(CatchUp::Skip),
    ];
    let scheduler = Scheduler::new(&conn, &schedules, Options::default()).unwrap();
    let run = tokio::spawn(scheduler.run_until(tokio::time::sleep(Duration::from_secs(6))));
    eventually(Duration::from_secs(10), "acme ticks", || async {
        cron_events(&conn).await.iter().any(|(_, t, _)| t == "acme")
    })
    .await;
    let added = Utc::now();
    registry.put("globex", "{}".into()).await.unwrap();
    eventually(Duration::from_secs(4), "globex ticks", || async {
        cron_events(&conn)
            .await
            .iter()
            .any(|(_, t, _)| t == "globex")
    })
    .await;
    run.await.unwrap().unwrap();
    let ticks = by_stream(&cron_events(&conn).await);
    let globex = &ticks[&("registry-pulse".to_owned(), "globex".to_owned())];
    assert!(
        globex[0] >= added - chrono::Duration::seconds(1),
        "no ticks from before it was added"
    );
    assert!(
        globex[0] <= added + chrono::Duration::seconds(2),
        "from the next tick: {}",
        globex[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_runs_are_skipped_until_the_worker_finishes() {
    use conveyor::{Context, Group, HandlerResult, Worker};
    use conveyor_schemas::scheduled::HealthCheck;
    let (_server, conn) = server().await;
    async fn slow(_: HealthCheck, _: Context) -> HandlerResult {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        Ok(())
    }
    let worker = Worker::builder(&conn, ())
        .group(Group::new("health").handle(slow))
        .build()
        .unwrap()
        .spawn();
    let schedules =
        vec![pulse("guarded", "health.check", CatchUp::Skip).overlap(Overlap::SkipIfRunning)];
    let stats = run_for(
        &conn,
        &schedules,
        Options::default(),
        Duration::from_secs(8),
    )
    .await;
    worker.shutdown().await;
    let ticks = by_stream(&cron_events(&conn).await);
    let t = &ticks[&("guarded".to_owned(), "acme".to_owned())];
    assert!(t.len() >= 2, "runs after the first finished: {t:?}");
    for w in t.windows(2) {
        assert!(
            (w[1] - w[0]).num_seconds() >= 2,
            "a tick fired during a run: {t:?}"
        );
    }
    assert!(stats.skipped.load(std::sync::atomic::Ordering::Relaxed) >= 3);
}

#[tokio::test]
async fn invalid_schedule_files_are_rejected_with_the_schedule_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[schedule]]\nname = \"nightly-cleanup\"\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Atlantis\"\nevent_type = \"weekly.cleanup\"\ntenants = [\"acme\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_test_scheduler"))
        .args(["check", "--config"])
        .arg(&bad)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nightly-cleanup") && stderr.contains("Europe/Atlantis"),
        "{stderr}"
    );
    // `run` refuses to start too.
    let out = Command::new(env!("CARGO_BIN_EXE_test_scheduler"))
        .args(["--server", "nats://127.0.0.1:1", "run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_next_fire_times_the_leader_and_the_last_tick() {
    let (_server, conn) = server().await;
    let schedules = vec![
        Schedule::new("daily-report", "0 9 * * *", "daily.report")
            .timezone("Europe/Amsterdam")
            .tenants(["acme"]),
        pulse("pulse", "health.check", CatchUp::Skip),
    ];
    let scheduler = Scheduler::new(
        &conn,
        &schedules,
        Options {
            node_id: "status-node".into(),
            ..Options::default()
        },
    )
    .unwrap();
    let run = tokio::spawn(scheduler.run_until(tokio::time::sleep(Duration::from_secs(4))));
    eventually(Duration::from_secs(10), "a fired tick", || async {
        !cron_events(&conn).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = conveyor_scheduler::status::read(&conn, &schedules)
        .await
        .unwrap();
    let text = status.to_string();
    assert_eq!(
        status.leader.as_ref().unwrap().node,
        "status-node",
        "{text}"
    );
    let daily = &status.schedules[0];
    let (local, _) = daily.next.as_ref().unwrap();
    assert!(
        local.contains("09:00:00") && (local.contains("CET") || local.contains("CEST")),
        "{text}"
    );
    assert!(status.schedules[1].last_fired.is_some(), "{text}");
    run.await.unwrap().unwrap();
}
