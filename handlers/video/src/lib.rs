//! Video team handlers: the pipeline
//! `video.upload.completed` → `video.transcription.started` → `video.transcription.completed` →
//! `video.ai.generated`.
//!
//! Each step publishes the next from inside its handler, so every event of one upload carries
//! the upload's id as correlation id, the previous step's id as causation id, and the same
//! trace: `conveyor runs show`, a trace viewer or the events themselves follow an upload through
//! the chain.
//!
//! - `video-intake` on `video.upload.completed`: records the upload and starts a transcription
//!   job;
//! - `video-transcribe` on `video.transcription.started`: asks the AI endpoint
//!   (`POST <base>/v1/audio/transcriptions`) for the transcript;
//! - `video-summarize` on `video.transcription.completed`: asks the LLM
//!   (`POST <base>/v1/chat/completions`) for a summary.
//!
//! HTTP failures follow [`HandlerError::for_http_status`]: 5xx, 408 and timeouts retry, 429 waits
//! for `Retry-After`, other 4xx are permanent.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor::store::{Store, StoreExt};
use conveyor::{Context, Group, HandlerError, HandlerOptions, HandlerResult};
use conveyor_schemas::video::{
    GeneratedKind, TranscriptSegment, VideoAiGenerated, VideoTranscriptionCompleted,
    VideoTranscriptionStarted, VideoUploadCompleted,
};
use conveyor_schemas::{Id, LanguageTag};
use serde::Deserialize;
use serde_json::json;

/// The groups this crate defines.
pub const GROUPS: [&str; 3] = ["video-intake", "video-transcribe", "video-summarize"];
/// Store collection of uploads.
pub const UPLOADS: &str = "video_uploads";
/// Store collection of transcripts.
pub const TRANSCRIPTS: &str = "video_transcripts";
/// Store collection of AI outputs.
pub const OUTPUTS: &str = "video_outputs";

/// Settings of the video handlers.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    /// Base URL of the AI API.
    pub ai_base_url: String,
    /// The model that writes summaries.
    pub model: String,
    /// Timeout of one AI request.
    pub request_timeout: Duration,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            ai_base_url: "http://127.0.0.1:8089".into(),
            model: "video-summary-1".into(),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The video handlers' state.
