//! Schedules: what fires when, for whom, and what happens after downtime or while a run is
//! still going.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use conveyor::TenantId;
use serde::{Deserialize, Serialize};

/// The most missed ticks [`CatchUp::All`] fires by default.
pub const DEFAULT_CATCH_UP_MAX: u32 = 100;

/// What a new leader does with ticks nobody fired (no leader, outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire none of them; go on with the next tick.
    Skip,
    /// Fire the most recent missed tick once (default).
    #[default]
    Latest,
    /// Fire every missed tick, oldest first, at most `catch_up_max` of the most recent ones.
    All,
}

/// Whether a tick may start while the previous run for the same tenant is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Fire every tick (default).
    #[default]
    Allow,
    /// Skip a tenant's tick while its previous run has not finished (the worker reports the
    /// end of a run; see `conveyor::runs`). A run older than `max_run` counts as finished.
    SkipIfRunning,
}

/// A schedule as declared in code or in the config file.
///
/// ```
/// use conveyor_scheduler::{CatchUp, Schedule};
///
/// let daily = Schedule::new("daily-report", "0 9 * * *", "daily.report")
///     .timezone("Europe/Amsterdam")
///     .tenants(["acme", "globex"])
///     .catch_up(CatchUp::Latest);
/// assert!(daily.compile().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Unique name: `[A-Za-z0-9_-]`, 1 to 64 characters.
    pub name: String,
    /// Cron expression: 5 fields (`min hour day month weekday`, weekday 0 or 7 = Sunday) or 6
    /// with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// The event type each tick publishes, e.g. `daily.report`.
    pub event_type: String,
    /// The tenants that get an event per tick.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Instead of a list: every tenant of the tenant registry (a KV bucket), read at each tick.
    #[serde(default)]
    pub tenant_registry: bool,
    /// What to do with missed ticks.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// With [`CatchUp::All`]: the most missed ticks fired.
    #[serde(default = "default_catch_up_max")]
    pub catch_up_max: u32,
    /// Whether ticks may overlap a running previous run.
    #[serde(default)]
    pub overlap: Overlap,
    /// With [`Overlap::SkipIfRunning`]: how long a run may take before it counts as finished
    /// anyway, in seconds (default 3600).
    #[serde(default = "default_max_run")]
    pub max_run_secs: u64,
}

fn utc() -> String {
    "UTC".into()
}

fn default_catch_up_max() -> u32 {
    DEFAULT_CATCH_UP_MAX
}

fn default_max_run() -> u64 {
    3600
}

