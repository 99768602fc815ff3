//! The catalog: every event type with its domain, JSON Schema and an example.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use conveyor::Event;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::types::Money;
use crate::{
    analysis, attribution, commerce, creators, dam, fraud, messaging, notifications, platform,
    reviews, scheduled, video,
};

/// One event type of the catalog.
pub struct Entry {
    event_type: &'static str,
    domain: &'static str,
    rust_type: &'static str,
    schema: fn() -> Value,
    example: fn() -> Value,
    decode: fn(&Value) -> Result<Value, String>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("event_type", &self.event_type)
            .field("domain", &self.domain)
            .field("rust_type", &self.rust_type)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// The event type, e.g. `order.created`.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    /// The domain it belongs to, e.g. `commerce`.
    pub fn domain(&self) -> &'static str {
        self.domain
    }

    /// The Rust type's path in this crate, e.g. `commerce::OrderCreated`.
    pub fn rust_type(&self) -> &'static str {
        self.rust_type
    }

    /// The JSON Schema (draft 2020-12) of the event's `data`.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }

    /// The event's description (the type's doc comment).
    pub fn description(&self) -> String {
        self.schema()["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An example payload.
    pub fn example(&self) -> Value {
        (self.example)()
    }

    /// Decodes `data` as the event's Rust type and encodes it again; the error names the path
    /// of the field that does not fit.
    pub fn round_trip(&self, data: &Value) -> Result<Value, String> {
        (self.decode)(data)
    }
}

fn schema_of<E: Event>() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<E>();
    let mut value = schema.to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "$id".into(),
            Value::String(format!(
                "https://conveyor.dev/schemas/{}.schema.json",
                E::TYPE
            )),
        );
        obj.insert("title".into(), Value::String(E::TYPE.into()));
        obj.insert("x-conveyor-type".into(), Value::String(E::TYPE.into()));
    }
    value
}

fn round_trip<E: Event>(data: &Value) -> Result<Value, String> {
    let event: E = serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        format!(
            "{}: {}",
            if path == "." {
                "data".to_owned()
            } else {
                format!("data.{path}")
            },
            e.inner()
        )
    })?;
    serde_json::to_value(&event).map_err(|e| e.to_string())
}

macro_rules! entries {
    ($($domain:ident :: $ty:ident => $example:expr;)*) => {
        vec![$(
            Entry {
                event_type: <$domain::$ty as Event>::TYPE,
                domain: stringify!($domain),
                rust_type: concat!(stringify!($domain), "::", stringify!($ty)),
                schema: schema_of::<$domain::$ty>,
                example: || {
                    let example: $domain::$ty = $example;
                    serde_json::to_value(example).unwrap_or(Value::Null)
                },
                decode: round_trip::<$domain::$ty>,
            },
        )*]
    };
}

/// An example value of a validated string type (the type comes from the field it fills).
#[allow(clippy::expect_used)]
fn v<T: TryFrom<String, Error = crate::types::InvalidValue>>(s: &str) -> T {
    T::try_from(s.to_owned()).expect("example value")
}

#[allow(clippy::expect_used)]
fn eur(minor: i64) -> Money {
    Money::new(minor, "EUR").expect("example money")
}

#[allow(clippy::expect_used)]
fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("example time")
        .with_timezone(&Utc)
}

#[allow(clippy::expect_used)]
fn rating(stars: u8) -> crate::reviews::Rating {
    crate::reviews::Rating::new(stars).expect("example rating")
}

/// The time of the examples.
fn t() -> DateTime<Utc> {
    at("2026-11-22T09:00:00Z")
}

