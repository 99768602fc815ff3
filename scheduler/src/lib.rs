//! The Conveyor scheduler: publishes cron events, one per tenant per tick, from a leader-elected
//! process, so a tick fires once however many scheduler processes run.
//!
//! - [`Schedule`]: name, cron expression (5 or 6 fields), IANA time zone, event type, tenants
//!   (a list or the tenant registry), catch-up and overlap policies; declared in code or in a
//!   TOML file ([`config`]).
//! - [`Scheduler`]: campaigns for the lease ([`lease`]), fires due ticks while it leads, and
//!   persists the last fired tick per schedule so a new leader neither re-fires nor skips.
//! - [`status`]: the operator view (next fire times, leader, last ticks).
//! - While it leads, it also samples what retention limits removed before it was handled
//!   ([`conveyor::retention`]) and exports the totals with its metrics.
//!
//! A tick's event has the id and `Nats-Msg-Id` `cron:<schedule>:<tenant>:<unix-seconds>:<tag>`
//! (the tag keyed by a secret the schedulers share, so no tenant can guess another's tick id): if two
//! processes ever both fire a tick, the stream stores it once.

pub mod cli;
pub mod config;
mod error;
mod fire;
mod ids;
pub mod lease;
mod registry;
mod retention;
mod runtime;
pub mod schedule;
mod stats;
pub mod status;
mod trigger;

pub use error::{RunError, RunErrorKind};
pub use runtime::{LATE_AFTER, Options, STATE_BUCKET, Scheduler, Stats, TENANT_BUCKET};
pub use schedule::{
    CatchUp, CompiledSchedule, Overlap, Schedule, ScheduleError, ScheduleErrorKind,
};
pub use trigger::trigger_now;