impl Schedule {
    /// A schedule firing `event_type` on `cron` (in UTC, no tenants yet).
    pub fn new(
        name: impl Into<String>,
        cron: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            cron: cron.into(),
            timezone: utc(),
            event_type: event_type.into(),
            tenants: Vec::new(),
            tenant_registry: false,
            catch_up: CatchUp::default(),
            catch_up_max: DEFAULT_CATCH_UP_MAX,
            overlap: Overlap::default(),
            max_run_secs: default_max_run(),
        }
    }

    /// Sets the IANA time zone.
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        self.timezone = tz.into();
        self
    }

    /// Sets the tenants.
    pub fn tenants<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tenants: I) -> Self {
        self.tenants = tenants.into_iter().map(Into::into).collect();
        self
    }

    /// Uses every tenant of the tenant registry instead of a list.
    pub fn tenant_registry(mut self) -> Self {
        self.tenant_registry = true;
        self
    }

    /// Sets the catch-up policy.
    pub fn catch_up(mut self, policy: CatchUp) -> Self {
        self.catch_up = policy;
        self
    }

    /// Sets the most missed ticks [`CatchUp::All`] fires.
    pub fn catch_up_max(mut self, max: u32) -> Self {
        self.catch_up_max = max;
        self
    }

    /// Sets the overlap policy.
    pub fn overlap(mut self, policy: Overlap) -> Self {
        self.overlap = policy;
        self
    }

    /// Sets how long a run may take before it counts as finished.
    pub fn max_run(mut self, d: Duration) -> Self {
        self.max_run_secs = d.as_secs().max(1);
        self
    }

    /// Validates the schedule and prepares it for firing.
    pub fn compile(&self) -> Result<CompiledSchedule, ScheduleError> {
        let err = |kind, message: String| ScheduleError {
            schedule: self.name.clone(),
            kind,
            message,
        };
        conveyor::TenantId::parse(self.name.as_str()).map_err(|e| {
            err(
                ScheduleErrorKind::InvalidName,
                format!("the name {}", e.message().trim_start_matches("tenant id ")),
            )
        })?;
        let normalized = normalize_cron(&self.cron).map_err(|m| {
            err(
                ScheduleErrorKind::InvalidCron,
                format!("cron {:?}: {m}", self.cron),
            )
        })?;
        let cron = cron::Schedule::from_str(&normalized).map_err(|e| {
            err(
                ScheduleErrorKind::InvalidCron,
                format!(
                    "cron {:?}: {}",
                    self.cron,
                    e.to_string().lines().last().unwrap_or_default()
                ),
            )
        })?;
        let tz = Tz::from_str(&self.timezone).map_err(|_| {
            err(
                ScheduleErrorKind::UnknownTimeZone,
                format!(
                    "unknown time zone {:?} (use an IANA name such as Europe/Amsterdam)",
                    self.timezone
                ),
            )
        })?;
        conveyor::validate_event_type(&self.event_type)
            .map_err(|e| err(ScheduleErrorKind::InvalidEventType, e.message().to_owned()))?;
        if self.tenant_registry && !self.tenants.is_empty() {
            return Err(err(
                ScheduleErrorKind::InvalidTenants,
                "give either `tenants` or `tenant_registry = true`, not both".into(),
            ));
        }
        if !self.tenant_registry && self.tenants.is_empty() {
            return Err(err(
                ScheduleErrorKind::InvalidTenants,
                "no tenants: give `tenants = [...]` or `tenant_registry = true`".into(),
            ));
        }
        let mut tenants = Vec::with_capacity(self.tenants.len());
        for t in &self.tenants {
            tenants.push(
                TenantId::parse(t.as_str())
                    .map_err(|e| err(ScheduleErrorKind::InvalidTenants, e.message().to_owned()))?,
            );
        }
        if self.catch_up == CatchUp::All && self.catch_up_max == 0 {
            return Err(err(
                ScheduleErrorKind::InvalidPolicy,
                "catch_up_max must be at least 1".into(),
            ));
        }
        let hour_field = normalized.split_whitespace().nth(2).unwrap_or("*");
        Ok(CompiledSchedule {
            spec: self.clone(),
            cron,
            tz,
            tenants,
            fixed_hour: !hour_field.starts_with('*'),
        })
    }
}

/// Why a schedule is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScheduleErrorKind {
    /// The name breaks the `[A-Za-z0-9_-]{1,64}` rule.
    InvalidName,
    /// Two schedules have the same name.
    DuplicateName,
    /// The cron expression does not parse.
    InvalidCron,
    /// The time zone is not an IANA name.
    UnknownTimeZone,
    /// The event type breaks the naming rule.
    InvalidEventType,
    /// No tenants, both a list and the registry, or an invalid tenant id.
    InvalidTenants,
    /// A policy setting is out of range.
    InvalidPolicy,
}

/// An invalid schedule: the schedule's name, what is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule {schedule:?}: {message}")]
pub struct ScheduleError {
    /// The schedule's name.
    pub schedule: String,
    /// What kind of problem.
    pub kind: ScheduleErrorKind,
    /// The details.
    pub message: String,
}

impl ScheduleError {
    /// What kind of problem.
    pub fn kind(&self) -> ScheduleErrorKind {
        self.kind
    }
}

/// Validates a set of schedules: each one, and that names are unique.
pub fn compile_all(schedules: &[Schedule]) -> Result<Vec<CompiledSchedule>, ScheduleError> {
    let mut out: Vec<CompiledSchedule> = Vec::with_capacity(schedules.len());
    for s in schedules {
        if out.iter().any(|c| c.spec.name == s.name) {
            return Err(ScheduleError {
                schedule: s.name.clone(),
                kind: ScheduleErrorKind::DuplicateName,
                message: "another schedule has this name".into(),
            });
        }
        out.push(s.compile()?);
    }
    Ok(out)
}

/// Turns a 5-field expression into the 6-field form with seconds, and standard weekday numbers
/// (0 or 7 = Sunday, 1 = Monday) into names, which the cron parser reads unambiguously.
pub fn normalize_cron(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut fields: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields)
            .map(str::to_owned)
            .collect(),
        6 => fields.into_iter().map(str::to_owned).collect(),
        n => {
            return Err(format!(
                "has {n} fields; expected 5 (min hour day month weekday) or 6 (sec min hour day month weekday)"
            ));
        }
    };
    fields[5] = weekday_names(&fields[5])?;
    Ok(fields.join(" "))
}