fn build() -> Vec<Entry> {
    use std::num::NonZeroU32;
    entries! {
        commerce::OrderCreated => commerce::OrderCreated {
            order_id: v("o-1001"), customer_id: v("c-17"),
            lines: vec![commerce::OrderLine { sku: v("mug-blue"), quantity: NonZeroU32::MIN, unit_price: eur(1250) }],
            total: eur(1250), placed_at: t(),
        };
        commerce::OrderFulfilled => commerce::OrderFulfilled {
            order_id: v("o-1001"), tracking_number: Some("3S-123456".into()), fulfilled_at: t(),
        };
        commerce::OrderCancelled => commerce::OrderCancelled {
            order_id: v("o-1001"), reason: commerce::CancellationReason::CustomerRequest, cancelled_at: t(),
        };
        commerce::OrderRefunded => commerce::OrderRefunded {
            order_id: v("o-1001"), refund_id: v("re_9"), amount: eur(1250), refunded_at: t(),
        };
        commerce::CustomerCreated => commerce::CustomerCreated {
            customer_id: v("c-17"), email: v("ana@example.com"), name: Some("Ana".into()),
            marketing_opt_in: false, created_at: t(),
        };
        reviews::ReviewSubmitted => reviews::ReviewSubmitted {
            review_id: v("r-5"), product_id: v("mug-blue"), order_id: Some(v("o-1001")),
            customer_id: v("c-17"), rating: rating(4),
            title: "Nice mug".into(), body: "Keeps coffee warm.".into(), language: v("en"), submitted_at: t(),
        };
        reviews::ReviewReminderScheduled => reviews::ReviewReminderScheduled {
            order_id: v("o-1001"), customer_id: v("c-17"), email: v("ana@example.com"),
            send_at: at("2026-11-29T09:00:00Z"), reminders_sent: 0,
        };
        creators::CreatorApplied => creators::CreatorApplied {
            application_id: v("app-3"), email: v("maya@example.com"), platform: creators::Platform::Tiktok,
            profile_url: v("https://www.tiktok.com/@maya"), followers: 48_000, applied_at: t(),
        };
        creators::CreatorApproved => creators::CreatorApproved {
            application_id: v("app-3"), creator_id: v("cr-3"), commission_bps: 1000,
            approved_by: v("u-admin"), approved_at: t(),
        };
        creators::CreatorRejected => creators::CreatorRejected {
            application_id: v("app-4"), reason: "Audience outside our markets".into(), rejected_at: t(),
        };
        creators::PayoutRequested => creators::PayoutRequested {
            payout_id: v("po-8"), creator_id: v("cr-3"), amount: eur(15_000),
            method: creators::PayoutMethod::BankTransfer, requested_at: t(),
        };
        creators::PayoutCompleted => creators::PayoutCompleted {
            payout_id: v("po-8"), creator_id: v("cr-3"), amount: eur(15_000),
            provider_reference: v("tr_77"), completed_at: t(),
        };
        attribution::TouchpointRecorded => attribution::TouchpointRecorded {
            touchpoint_id: v("tp-1"), visitor_id: v("v-9"), channel: attribution::Channel::Creator,
            campaign_id: None, creator_id: Some(v("cr-3")),
            landing_url: v("https://shop.example.com/?ref=maya"), occurred_at: t(),
        };
        attribution::ConversionAttributed => attribution::ConversionAttributed {
            order_id: v("o-1001"), visitor_id: v("v-9"), model: attribution::AttributionModel::Linear,
            revenue: eur(1250),
            credits: vec![attribution::Credit { touchpoint_id: v("tp-1"), share_bps: 10_000 }],
            attributed_at: t(),
        };
        video::VideoUploadCompleted => video::VideoUploadCompleted {
            video_id: v("vid-1"), storage_url: v("https://storage.example.com/vid-1.mp4"),
            size_bytes: 52_428_800, duration_ms: 93_000, content_type: "video/mp4".into(),
            uploaded_by: v("u-2"), completed_at: t(),
        };
        video::VideoTranscriptionStarted => video::VideoTranscriptionStarted {
            video_id: v("vid-1"), job_id: v("tj-1"), language: Some(v("en")), started_at: t(),
        };
        video::VideoTranscriptionCompleted => video::VideoTranscriptionCompleted {
            video_id: v("vid-1"), job_id: v("tj-1"), language: v("en"),
            segments: vec![video::TranscriptSegment { start_ms: 0, end_ms: 2400, text: "Welcome back!".into() }],
            word_count: 2, completed_at: t(),
        };
        video::VideoTranscriptionFailed => video::VideoTranscriptionFailed {
            video_id: v("vid-2"), job_id: v("tj-2"), error: "audio track missing".into(), failed_at: t(),
        };
        video::VideoAiGenerated => video::VideoAiGenerated {
            video_id: v("vid-1"), kind: video::GeneratedKind::Summary,
            content: "A short welcome.".into(), model: "summarizer-1".into(), generated_at: t(),
        };
        dam::DamAssetUploaded => dam::DamAssetUploaded {
            asset_id: v("as-1"), file_name: "hero.jpg".into(), content_type: "image/jpeg".into(),
            size_bytes: 2_097_152, storage_url: v("https://storage.example.com/as-1"),
            uploaded_by: v("u-2"), uploaded_at: t(),
        };
        dam::DamGdriveSyncRequested => dam::DamGdriveSyncRequested {
            sync_id: v("sy-1"), folder_id: v("1AbCdEf"), changed_since: Some(at("2026-11-21T09:00:00Z")),
            requested_by: v("u-2"), requested_at: t(),
        };
        dam::DamRightsExpiryCheck => dam::DamRightsExpiryCheck {
            asset_id: v("as-1"),
            rights_expire_on: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default(),
            warn_days_before: 14,
        };
        dam::DamExportRequested => dam::DamExportRequested {
            export_id: v("ex-1"), asset_ids: vec![v("as-1"), v("as-2")], format: dam::ExportFormat::Zip,
            requested_by: v("u-2"), requested_at: t(),
        };
        dam::DamExportCompleted => dam::DamExportCompleted {
            export_id: v("ex-1"), download_url: v("https://storage.example.com/ex-1.zip"),
            expires_at: at("2026-11-29T09:00:00Z"), file_count: 2, completed_at: t(),
        };
        fraud::FraudDetectionCreated => fraud::FraudDetectionCreated {
            detection_id: v("fd-1"), order_id: v("o-1001"), amount: eur(99_900), score: 910,
            decision: fraud::Decision::Block,
            signals: vec![fraud::Signal { name: "ip_country_mismatch".into(), weight_bps: 4000 }],
            detected_at: t(),
        };
        fraud::FraudExplanationRequested => fraud::FraudExplanationRequested {
            detection_id: v("fd-1"), decision: fraud::Decision::Block,
            priority: fraud::Priority::High, requested_at: t(),
        };
        fraud::FraudExplanationCompleted => fraud::FraudExplanationCompleted {
            detection_id: v("fd-1"), explanation: "The card country differs from the IP country.".into(),
            model: "explainer-1".into(), completed_at: t(),
        };
        notifications::EmailAlertRequested => notifications::EmailAlertRequested {
            alert_id: v("al-1"), to: vec![v("ops@example.com")],
            template: notifications::EmailTemplate::FraudBlocked,
            variables: [
                ("order_id", "o-1001"),
                ("amount", "99900 EUR"),
                ("score", "930"),
                ("detection_id", "fd-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            requested_at: t(),
        };
        notifications::WebhookDeliveryRequested => notifications::WebhookDeliveryRequested {
            delivery_id: v("wd-1"), subscription_id: v("sub-1"), url: v("https://hooks.example.com/orders"),
            event_name: "order.created".into(), body: r#"{"order_id":"o-1001"}"#.into(), requested_at: t(),
        };
        notifications::WebhookDeliveryFailed => notifications::WebhookDeliveryFailed {
            delivery_id: v("wd-1"), subscription_id: v("sub-1"), url: v("https://hooks.example.com/orders"),
            last_status: Some(410), error: "410 Gone".into(), attempts: 1, failed_at: t(),
        };
        messaging::MessageSent => messaging::MessageSent {
            message_id: v("m-1"), conversation_id: v("cv-1"), sender_id: v("u-5"),
            recipient_ids: vec![v("u-6")], text: "Is this still available?".into(), sent_at: t(),
        };
        messaging::MessageFlagged => messaging::MessageFlagged {
            message_id: v("m-2"), categories: vec![messaging::ModerationCategory::OffPlatformPayment],
            confidence: 870, hidden: true, flagged_at: t(),
        };
        analysis::AnalysisRequested => analysis::AnalysisRequested {
            analysis_id: v("an-1"), repository_url: v("https://git.example.com/acme/shop"),
            commit_sha: v("9fceb02"), requested_by: v("u-2"), requested_at: t(),
        };
        analysis::AnalysisCompleted => analysis::AnalysisCompleted {
            analysis_id: v("an-1"), commit_sha: v("9fceb02"), files_analysed: 412,
            findings: vec![analysis::Finding {
                rule: "unused-import".into(), severity: analysis::Severity::Warning,
                path: "src/cart.rs".into(), line: 3, message: "unused import `HashMap`".into(),
            }],
            duration_ms: 184_000, completed_at: t(),
        };
        analysis::AnalysisFailed => analysis::AnalysisFailed {
            analysis_id: v("an-2"), error: "repository not found".into(), attempts: 3, failed_at: t(),
        };
        scheduled::DailyMetrics => scheduled::DailyMetrics {
            schedule: v("daily-metrics"), scheduled_at: at("2026-11-22T00:05:00Z"), timezone: v("UTC"),
        };
        scheduled::HourlySync => scheduled::HourlySync {
            schedule: v("hourly-sync"), scheduled_at: at("2026-11-22T09:00:00Z"), timezone: v("UTC"),
        };
        scheduled::WeeklyDigest => scheduled::WeeklyDigest {
            schedule: v("weekly-digest"), scheduled_at: at("2026-11-23T08:00:00Z"), timezone: v("Europe/Amsterdam"),
        };
        scheduled::VideoSyncRecovery => scheduled::VideoSyncRecovery {
            schedule: v("video-sync-recovery"), scheduled_at: at("2026-11-22T09:15:00Z"), timezone: v("UTC"),
        };
        scheduled::DamRightsExpiryDaily => scheduled::DamRightsExpiryDaily {
            schedule: v("dam-rights-expiry"), scheduled_at: at("2026-11-22T06:00:00Z"), timezone: v("Europe/Amsterdam"),
        };
        scheduled::DailyReport => scheduled::DailyReport {
            schedule: v("daily-report"), scheduled_at: at("2026-11-22T08:00:00Z"), timezone: v("Europe/Amsterdam"),
        };
        scheduled::WeeklyCleanup => scheduled::WeeklyCleanup {
            schedule: v("weekly-cleanup"), scheduled_at: at("2026-11-22T01:00:00Z"), timezone: v("Europe/Amsterdam"),
        };
        scheduled::HealthCheck => scheduled::HealthCheck {
            schedule: v("health-check"), scheduled_at: at("2026-11-22T09:15:00Z"), timezone: v("UTC"),
        };
        platform::SlaBreached => platform::SlaBreached {
            group: "analysis".into(), event_id: "0193a5c2-4d1e-7cc0-8d1e-2f6f3a3b9c11".into(),
            event_type: "analysis.requested".into(), attempt: 1, expected_ms: 300_000,
            elapsed_ms: 300_012, detected_at: t(),
        };
    }
}

static CATALOG: LazyLock<Vec<Entry>> = LazyLock::new(build);

/// Every event type of the catalog, in domain order.
pub fn catalog() -> &'static [Entry] {
    &CATALOG
}

/// The catalog entry of `event_type`, if there is one.
pub fn find(event_type: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.event_type == event_type)
}
