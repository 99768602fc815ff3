//! Code analysis: long-running analysis jobs of a repository.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{HttpUrl, Id};

/// An analysis of a repository was requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisRequested {
    /// The analysis job's id.
    pub analysis_id: Id,
    /// The repository to analyse.
    pub repository_url: HttpUrl,
    /// The commit to analyse.
    pub commit_sha: Id,
    /// Who asked for it.
    pub requested_by: Id,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for AnalysisRequested {
    const TYPE: &'static str = "analysis.requested";
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Should be fixed.
    Warning,
    /// Must be fixed.
    Error,
}

/// One finding of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The rule that found it.
    pub rule: String,
    /// How serious it is.
    pub severity: Severity,
    /// The file.
    pub path: String,
    /// The line, from 1.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// An analysis finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisCompleted {
    /// The analysis job's id.
    pub analysis_id: Id,
    /// The analysed commit.
    pub commit_sha: Id,
    /// Files analysed.
    pub files_analysed: u32,
    /// What it found.
    pub findings: Vec<Finding>,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
}

impl Event for AnalysisCompleted {
    const TYPE: &'static str = "analysis.completed";
}

/// An analysis failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisFailed {
    /// The analysis job's id.
    pub analysis_id: Id,
    /// What went wrong.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up.
    pub failed_at: DateTime<Utc>,
}

impl Event for AnalysisFailed {
    const TYPE: &'static str = "analysis.failed";
}
