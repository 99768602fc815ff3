//! The catalog: every event type with its domain, JSON Schema and an example.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use conveyor::Event;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::types::{EmailAddress, HttpUrl, Id, LanguageTag, Money, TimeZoneName};
use crate::{
    analysis, attribution, commerce, creators, dam, fraud, messaging, notifications, reviews,
    scheduled, video,
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

#[allow(clippy::expect_used)] // the literals below are valid; a typo fails every catalog test
fn id(s: &str) -> Id {
    Id::new(s).expect("example id")
}

#[allow(clippy::expect_used)]
fn eur(minor: i64) -> Money {
    Money::new(minor, "EUR").expect("example money")
}

#[allow(clippy::expect_used)]
fn url(s: &str) -> HttpUrl {
    HttpUrl::new(s).expect("example url")
}

#[allow(clippy::expect_used)]
fn email(s: &str) -> EmailAddress {
    EmailAddress::new(s).expect("example email")
}

#[allow(clippy::expect_used)]
fn lang(s: &str) -> LanguageTag {
    LanguageTag::new(s).expect("example language")
}

#[allow(clippy::expect_used)]
fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("example time")
        .with_timezone(&Utc)
}

#[allow(clippy::expect_used)]
fn zone(s: &str) -> TimeZoneName {
    TimeZoneName::new(s).expect("example zone")
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
            order_id: id("o-1001"), customer_id: id("c-17"),
            lines: vec![commerce::OrderLine { sku: id("mug-blue"), quantity: NonZeroU32::MIN, unit_price: eur(1250) }],
            total: eur(1250), placed_at: t(),
        };
        commerce::OrderFulfilled => commerce::OrderFulfilled {
            order_id: id("o-1001"), tracking_number: Some("3S-123456".into()), fulfilled_at: t(),
        };
        commerce::OrderCancelled => commerce::OrderCancelled {
            order_id: id("o-1001"), reason: commerce::CancellationReason::CustomerRequest, cancelled_at: t(),
        };
        commerce::OrderRefunded => commerce::OrderRefunded {
            order_id: id("o-1001"), refund_id: id("re_9"), amount: eur(1250), refunded_at: t(),
        };
        commerce::CustomerCreated => commerce::CustomerCreated {
            customer_id: id("c-17"), email: email("ana@example.com"), name: Some("Ana".into()),
            marketing_opt_in: false, created_at: t(),
        };
        reviews::ReviewSubmitted => reviews::ReviewSubmitted {
            review_id: id("r-5"), product_id: id("mug-blue"), order_id: Some(id("o-1001")),
            customer_id: id("c-17"), rating: rating(4),
            title: "Nice mug".into(), body: "Keeps coffee warm.".into(), language: lang("en"), submitted_at: t(),
        };
        reviews::ReviewReminderScheduled => reviews::ReviewReminderScheduled {
            order_id: id("o-1001"), customer_id: id("c-17"), email: email("ana@example.com"),
            send_at: at("2026-11-29T09:00:00Z"), reminders_sent: 0,
        };
        creators::CreatorApplied => creators::CreatorApplied {
            application_id: id("app-3"), email: email("maya@example.com"), platform: creators::Platform::Tiktok,
            profile_url: url("https://www.tiktok.com/@maya"), followers: 48_000, applied_at: t(),
        };
        creators::CreatorApproved => creators::CreatorApproved {
            application_id: id("app-3"), creator_id: id("cr-3"), commission_bps: 1000,
            approved_by: id("u-admin"), approved_at: t(),
        };
        creators::CreatorRejected => creators::CreatorRejected {
            application_id: id("app-4"), reason: "Audience outside our markets".into(), rejected_at: t(),
        };
        creators::PayoutRequested => creators::PayoutRequested {
            payout_id: id("po-8"), creator_id: id("cr-3"), amount: eur(15_000),
            method: creators::PayoutMethod::BankTransfer, requested_at: t(),
        };
        creators::PayoutCompleted => creators::PayoutCompleted {
            payout_id: id("po-8"), creator_id: id("cr-3"), amount: eur(15_000),
            provider_reference: id("tr_77"), completed_at: t(),
        };
        attribution::TouchpointRecorded => attribution::TouchpointRecorded {
            touchpoint_id: id("tp-1"), visitor_id: id("v-9"), channel: attribution::Channel::Creator,
            campaign_id: None, creator_id: Some(id("cr-3")),
            landing_url: url("https://shop.example.com/?ref=maya"), occurred_at: t(),
        };
        attribution::ConversionAttributed => attribution::ConversionAttributed {
            order_id: id("o-1001"), visitor_id: id("v-9"), model: attribution::AttributionModel::Linear,
            revenue: eur(1250),
            credits: vec![attribution::Credit { touchpoint_id: id("tp-1"), share_bps: 10_000 }],
            attributed_at: t(),
        };
        video::VideoUploadCompleted => video::VideoUploadCompleted {
            video_id: id("vid-1"), storage_url: url("https://storage.example.com/vid-1.mp4"),
            size_bytes: 52_428_800, duration_ms: 93_000, content_type: "video/mp4".into(),
            uploaded_by: id("u-2"), completed_at: t(),
        };
        video::VideoTranscriptionStarted => video::VideoTranscriptionStarted {
            video_id: id("vid-1"), job_id: id("tj-1"), language: Some(lang("en")), started_at: t(),
        };
        video::VideoTranscriptionCompleted => video::VideoTranscriptionCompleted {
            video_id: id("vid-1"), job_id: id("tj-1"), language: lang("en"),
            segments: vec![video::TranscriptSegment { start_ms: 0, end_ms: 2400, text: "Welcome back!".into() }],
            word_count: 2, completed_at: t(),
        };
        video::VideoTranscriptionFailed => video::VideoTranscriptionFailed {
            video_id: id("vid-2"), job_id: id("tj-2"), error: "audio track missing".into(), failed_at: t(),
        };
        video::VideoAiGenerated => video::VideoAiGenerated {
            video_id: id("vid-1"), kind: video::GeneratedKind::Summary,
            content: "A short welcome.".into(), model: "summarizer-1".into(), generated_at: t(),
        };
        dam::DamAssetUploaded => dam::DamAssetUploaded {
            asset_id: id("as-1"), file_name: "hero.jpg".into(), content_type: "image/jpeg".into(),
            size_bytes: 2_097_152, storage_url: url("https://storage.example.com/as-1"),
            uploaded_by: id("u-2"), uploaded_at: t(),
        };
        dam::DamGdriveSyncRequested => dam::DamGdriveSyncRequested {
            sync_id: id("sy-1"), folder_id: id("1AbCdEf"), changed_since: Some(at("2026-11-21T09:00:00Z")),
            requested_by: id("u-2"), requested_at: t(),
        };
        dam::DamRightsExpiryCheck => dam::DamRightsExpiryCheck {
            asset_id: id("as-1"),
            rights_expire_on: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default(),
            warn_days_before: 14,
        };
        dam::DamExportRequested => dam::DamExportRequested {
            export_id: id("ex-1"), asset_ids: vec![id("as-1"), id("as-2")], format: dam::ExportFormat::Zip,
            requested_by: id("u-2"), requested_at: t(),
        };
        dam::DamExportCompleted => dam::DamExportCompleted {
            export_id: id("ex-1"), download_url: url("https://storage.example.com/ex-1.zip"),
            expires_at: at("2026-11-29T09:00:00Z"), file_count: 2, completed_at: t(),
        };
        fraud::FraudDetectionCreated => fraud::FraudDetectionCreated {
            detection_id: id("fd-1"), order_id: id("o-1001"), amount: eur(99_900), score: 910,
            decision: fraud::Decision::Block,
            signals: vec![fraud::Signal { name: "ip_country_mismatch".into(), weight_bps: 4000 }],
            detected_at: t(),
        };
        fraud::FraudExplanationRequested => fraud::FraudExplanationRequested {
            detection_id: id("fd-1"), decision: fraud::Decision::Block,
            priority: fraud::Priority::High, requested_at: t(),
        };
        fraud::FraudExplanationCompleted => fraud::FraudExplanationCompleted {
            detection_id: id("fd-1"), explanation: "The card country differs from the IP country.".into(),
            model: "explainer-1".into(), completed_at: t(),
        };
        notifications::EmailAlertRequested => notifications::EmailAlertRequested {
            alert_id: id("al-1"), to: vec![email("ops@example.com")],
            template: notifications::EmailTemplate::FraudBlocked,
            variables: [("order_id".to_owned(), "o-1001".to_owned())].into_iter().collect(),
            requested_at: t(),
        };
        notifications::WebhookDeliveryRequested => notifications::WebhookDeliveryRequested {
            delivery_id: id("wd-1"), subscription_id: id("sub-1"), url: url("https://hooks.example.com/orders"),
            event_name: "order.created".into(), body: r#"{"order_id":"o-1001"}"#.into(), requested_at: t(),
        };
        notifications::WebhookDeliveryFailed => notifications::WebhookDeliveryFailed {
            delivery_id: id("wd-1"), subscription_id: id("sub-1"), url: url("https://hooks.example.com/orders"),
            last_status: Some(410), error: "410 Gone".into(), attempts: 1, failed_at: t(),
        };
        messaging::MessageSent => messaging::MessageSent {
            message_id: id("m-1"), conversation_id: id("cv-1"), sender_id: id("u-5"),
            recipient_ids: vec![id("u-6")], text: "Is this still available?".into(), sent_at: t(),
        };
        messaging::MessageFlagged => messaging::MessageFlagged {
            message_id: id("m-2"), categories: vec![messaging::ModerationCategory::OffPlatformPayment],
            confidence: 870, hidden: true, flagged_at: t(),
        };
        analysis::AnalysisRequested => analysis::AnalysisRequested {
            analysis_id: id("an-1"), repository_url: url("https://git.example.com/acme/shop"),
            commit_sha: id("9fceb02"), requested_by: id("u-2"), requested_at: t(),
        };
        analysis::AnalysisCompleted => analysis::AnalysisCompleted {
            analysis_id: id("an-1"), commit_sha: id("9fceb02"), files_analysed: 412,
            findings: vec![analysis::Finding {
                rule: "unused-import".into(), severity: analysis::Severity::Warning,
                path: "src/cart.rs".into(), line: 3, message: "unused import `HashMap`".into(),
            }],
            duration_ms: 184_000, completed_at: t(),
        };
        analysis::AnalysisFailed => analysis::AnalysisFailed {
            analysis_id: id("an-2"), error: "repository not found".into(), attempts: 3, failed_at: t(),
        };
        scheduled::DailyMetrics => scheduled::DailyMetrics {
            schedule: id("daily-metrics"), scheduled_at: at("2026-11-22T00:05:00Z"), timezone: zone("UTC"),
        };
        scheduled::HourlySync => scheduled::HourlySync {
            schedule: id("hourly-sync"), scheduled_at: at("2026-11-22T09:00:00Z"), timezone: zone("UTC"),
        };
        scheduled::WeeklyDigest => scheduled::WeeklyDigest {
            schedule: id("weekly-digest"), scheduled_at: at("2026-11-23T08:00:00Z"), timezone: zone("Europe/Amsterdam"),
        };
        scheduled::VideoSyncRecovery => scheduled::VideoSyncRecovery {
            schedule: id("video-sync-recovery"), scheduled_at: at("2026-11-22T09:15:00Z"), timezone: zone("UTC"),
        };
        scheduled::DamRightsExpiryDaily => scheduled::DamRightsExpiryDaily {
            schedule: id("dam-rights-expiry"), scheduled_at: at("2026-11-22T06:00:00Z"), timezone: zone("Europe/Amsterdam"),
        };
        scheduled::DailyReport => scheduled::DailyReport {
            schedule: id("daily-report"), scheduled_at: at("2026-11-22T08:00:00Z"), timezone: zone("Europe/Amsterdam"),
        };
        scheduled::WeeklyCleanup => scheduled::WeeklyCleanup {
            schedule: id("weekly-cleanup"), scheduled_at: at("2026-11-22T01:00:00Z"), timezone: zone("Europe/Amsterdam"),
        };
        scheduled::HealthCheck => scheduled::HealthCheck {
            schedule: id("health-check"), scheduled_at: at("2026-11-22T09:15:00Z"), timezone: zone("UTC"),
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