pub struct Video {
    config: VideoConfig,
    http: reqwest::Client,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Video {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Video")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Video {
    /// Builds the state.
    pub fn new(config: VideoConfig, store: Arc<dyn Store>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()?;
        Ok(Self {
            config,
            http,
            store,
        })
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
        traceparent: String,
    ) -> Result<T, HandlerError> {
        let url = format!("{}{path}", self.config.ai_base_url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .header("traceparent", traceparent)
            .json(&body)
            .send()
            .await
            .map_err(|e| HandlerError::transient(format!("AI request to {url} failed: {e}")))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        if let Some(e) =
            HandlerError::for_http_response(status, retry_after, format!("AI at {url}"))
        {
            return Err(e);
        }
        response
            .json()
            .await
            .map_err(|e| HandlerError::transient(format!("AI answer unreadable: {e}")))
    }
}

/// The state handlers of this crate run with.
pub type State = Arc<Video>;

/// Every group of this crate.
pub fn groups() -> Vec<Group<State>> {
    let ai = HandlerOptions::default().timeout(Duration::from_secs(300));
    vec![
        Group::new(GROUPS[0]).handle(intake),
        Group::new(GROUPS[1]).handle_with(transcribe, ai.clone()),
        Group::new(GROUPS[2]).handle_with(summarize, ai),
    ]
}

/// Records the upload and starts its transcription.
pub async fn intake(u: VideoUploadCompleted, ctx: Context<State>) -> HandlerResult {
    let v = ctx.state();
    v.store
        .put_as(ctx.tenant(), UPLOADS, u.video_id.as_str(), &u)
        .await?;
    let started = VideoTranscriptionStarted {
        video_id: u.video_id.clone(),
        job_id: Id::new(format!("tr-{}", u.video_id)).map_err(HandlerError::permanent)?,
        language: None,
        started_at: Utc::now(),
    };
    ctx.publish(&started).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Transcript {
    language: String,
    text: String,
    segments: Vec<TranscriptSegment>,
}

/// Transcribes the video and announces the transcript.
pub async fn transcribe(t: VideoTranscriptionStarted, ctx: Context<State>) -> HandlerResult {
    let v = ctx.state();
    let upload: VideoUploadCompleted = v
        .store
        .get_as(ctx.tenant(), UPLOADS, t.video_id.as_str())
        .await?
        .ok_or_else(|| {
            HandlerError::permanent(format!("no upload recorded for video {}", t.video_id))
        })?;
    let url = upload.storage_url.as_str();
    ctx.progress(10, format!("transcribing {url}")).await;
    let transcript: Transcript = v
        .post(
            "/v1/audio/transcriptions",
            json!({"url": url, "language": t.language}),
            ctx.traceparent(),
        )
        .await?;
    let language = LanguageTag::new(transcript.language.as_str())
        .map_err(|e| HandlerError::permanent(format!("AI returned a bad language: {e}")))?;
    let word_count = u32::try_from(transcript.text.split_whitespace().count()).unwrap_or(u32::MAX);
    v.store
        .put(
            ctx.tenant(),
            TRANSCRIPTS,
            t.video_id.as_str(),
            &json!({"job_id": t.job_id, "language": language, "text": transcript.text}),
        )
        .await?;
    let completed = VideoTranscriptionCompleted {
        video_id: t.video_id,
        job_id: t.job_id,
        language,
        segments: transcript.segments,
        word_count,
        completed_at: Utc::now(),
    };
    ctx.publish(&completed).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Chat {
    model: String,
    choices: Vec<ChatChoice>,
}

#[derive(Debug, Deserialize)]
struct ChatChoice {
    message: ChatText,
}

#[derive(Debug, Deserialize)]
struct ChatText {
    content: String,
}

/// Summarises the transcript and announces the summary.
pub async fn summarize(c: VideoTranscriptionCompleted, ctx: Context<State>) -> HandlerResult {
    let v = ctx.state();
    let text: Vec<&str> = c.segments.iter().map(|s| s.text.as_str()).collect();
    let chat: Chat = v
        .post(
            "/v1/chat/completions",
            json!({
                "model": v.config.model,
                "messages": [
                    {"role": "system", "content": "Summarise video transcripts in one sentence."},
                    {"role": "user", "content": format!("Summarise video {}:\n{}", c.video_id, text.join("\n"))},
                ],
            }),
            ctx.traceparent(),
        )
        .await?;
    let content = chat
        .choices
        .into_iter()
        .next()
        .map(|c| c.message.content)
        .ok_or_else(|| HandlerError::transient("AI answer has no choices"))?;
    v.store
        .put(
            ctx.tenant(),
            OUTPUTS,
            c.video_id.as_str(),
            &json!({"kind": "summary", "content": content, "model": chat.model}),
        )
        .await?;
    let generated = VideoAiGenerated {
        video_id: c.video_id,
        kind: GeneratedKind::Summary,
        content,
        model: chat.model,
        generated_at: Utc::now(),
    };
    ctx.publish(&generated).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use conveyor::store::MemoryStore;
    use conveyor::testing::TestDelivery;
    use conveyor::{EventOptions, Retry, TenantId};
    use conveyor_llm_stub::{LlmStub, StubOptions};
    use conveyor_schemas::HttpUrl;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    async fn setup(options: StubOptions) -> (LlmStub, State) {
        let stub = LlmStub::start("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let config = VideoConfig {
            ai_base_url: stub.base_url(),
            request_timeout: Duration::from_millis(500),
            ..VideoConfig::default()
        };
        let v = Video::new(config, Arc::new(MemoryStore::default())).unwrap();
        (stub, Arc::new(v))
    }

    fn upload() -> VideoUploadCompleted {
        VideoUploadCompleted {
            video_id: Id::new("v-1").unwrap(),
            storage_url: HttpUrl::new("https://cdn.example.com/v-1.mp4").unwrap(),
            size_bytes: 10_000_000,
            duration_ms: 12_000,
            content_type: "video/mp4".into(),
            uploaded_by: Id::new("u-1").unwrap(),
            completed_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn each_step_publishes_the_next_with_causation() {
        let (_stub, s) = setup(StubOptions::default()).await;
        let first = TestDelivery::new(acme(), upload())
            .options(EventOptions::default().id("up-1"))
            .run(intake, s.clone())
            .await;
        first.result.unwrap();
        let started = &first.published[0];
        assert_eq!(started.event_type, "video.transcription.started");
        assert_eq!(started.causation_id.as_deref(), Some("up-1"));
        assert_eq!(started.correlation_id.as_deref(), Some("up-1"));

        let event: VideoTranscriptionStarted =
            serde_json::from_value(started.data.clone()).unwrap();
        let second = TestDelivery::new(acme(), event)
            .options(EventOptions::default().id("tr-1").correlation_id("up-1"))
            .run(transcribe, s.clone())
            .await;
        second.result.unwrap();
        assert_eq!(second.progress[0].0, 10);
        let completed = &second.published[0];
        assert_eq!(completed.event_type, "video.transcription.completed");
        assert_eq!(completed.causation_id.as_deref(), Some("tr-1"));
        assert_eq!(completed.correlation_id.as_deref(), Some("up-1"));
        assert_eq!(completed.data["segments"].as_array().unwrap().len(), 3);

        let event: VideoTranscriptionCompleted =
            serde_json::from_value(completed.data.clone()).unwrap();
        let third = TestDelivery::new(acme(), event)
            .options(EventOptions::default().id("tc-1").correlation_id("up-1"))
            .run(summarize, s.clone())
            .await;
        third.result.unwrap();
        let generated = &third.published[0];
        assert_eq!(generated.event_type, "video.ai.generated");
        assert_eq!(generated.correlation_id.as_deref(), Some("up-1"));
        assert!(
            generated.data["content"]
                .as_str()
                .unwrap()
                .contains("Summarise video v-1")
        );
        assert!(
            s.store
                .get(&acme(), OUTPUTS, "v-1")
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_failing_ai_endpoint_is_retried_and_a_missing_upload_is_permanent() {
        let (_stub, s) = setup(StubOptions {
            fail_first: 1,
            ..StubOptions::default()
        })
        .await;
        TestDelivery::new(acme(), upload())
            .run(intake, s.clone())
            .await
            .result
            .unwrap();
        let started = VideoTranscriptionStarted {
            video_id: Id::new("v-1").unwrap(),
            job_id: Id::new("tr-v-1").unwrap(),
            language: None,
            started_at: Utc::now(),
        };
        let err = TestDelivery::new(acme(), started.clone())
            .run(transcribe, s.clone())
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Backoff);
        let unknown = VideoTranscriptionStarted {
            video_id: Id::new("v-404").unwrap(),
            ..started
        };
        let err = TestDelivery::new(acme(), unknown)
            .run(transcribe, s)
            .await
            .result
            .unwrap_err();
        assert_eq!(err.retry(), Retry::Never);
    }
}
