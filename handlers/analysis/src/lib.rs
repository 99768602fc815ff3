//! Analysis handlers: a long job.
//!
//! `analysis` on `analysis.requested` runs a code analysis of a repository at a commit: one step
//! per file, for minutes in production (`AnalysisConfig::step_duration` × `files`; a few
//! milliseconds in tests). It reports progress after every file (published on the event's
//! progress subject, kept in the run history, and a heartbeat of its delivery, so the group's
//! `ack_wait` can be much shorter than the job), stops when the event is cancelled, and
//! publishes `analysis.completed` with its findings, or `analysis.failed` when its last attempt
//! fails. The group records run history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use conveyor::store::Store;
use conveyor::{Context, Group, HandlerError, HandlerOptions, HandlerResult};
use conveyor_schemas::analysis::{
    AnalysisCompleted, AnalysisFailed, AnalysisRequested, Finding, Severity,
};
use serde_json::json;

/// The group this crate defines.
pub const GROUP: &str = "analysis";
/// Store collection of finished analyses.
pub const ANALYSES: &str = "analyses";

/// Settings of the analysis job.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    /// Files analysed per job.
    pub files: u32,
    /// Time spent on one file.
    pub step_duration: Duration,
    /// The group's ack wait: heartbeats keep a job alive however long it runs.
    pub ack_wait: Duration,
}

impl Default for AnalysisConfig {
    /// 120 files of 1 s each: two minutes per job.
    fn default() -> Self {
        Self {
            files: 120,
            step_duration: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// The analysis handler's state.
pub struct Analysis {
    config: AnalysisConfig,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analysis")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Analysis {
    /// Builds the state.
    pub fn new(config: AnalysisConfig, store: Arc<dyn Store>) -> Self {
        Self { config, store }
    }
}

/// The state handlers of this crate run with.
pub type State = Arc<Analysis>;

/// The group of this crate: a timeout well above the job's length (its run history is on, as
/// every group's by default).
pub fn groups(config: &AnalysisConfig) -> Vec<Group<State>> {
    let expected = config.step_duration * config.files;
    vec![
        Group::new(GROUP)
            .ack_wait(config.ack_wait)
            .concurrency(4)
            .handle_with(
                analyse,
                HandlerOptions::default()
                    .timeout(expected * 3 + Duration::from_secs(60))
                    .expected_duration(expected * 2 + Duration::from_secs(1)),
            ),
    ]
}

/// A deterministic finding for a file, or none: a stand-in for the rules of a real analyser.
fn check_file(commit: &str, index: u32) -> Option<Finding> {
    let h = commit.bytes().fold(index.wrapping_mul(31), |h, b| {
        h.wrapping_mul(33) ^ u32::from(b)
    });
    (h % 7 == 0).then(|| Finding {
        rule: ["unused-result", "unchecked-unwrap", "todo-left"][(h % 3) as usize].into(),
        severity: [Severity::Info, Severity::Warning, Severity::Error][(h % 3) as usize],
        path: format!("src/module_{index}.rs"),
        line: 1 + h % 400,
        message: "found by the analysis rules".into(),
    })
}

/// Runs the analysis, reporting progress after every file.
pub async fn analyse(req: AnalysisRequested, ctx: Context<State>) -> HandlerResult {
    let a = ctx.state();
    let started = Instant::now();
    let files = a.config.files.max(1);
    let mut findings = Vec::new();
    for i in 0..files {
        tokio::select! {
            () = ctx.cancelled() => {
                tracing::info!(analysis = %req.analysis_id, file = i, "analysis cancelled");
                return Ok(());
            }
            () = tokio::time::sleep(a.config.step_duration) => {}
        }
        findings.extend(check_file(req.commit_sha.as_str(), i));
        let percent = u8::try_from((i + 1) * 100 / files).unwrap_or(100);
        ctx.progress(percent, format!("analysed {} of {files} files", i + 1))
            .await;
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let record = json!({
        "analysis_id": req.analysis_id, "commit_sha": req.commit_sha,
        "files": files, "findings": findings.len(), "duration_ms": duration_ms,
    });
    let stored = a
        .store
        .put(ctx.tenant(), ANALYSES, req.analysis_id.as_str(), &record)
        .await;
    if let Err(e) = stored {
        return fail_or_retry(&ctx, &req, HandlerError::transient(e)).await;
    }
    let completed = AnalysisCompleted {
        analysis_id: req.analysis_id.clone(),
        commit_sha: req.commit_sha.clone(),
        files_analysed: files,
        findings,
        duration_ms,
        completed_at: Utc::now(),
    };
    ctx.publish(&completed).await?;
    Ok(())
}

/// Announces `analysis.failed` when this was the last attempt; returns the error either way.
async fn fail_or_retry(
    ctx: &Context<State>,
    req: &AnalysisRequested,
    error: HandlerError,
) -> HandlerResult {
    if ctx.is_last_attempt() {
        let failed = AnalysisFailed {
            analysis_id: req.analysis_id.clone(),
            error: error.to_string(),
            attempts: ctx.attempt(),
            failed_at: Utc::now(),
        };
        ctx.publish(&failed).await?;
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use conveyor::TenantId;
    use conveyor::store::MemoryStore;
    use conveyor::testing::TestDelivery;
    use conveyor_schemas::{HttpUrl, Id};

    fn state(files: u32) -> State {
        Arc::new(Analysis::new(
            AnalysisConfig {
                files,
                step_duration: Duration::from_millis(5),
                ack_wait: Duration::from_secs(1),
            },
            Arc::new(MemoryStore::default()),
        ))
    }

    fn request() -> AnalysisRequested {
        AnalysisRequested {
            analysis_id: Id::new("an-1").unwrap(),
            repository_url: HttpUrl::new("https://git.example.com/acme/shop").unwrap(),
            commit_sha: Id::new("3f2a9c1").unwrap(),
            requested_by: Id::new("u-1").unwrap(),
            requested_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn reports_progress_per_file_and_completes() {
        let s = state(20);
        let run = TestDelivery::new(TenantId::parse("acme").unwrap(), request())
            .run(analyse, s.clone())
            .await;
        run.result.unwrap();
        assert_eq!(run.progress.len(), 20);
        assert_eq!(run.progress[0], (5, "analysed 1 of 20 files".to_owned()));
        assert_eq!(run.progress[19].0, 100);
        assert!(run.progress.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(run.published[0].event_type, "analysis.completed");
        assert_eq!(run.published[0].data["files_analysed"], 20);
        let stored = s
            .store
            .get(&TenantId::parse("acme").unwrap(), ANALYSES, "an-1")
            .await
            .unwrap();
        assert!(stored.is_some());
    }

    #[tokio::test]
    async fn stops_when_cancelled() {
        let run = TestDelivery::new(TenantId::parse("acme").unwrap(), request())
            .cancel_after(Duration::from_millis(30))
            .run(analyse, state(1000))
            .await;
        run.result.unwrap();
        assert!(run.published.is_empty(), "no completion after a cancel");
        assert!(run.progress.len() < 1000);
    }
}