fn weekday_names(field: &str) -> Result<String, String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let name = |s: &str| -> Result<String, String> {
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(NAMES[n % 7].to_owned()),
            Ok(n) => Err(format!("weekday {n} is out of range 0-7")),
            Err(_) => Ok(s.to_owned()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let converted = match range.split_once('-') {
            Some((a, b)) if b == "7" && a != "0" && a != "7" => {
                // `5-7` (Friday to Sunday) would wrap: split off Sunday.
                items.push("SUN".to_owned());
                format!("{}-SAT", name(a)?)
            }
            Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
            None => name(range)?,
        };
        items.push(match step {
            Some(s) => format!("{converted}/{s}"),
            None => converted,
        });
    }
    Ok(items.join(","))
}

/// A validated schedule, ready to compute ticks.
#[derive(Clone)]
pub struct CompiledSchedule {
    /// The declaration it came from.
    pub spec: Schedule,
    cron: cron::Schedule,
    tz: Tz,
    tenants: Vec<TenantId>,
    fixed_hour: bool,
}

impl fmt::Debug for CompiledSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchedule")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl CompiledSchedule {
    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The listed tenants (empty when the registry is used).
    pub fn tenants(&self) -> &[TenantId] {
        &self.tenants
    }

    /// The first tick strictly after `after`.
    ///
    /// DST: ticks are wall-clock times in the schedule's zone. On the spring-forward day a wall
    /// time that does not exist (02:30 when clocks jump from 02:00 to 03:00) is skipped that
    /// day. On the fall-back day a wall time that happens twice fires once, at its first
    /// occurrence, when the expression names fixed hours; with `*` (or `*/n`) in the hour field
    /// each real hour fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The cron iterator walks wall-clock time: started inside a repeated hour it would not
        // see that hour's second occurrence. Near an offset change, start before it and keep
        // the first tick after `after`.
        let margin = chrono::Duration::hours(2);
        let offset = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        let near_change =
            offset(after - margin) != offset(after) || offset(after) != offset(after + margin);
        let start = if near_change { after - margin } else { after };
        self.cron
            .after(&start.with_timezone(&self.tz))
            .filter(|t| t.with_timezone(&Utc) > after)
            .find(|t| !self.second_occurrence(t))
            .map(|t| t.with_timezone(&Utc))
    }

    /// Ticks in `(after, until]`, oldest first, at most `limit` of the most recent.
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> (Vec<DateTime<Utc>>, usize) {
        let mut ticks = std::collections::VecDeque::new();
        let mut dropped = 0;
        let mut cursor = after;
        while let Some(t) = self.next_after(cursor) {
            if t > until {
                break;
            }
            ticks.push_back(t);
            if ticks.len() > limit {
                ticks.pop_front();
                dropped += 1;
            }
            cursor = t;
        }
        (ticks.into_iter().collect(), dropped)
    }

    /// True for the later of two instants sharing one wall-clock time (fall-back day) when the
    /// expression has fixed hours.
    fn second_occurrence(&self, t: &DateTime<Tz>) -> bool {
        if !self.fixed_hour {
            return false;
        }
        match self.tz.from_local_datetime(&t.naive_local()) {
            LocalResult::Ambiguous(first, _) => first != *t,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ticks(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let s = Schedule::new("s", expr, "daily.report")
            .timezone(tz)
            .tenants(["acme"])
            .compile()
            .unwrap();
        let mut out = Vec::new();
        let mut cursor = at(from);
        for _ in 0..n {
            cursor = s.next_after(cursor).unwrap();
            out.push(cursor.to_rfc3339());
        }
        out
    }

    #[test]
    fn five_and_six_field_expressions() {
        assert_eq!(normalize_cron("0 9 * * *").unwrap(), "0 0 9 * * *");
        assert_eq!(normalize_cron("*/15 * * * *").unwrap(), "0 */15 * * * *");
        assert_eq!(normalize_cron("* * * * * *").unwrap(), "* * * * * *");
        assert_eq!(normalize_cron("0 2 * * 0").unwrap(), "0 0 2 * * SUN");
        assert_eq!(normalize_cron("0 9 * * 1-5").unwrap(), "0 0 9 * * MON-FRI");
        assert_eq!(
            normalize_cron("0 9 * * 5-7").unwrap(),
            "0 0 9 * * SUN,FRI-SAT"
        );
        assert!(normalize_cron("0 9 * *").is_err());
    }

    #[test]
    fn weekly_cleanup_sunday_0200_in_amsterdam() {
        // 2026-11-22 is a Sunday; 02:00 CET = 01:00 UTC.
        assert_eq!(
            ticks("0 2 * * 0", "Europe/Amsterdam", "2026-11-20T00:00:00Z", 2),
            vec!["2026-11-22T01:00:00+00:00", "2026-11-29T01:00:00+00:00"]
        );
    }

    #[test]
    fn the_same_wall_time_in_two_zones() {
        assert_eq!(
            ticks("0 9 * * *", "Europe/Amsterdam", "2026-11-22T00:00:00Z", 1),
            vec!["2026-11-22T08:00:00+00:00"]
        );
        assert_eq!(
            ticks("0 9 * * *", "America/New_York", "2026-11-22T00:00:00Z", 1),
            vec!["2026-11-22T14:00:00+00:00"]
        );
        assert_eq!(
            ticks("0 9 * * *", "Asia/Kolkata", "2026-11-22T00:00:00Z", 1),
            vec!["2026-11-22T03:30:00+00:00"]
        );
    }

    #[test]
    fn spring_forward_skips_the_missing_time_that_day() {
        // Amsterdam, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Amsterdam", "2026-03-28T00:00:00Z", 3),
            vec![
                "2026-03-28T01:30:00+00:00",
                "2026-03-30T00:30:00+00:00",
                "2026-03-31T00:30:00+00:00"
            ]
        );
        // Hourly: the missing hour is simply not there; nothing fires twice.
        assert_eq!(
            ticks("0 * * * *", "Europe/Amsterdam", "2026-03-28T23:30:00Z", 3),
            vec![
                "2026-03-29T00:00:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T02:00:00+00:00"
            ]
        );
    }

    #[test]
    fn fall_back_fires_a_fixed_time_once_and_every_real_hour_for_hourly() {
        // Amsterdam, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Amsterdam", "2026-10-24T00:00:00Z", 3),
            vec![
                "2026-10-24T00:30:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-26T01:30:00+00:00"
            ]
        );
        assert_eq!(
            ticks("0 * * * *", "Europe/Amsterdam", "2026-10-24T23:30:00Z", 4),
            vec![
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T02:00:00+00:00",
                "2026-10-25T03:00:00+00:00"
            ]
        );
    }

    #[test]
    fn missed_ticks_are_bounded() {
        let s = Schedule::new("s", "* * * * * *", "health.check")
            .tenants(["acme"])
            .compile()
            .unwrap();
        let (t, dropped) =
            s.ticks_between(at("2026-11-22T09:00:00Z"), at("2026-11-22T09:00:10Z"), 4);
        assert_eq!(t.len(), 4);
        assert_eq!(dropped, 6);
        assert_eq!(t[3], at("2026-11-22T09:00:10Z"));
    }

    #[test]
    fn invalid_schedules_name_the_schedule_and_the_problem() {
        use ScheduleErrorKind as K;
        let base = || Schedule::new("nightly", "0 2 * * *", "weekly.cleanup").tenants(["acme"]);
        let cases = [
            (base().timezone("Mars/Olympus"), K::UnknownTimeZone),
            (
                Schedule {
                    cron: "61 2 * * *".into(),
                    ..base()
                },
                K::InvalidCron,
            ),
            (
                Schedule {
                    cron: "0 2 * *".into(),
                    ..base()
                },
                K::InvalidCron,
            ),
            (
                Schedule {
                    cron: "0 2 * * 9".into(),
                    ..base()
                },
                K::InvalidCron,
            ),
            (
                Schedule {
                    event_type: "Weekly Cleanup".into(),
                    ..base()
                },
                K::InvalidEventType,
            ),
            (base().tenants(["a.b"]), K::InvalidTenants),
            (base().tenants(Vec::<String>::new()), K::InvalidTenants),
            (base().tenant_registry(), K::InvalidTenants),
            (
                Schedule {
                    name: "bad name".into(),
                    ..base()
                },
                K::InvalidName,
            ),
            (
                base().catch_up(CatchUp::All).catch_up_max(0),
                K::InvalidPolicy,
            ),
        ];
        for (s, kind) in cases {
            let e = s.compile().unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert!(
                e.to_string().starts_with(&format!("schedule {:?}", s.name)),
                "{e}"
            );
        }
        let dup = compile_all(&[base(), base()]).unwrap_err();
        assert_eq!(dup.kind(), K::DuplicateName);
    }
}
