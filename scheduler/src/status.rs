//! The operator view: schedules with their next fire times, the leader, the last fired ticks.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::lease::{self, LeaderInfo};
use crate::schedule::{CompiledSchedule, Schedule, ScheduleError, compile_all};

/// One schedule's line in the status.
#[derive(Debug, Clone)]
pub struct ScheduleStatus {
    /// The schedule.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The event type it publishes.
    pub event_type: String,
    /// Its next tick, in its zone and in UTC.
    pub next: Option<(String, DateTime<Utc>)>,
    /// The last tick fired, if any.
    pub last_fired: Option<DateTime<Utc>>,
}

/// The whole status.
#[derive(Debug, Clone)]
pub struct Status {
    /// The current leader, if any.
    pub leader: Option<LeaderInfo>,
    /// Every schedule.
    pub schedules: Vec<ScheduleStatus>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.leader {
            Some(l) => writeln!(f, "leader: {} (since {})", l.node, l.since.to_rfc3339())?,
            None => writeln!(f, "leader: none")?,
        }
        writeln!(
            f,
            "{:<20} {:<16} {:<18} {:<22} {:<32} last fired (UTC)",
            "schedule", "cron", "zone", "event", "next fire (zone / UTC)"
        )?;
        for s in &self.schedules {
            let next = s.next.as_ref().map_or("-".to_owned(), |(local, utc)| {
                format!("{local} / {}", utc.format("%H:%M:%S"))
            });
            let last = s.last_fired.map_or("never".to_owned(), |t| t.to_rfc3339());
            writeln!(
                f,
                "{:<20} {:<16} {:<18} {:<22} {:<32} {last}",
                s.name, s.cron, s.timezone, s.event_type, next
            )?;
        }
        Ok(())
    }
}

/// Reads the status of `schedules` from NATS.
pub async fn read(
    conn: &conveyor::Connection,
    schedules: &[Schedule],
) -> Result<Status, ScheduleError> {
    let compiled = compile_all(schedules)?;
    let js = conn.jetstream();
    let leader = match js.get_key_value(lease::LEASE_BUCKET).await {
        Ok(store) => lease::current_leader(&store).await,
        Err(_) => None,
    };
    let state = js.get_key_value(crate::STATE_BUCKET).await.ok();
    let now = Utc::now();
    let mut out = Vec::new();
    for s in &compiled {
        let last_fired = match &state {
            Some(store) => store
                .get(format!("last.{}", s.name()))
                .await
                .ok()
                .flatten()
                .and_then(|v| String::from_utf8(v.to_vec()).ok())
                .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|t| t.with_timezone(&Utc)),
            None => None,
        };
        out.push(line(s, now, last_fired));
    }
    Ok(Status {
        leader,
        schedules: out,
    })
}

fn line(
    s: &CompiledSchedule,
    now: DateTime<Utc>,
    last_fired: Option<DateTime<Utc>>,
) -> ScheduleStatus {
    ScheduleStatus {
        name: s.name().to_owned(),
        cron: s.spec.cron.clone(),
        timezone: s.spec.timezone.clone(),
        event_type: s.spec.event_type.clone(),
        next: s.next_after(now).map(|t| {
            (
                t.with_timezone(&s.tz())
                    .format("%Y-%m-%d %H:%M:%S %Z")
                    .to_string(),
                t,
            )
        }),
        last_fired,
    }
}
