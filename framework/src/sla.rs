//! Expected durations of handler runs.
//!
//! A handler registered with [`HandlerOptions::expected_duration`](crate::HandlerOptions::expected_duration)
//! is watched while it runs: once a run goes over the expected duration the worker logs a
//! warning (`run over its expected duration`), counts it in `conveyor_sla_breaches_total`, marks
//! the run record (`sla_breached`), and with [`HandlerOptions::sla_event`](crate::HandlerOptions::sla_event)
//! publishes an [`SlaBreached`] event for the event's tenant, which a group of its own can
//! handle (page someone, tell the customer). The run itself goes on: the timeout, not the
//! expected duration, ends it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::Event;

/// A handler run went over its expected duration. Published once per attempt, while the run
/// is still going.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlaBreached {
    /// The handler group.
    pub group: String,
    /// The event being handled.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The attempt that is running late.
    pub attempt: u32,
    /// The expected duration, in milliseconds.
    pub expected_ms: u64,
    /// How long the run had been going when the breach was seen, in milliseconds.
    pub elapsed_ms: u64,
    /// When the breach was seen.
    pub detected_at: DateTime<Utc>,
}

impl Event for SlaBreached {
    const TYPE: &'static str = "sla.breached";
}
