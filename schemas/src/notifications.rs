//! Notifications: email alerts and webhook deliveries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{EmailAddress, HttpUrl, Id};

/// The template an email alert is rendered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailTemplate {
    /// An order was blocked by fraud screening.
    FraudBlocked,
    /// The daily report is ready.
    DailyReport,
    /// A webhook endpoint keeps failing.
    WebhookFailing,
    /// Usage rights of an asset expire soon.
    RightsExpiring,
}

/// An email alert is to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmailAlertRequested {
    /// The alert's id (also the idempotency key of the send).
    pub alert_id: Id,
    /// Recipients.
    pub to: Vec<EmailAddress>,
    /// The template.
    pub template: EmailTemplate,
    /// Values the template fills in, by name.
    pub variables: BTreeMap<String, String>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for EmailAlertRequested {
    const TYPE: &'static str = "email.alert.requested";
}

/// A webhook is to be delivered to a subscriber's endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookDeliveryRequested {
    /// The delivery's id (sent as the idempotency header).
    pub delivery_id: Id,
    /// The subscription it belongs to (selects the signing secret).
    pub subscription_id: Id,
    /// The endpoint.
    pub url: HttpUrl,
    /// The webhook's event name, e.g. `order.created`.
    pub event_name: String,
    /// The exact body to POST (JSON text), signed as is.
    pub body: String,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for WebhookDeliveryRequested {
    const TYPE: &'static str = "webhook.delivery.requested";
}

/// A webhook delivery failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookDeliveryFailed {
    /// The delivery's id.
    pub delivery_id: Id,
    /// The subscription it belongs to.
    pub subscription_id: Id,
    /// The endpoint.
    pub url: HttpUrl,
    /// The last HTTP status, if a response came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// What went wrong on the last attempt.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up.
    pub failed_at: DateTime<Utc>,
}

impl Event for WebhookDeliveryFailed {
    const TYPE: &'static str = "webhook.delivery.failed";
}
