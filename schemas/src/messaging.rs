//! Messaging: messages between users, screened by content moderation.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::Id;

/// A user sent a message (to be screened by content moderation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageSent {
    /// The message's id.
    pub message_id: Id,
    /// The conversation it belongs to.
    pub conversation_id: Id,
    /// The sender.
    pub sender_id: Id,
    /// The recipients.
    pub recipient_ids: Vec<Id>,
    /// The text.
    pub text: String,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

impl Event for MessageSent {
    const TYPE: &'static str = "message.sent";
}

/// Why moderation flagged a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModerationCategory {
    /// Unsolicited promotion.
    Spam,
    /// Harassment or abuse.
    Harassment,
    /// An attempt to take a payment off-platform.
    OffPlatformPayment,
    /// Personal data that should not be shared.
    PersonalData,
}

/// Content moderation flagged a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageFlagged {
    /// The message's id.
    pub message_id: Id,
    /// The categories it was flagged for.
    pub categories: Vec<ModerationCategory>,
    /// Confidence, 0 to 1000.
    pub confidence: u16,
    /// Whether it was hidden from the recipients.
    pub hidden: bool,
    /// When it was flagged.
    pub flagged_at: DateTime<Utc>,
}

impl Event for MessageFlagged {
    const TYPE: &'static str = "message.flagged";
}
