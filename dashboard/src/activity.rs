//! What groups and tenants did in the last hour, from the run history: the dashboard follows
//! the history bucket's stream from an hour back (an ordered consumer) and counts every final
//! state per minute: handled, failed, and run times for percentiles. Groups without run
//! history have none.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use conveyor::Connection;
use conveyor::history::{HISTORY_STREAM, RunRecord, RunState};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// How far back the counts go.
const WINDOW: TimeDelta = TimeDelta::hours(1);
/// Run times kept per group and minute for the percentiles.
const DURATIONS_PER_MINUTE: usize = 2000;

/// One group's (or tenant's) minute.
#[derive(Debug, Clone, Default)]
pub(crate) struct Minute {
    pub(crate) handled: u64,
    pub(crate) failed: u64,
    durations_ms: Vec<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Minute start → group → counts.
    groups: BTreeMap<DateTime<Utc>, BTreeMap<String, Minute>>,
    /// Minute start → tenant → counts.
    tenants: BTreeMap<DateTime<Utc>, BTreeMap<String, Minute>>,
    /// Attempts whose latest record says `running`: (group, tenant, event id, attempt) → when
    /// that record was written. Such a record is written only for a handler still running at
    /// the first history flush after it started to wait, so only those show up here.
    running: BTreeMap<(String, String, String, u32), DateTime<Utc>>,
    /// Whether the history stream has been found.
    following: bool,
}

/// The counts, shared by the follower task and the pages.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity(Arc<Mutex<Inner>>);

/// A group's or tenant's activity over a span of minutes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Summary {
    /// Events handled (final state `succeeded`) per minute, averaged.
    pub(crate) handled_per_min: f64,
    /// Attempts that failed (`retrying`, `dead_lettered`) per minute, averaged.
    pub(crate) failed_per_min: f64,
    /// Median and 95th percentile run time, in ms, of the attempts that ended.
    pub(crate) p50_ms: Option<u64>,
    pub(crate) p95_ms: Option<u64>,
    /// Handled and failed in the whole span.
    pub(crate) handled: u64,
    pub(crate) failed: u64,
}

fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

impl Activity {
    fn add(&self, record: &RunRecord) {
        let failed = matches!(record.state, RunState::Retrying | RunState::DeadLettered);
        let handled = record.state == RunState::Succeeded;
        let Some(at) = record.updated_at() else {
            return;
        };
        let Ok(mut guard) = self.0.lock() else { return };
        let inner = &mut *guard;
        let key = (
            record.group.clone(),
            record.tenant.clone(),
            record.event_id.clone(),
            record.attempt,
        );
        if record.state == RunState::Running {
            // A run whose process died leaves a `running` record behind: forgotten after the
            // window (pruned here, where the map grows, not for every record).
            let stale = Utc::now() - WINDOW;
            inner.running.retain(|_, at| *at >= stale);
            inner.running.insert(key, at);
        } else {
            inner.running.remove(&key);
        }
        if !failed && !handled {
            return;
        }
        let minute = minute_of(at);
        let oldest = minute_of(Utc::now() - WINDOW);
        if minute < oldest {
            return;
        }
        for (map, key) in [
            (&mut inner.groups, &record.group),
            (&mut inner.tenants, &record.tenant),
        ] {
            let m = map
                .entry(minute)
                .or_default()
                .entry(key.clone())
                .or_default();
            m.handled += u64::from(handled);
            m.failed += u64::from(failed);
            if let Some(ms) = record.duration_ms
                && m.durations_ms.len() < DURATIONS_PER_MINUTE
            {
                m.durations_ms.push(ms);
            }
        }
        for map in [&mut inner.groups, &mut inner.tenants] {
            while map.first_key_value().is_some_and(|(k, _)| *k < oldest) {
                map.pop_first();
            }
        }
    }

    /// Attempts of `tenant` running now (in handlers that wait), by the run history.
    pub(crate) fn running_of_tenant(&self, tenant: &str) -> u64 {
        self.0.lock().map_or(0, |i| {
            i.running.keys().filter(|(_, t, _, _)| t == tenant).count() as u64
        })
    }

    /// True once the history stream is followed (some group records history).
    pub(crate) fn following(&self) -> bool {
        self.0.lock().is_ok_and(|i| i.following)
    }

