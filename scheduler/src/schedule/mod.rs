//! Schedules: what fires when, for whom, and what happens after downtime or while a run is
//! still going.

use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use conveyor::TenantId;
use serde::{Deserialize, Serialize};

mod compiled;
mod cron_expr;
#[cfg(test)]
mod tests;

pub use compiled::CompiledSchedule;
pub use cron_expr::normalize_cron;

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
