//! Video: the upload → transcription → AI pipeline.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{HttpUrl, Id, LanguageTag};

/// An uploaded video finished uploading and is ready for processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VideoUploadCompleted {
    /// The video's id.
    pub video_id: Id,
    /// Where the file is stored.
    pub storage_url: HttpUrl,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// MIME type, e.g. `video/mp4`.
    pub content_type: String,
    /// Who uploaded it.
    pub uploaded_by: Id,
    /// When the upload finished.
    pub completed_at: DateTime<Utc>,
}

impl Event for VideoUploadCompleted {
    const TYPE: &'static str = "video.upload.completed";
}

/// Transcription of a video started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VideoTranscriptionStarted {
    /// The video's id.
    pub video_id: Id,
    /// The transcription job's id.
    pub job_id: Id,
    /// The expected spoken language, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<LanguageTag>,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

impl Event for VideoTranscriptionStarted {
    const TYPE: &'static str = "video.transcription.started";
}

/// A timed piece of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TranscriptSegment {
    /// Start, in milliseconds from the beginning.
    pub start_ms: u64,
    /// End, in milliseconds from the beginning.
    pub end_ms: u64,
    /// The spoken text.
    pub text: String,
}

/// Transcription of a video finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VideoTranscriptionCompleted {
    /// The video's id.
    pub video_id: Id,
    /// The transcription job's id.
    pub job_id: Id,
    /// The detected language.
    pub language: LanguageTag,
    /// The transcript, in timed segments.
    pub segments: Vec<TranscriptSegment>,
    /// Word count of the transcript.
    pub word_count: u32,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
}

impl Event for VideoTranscriptionCompleted {
    const TYPE: &'static str = "video.transcription.completed";
}

/// Transcription of a video failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VideoTranscriptionFailed {
    /// The video's id.
    pub video_id: Id,
    /// The transcription job's id.
    pub job_id: Id,
    /// What went wrong.
    pub error: String,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
}

impl Event for VideoTranscriptionFailed {
    const TYPE: &'static str = "video.transcription.failed";
}

/// What the AI step produced for a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GeneratedKind {
    /// A short summary.
    Summary,
    /// Chapter titles with timestamps.
    Chapters,
    /// Social media captions.
    Captions,
    /// Search tags.
    Tags,
}

/// AI-generated content for a video is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VideoAiGenerated {
    /// The video's id.
    pub video_id: Id,
    /// What was generated.
    pub kind: GeneratedKind,
    /// The generated text.
    pub content: String,
    /// The model that produced it.
    pub model: String,
    /// When it was generated.
    pub generated_at: DateTime<Utc>,
}

impl Event for VideoAiGenerated {
    const TYPE: &'static str = "video.ai.generated";
}
