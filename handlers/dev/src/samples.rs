//! Sample events, as apps of three tenants would publish them.

use std::time::Duration;

use chrono::Utc;
use conveyor::{PublishError, Publisher};
use conveyor_schemas::analysis::AnalysisRequested;
use conveyor_schemas::fraud::{Decision, FraudDetectionCreated, Signal};
use conveyor_schemas::notifications::WebhookDeliveryRequested;
use conveyor_schemas::video::VideoUploadCompleted;
use conveyor_schemas::{HttpUrl, Id, InvalidValue, Money};
use tokio_util::sync::CancellationToken;

use crate::TENANTS;
use crate::lines::say;

/// A fraud detection with the given decision.
pub fn detection(n: u64, decision: Decision) -> Result<FraudDetectionCreated, InvalidValue> {
    let (score, signals) = match decision {
        Decision::Block => (930, vec![("card_testing", 4200), ("new_device", 1800)]),
        Decision::Review => (540, vec![("address_mismatch", 2100)]),
        Decision::Allow => (80, vec![]),
    };
    Ok(FraudDetectionCreated {
        detection_id: Id::new(format!("det-{n}"))?,
        order_id: Id::new(format!("ord-{n}"))?,
        amount: Money::new(i64::try_from(n % 50).unwrap_or(0) * 1_000 + 2_500, "EUR")?,
        score,
        decision,
        signals: signals
            .into_iter()
            .map(|(name, weight_bps)| Signal {
                name: name.into(),
                weight_bps,
            })
            .collect(),
        detected_at: Utc::now(),
    })
}

/// A webhook delivery to `url`.
pub fn webhook(n: u64, url: &str) -> Result<WebhookDeliveryRequested, InvalidValue> {
    Ok(WebhookDeliveryRequested {
        delivery_id: Id::new(format!("wh-{n}"))?,
        subscription_id: Id::new("sub-1")?,
        url: HttpUrl::new(url)?,
        event_name: "order.created".into(),
        body: format!(r#"{{"order_id":"ord-{n}"}}"#),
        requested_at: Utc::now(),
    })
}

/// A completed video upload.
pub fn upload(n: u64) -> Result<VideoUploadCompleted, InvalidValue> {
    Ok(VideoUploadCompleted {
        video_id: Id::new(format!("vid-{n}"))?,
        storage_url: HttpUrl::new(format!("https://cdn.example.com/videos/vid-{n}.mp4"))?,
        size_bytes: 48_000_000,
        duration_ms: 95_000,
        content_type: "video/mp4".into(),
        uploaded_by: Id::new("user-7")?,
        completed_at: Utc::now(),
    })
}

/// An analysis request.
pub fn analysis(n: u64) -> Result<AnalysisRequested, InvalidValue> {
    Ok(AnalysisRequested {
        analysis_id: Id::new(format!("an-{n}"))?,
        repository_url: HttpUrl::new("https://git.example.com/shop/backend")?,
        commit_sha: Id::new(format!(
            "{:07x}",
            n.wrapping_mul(2_654_435_761) & 0xfff_ffff
        ))?,
        requested_by: Id::new("user-7")?,
        requested_at: Utc::now(),
    })
}

async fn one(
    publisher: &Publisher,
    n: u64,
    sink: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Every kind of sample comes from every tenant in turn.
    let tenant = TENANTS[usize::try_from(n + n / 6).unwrap_or(0) % TENANTS.len()];
    let sent: Result<_, PublishError> = match n % 6 {
        0 => {
            publisher
                .publish(tenant, &detection(n, Decision::Review)?)
                .await
        }
        1 => {
            publisher
                .publish(tenant, &detection(n, Decision::Block)?)
                .await
        }
        2 => {
            publisher
                .publish(tenant, &webhook(n, &format!("{sink}/hooks/ok"))?)
                .await
        }
        3 => {
            publisher
                .publish(tenant, &webhook(n, &format!("{sink}/hooks/gone"))?)
                .await
        }
        4 => publisher.publish(tenant, &upload(n)?).await,
        _ => publisher.publish(tenant, &analysis(n)?).await,
    };
    sent?;
    Ok(())
}

/// Publishes one sample every `every` until `stop`.
pub async fn run(publisher: Publisher, sink: String, every: Duration, stop: CancellationToken) {
    let mut n = 0u64;
    loop {
        if let Err(e) = one(&publisher, n, &sink).await {
            say("samples", &format!("could not publish: {e}"));
        }
        n += 1;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}