    fn summary(&self, tenants: bool, key: &str, minutes: i64) -> Summary {
        let Ok(inner) = self.0.lock() else {
            return Summary::default();
        };
        let map = if tenants {
            &inner.tenants
        } else {
            &inner.groups
        };
        let since = minute_of(Utc::now()) - TimeDelta::minutes(minutes);
        let mut s = Summary::default();
        let mut durations = Vec::new();
        for (_, by_key) in map.range(since..) {
            if let Some(m) = by_key.get(key) {
                s.handled += m.handled;
                s.failed += m.failed;
                durations.extend_from_slice(&m.durations_ms);
            }
        }
        let span = (minutes + 1) as f64;
        s.handled_per_min = (s.handled as f64 / span * 10.0).round() / 10.0;
        s.failed_per_min = (s.failed as f64 / span * 10.0).round() / 10.0;
        durations.sort_unstable();
        let pct = |p: f64| {
            durations
                .get(((durations.len() as f64 - 1.0) * p).round() as usize)
                .copied()
        };
        s.p50_ms = pct(0.5);
        s.p95_ms = pct(0.95);
        s
    }

    /// A group's last `minutes` minutes.
    pub(crate) fn group(&self, group: &str, minutes: i64) -> Summary {
        self.summary(false, group, minutes)
    }

    /// A tenant's last `minutes` minutes.
    pub(crate) fn tenant(&self, tenant: &str, minutes: i64) -> Summary {
        self.summary(true, tenant, minutes)
    }

    /// A group's handled events per minute over the last hour, for a chart.
    pub(crate) fn handled_series(&self, group: &str) -> Vec<(DateTime<Utc>, f64)> {
        let Ok(inner) = self.0.lock() else {
            return Vec::new();
        };
        let mut out = VecDeque::new();
        let mut minute = minute_of(Utc::now() - WINDOW);
        let now = minute_of(Utc::now());
        while minute <= now {
            let n = inner
                .groups
                .get(&minute)
                .and_then(|g| g.get(group))
                .map_or(0.0, |m| m.handled as f64);
            out.push_back((minute, n));
            minute += TimeDelta::minutes(1);
        }
        out.into()
    }
}

/// Follows the history stream from an hour back until `stop`, waiting for it to exist.
pub(crate) async fn follow(conn: Connection, activity: Activity, stop: CancellationToken) {
    loop {
        if let Err(e) = follow_once(&conn, &activity, &stop).await {
            tracing::debug!(error = %e, "not following the run history (yet)");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn follow_once(
    conn: &Connection,
    activity: &Activity,
    stop: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stream = conn.jetstream().get_stream(HISTORY_STREAM).await?;
    // Resumes where the last message read left off, or an hour back.
    let start = activity
        .0
        .lock()
        .ok()
        .and_then(|i| i.groups.keys().next_back().copied())
        .unwrap_or_else(|| Utc::now() - WINDOW);
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: "history.>".into(),
            deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
            ..Default::default()
        })
        .await?;
    if let Ok(mut i) = activity.0.lock() {
        i.following = true;
    }
    let mut messages = consumer.messages().await?;
    loop {
        let next = tokio::select! {
            m = messages.next() => m,
            () = stop.cancelled() => return Ok(()),
        };
        match next {
            Some(Ok(m)) => {
                for record in conveyor::history::decode_batch(&m.payload) {
                    activity.add(&record);
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(group: &str, tenant: &str, state: RunState, ms: u64) -> RunRecord {
        RunRecord {
            group: group.into(),
            tenant: tenant.into(),
            event_id: "e".into(),
            event_type: "t".into(),
            attempt: 1,
            max_attempts: 5,
            state,
            queued_at: None,
            started_at: None,
            finished_at: None,
            duration_ms: Some(ms),
            retry_at: None,
            error: None,
            progress: None,
            expected_ms: None,
            sla_breached: false,
            trace_id: None,
            transitions: vec![conveyor::history::Transition {
                state,
                at: Utc::now(),
                error: None,
            }],
        }
    }

    #[test]
    fn final_states_are_counted_per_group_and_tenant() {
        let a = Activity::default();
        for ms in 1..=100 {
            a.add(&record("orders", "acme", RunState::Succeeded, ms));
        }
        a.add(&record("orders", "globex", RunState::Retrying, 7));
        a.add(&record("orders", "globex", RunState::Running, 7));
        assert_eq!(a.running_of_tenant("globex"), 1);
        assert_eq!(a.running_of_tenant("acme"), 0);
        let g = a.group("orders", 5);
        assert_eq!((g.handled, g.failed), (100, 1));
        assert_eq!(g.p50_ms, Some(50));
        assert_eq!(g.p95_ms, Some(95));
        assert_eq!(a.tenant("globex", 60).failed, 1);
        assert_eq!(a.tenant("globex", 60).handled, 0);
        assert_eq!(a.group("other", 5).handled, 0);
        let series = a.handled_series("orders");
        assert_eq!(series.last().map(|p| p.1), Some(100.0));
        // Its next record ends the run.
        a.add(&record("orders", "globex", RunState::Succeeded, 9));
        assert_eq!(a.running_of_tenant("globex"), 0);
    }
}
