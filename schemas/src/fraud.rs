//! Fraud: detection decisions and their AI explanations.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{Id, Money};

/// What fraud screening decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Hold for a person to review.
    Review,
    /// Block it.
    Block,
}

/// A signal that contributed to a fraud score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Signal {
    /// The signal's name, e.g. `ip_country_mismatch`.
    pub name: String,
    /// Its weight in the score, in basis points.
    pub weight_bps: i32,
}

/// Fraud screening reached a decision on an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FraudDetectionCreated {
    /// The detection's id.
    pub detection_id: Id,
    /// The screened order.
    pub order_id: Id,
    /// The order's amount.
    pub amount: Money,
    /// Risk score, 0 (safe) to 1000 (certain fraud).
    pub score: u16,
    /// The decision.
    pub decision: Decision,
    /// The signals behind the score.
    pub signals: Vec<Signal>,
    /// When it was decided.
    pub detected_at: DateTime<Utc>,
}

impl Event for FraudDetectionCreated {
    const TYPE: &'static str = "fraud.detection.created";
}

/// How urgent a piece of work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// Ahead of normal work.
    High,
    /// In turn.
    Normal,
}

/// An AI explanation of a fraud decision was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FraudExplanationRequested {
    /// The detection to explain.
    pub detection_id: Id,
    /// The decision being explained.
    pub decision: Decision,
    /// HIGH for BLOCK decisions, NORMAL otherwise.
    pub priority: Priority,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for FraudExplanationRequested {
    const TYPE: &'static str = "fraud.explanation.requested";
}

/// An AI explanation of a fraud decision is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FraudExplanationCompleted {
    /// The explained detection.
    pub detection_id: Id,
    /// The explanation, in plain language.
    pub explanation: String,
    /// The model that wrote it.
    pub model: String,
    /// When it was written.
    pub completed_at: DateTime<Utc>,
}

impl Event for FraudExplanationCompleted {
    const TYPE: &'static str = "fraud.explanation.completed";
}
