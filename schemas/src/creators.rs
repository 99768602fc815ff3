//! Creators: creator applications, approvals and payouts.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{EmailAddress, HttpUrl, Id, Money};

/// The platform a creator publishes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Instagram.
    Instagram,
    /// TikTok.
    Tiktok,
    /// YouTube.
    Youtube,
    /// Anything else.
    Other,
}

/// A creator applied to join the tenant's program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatorApplied {
    /// The application's id.
    pub application_id: Id,
    /// The creator's contact email.
    pub email: EmailAddress,
    /// Their main platform.
    pub platform: Platform,
    /// Their profile URL.
    pub profile_url: HttpUrl,
    /// Followers on that platform.
    pub followers: u64,
    /// When they applied.
    pub applied_at: DateTime<Utc>,
}

impl Event for CreatorApplied {
    const TYPE: &'static str = "creator.applied";
}

/// A creator's application was approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatorApproved {
    /// The application's id.
    pub application_id: Id,
    /// The creator's id from now on.
    pub creator_id: Id,
    /// Commission on attributed sales, in basis points (1% = 100).
    pub commission_bps: u32,
    /// Who approved it.
    pub approved_by: Id,
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
}

impl Event for CreatorApproved {
    const TYPE: &'static str = "creator.approved";
}

/// A creator's application was rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatorRejected {
    /// The application's id.
    pub application_id: Id,
    /// Why, shown to the creator.
    pub reason: String,
    /// When it was rejected.
    pub rejected_at: DateTime<Utc>,
}

impl Event for CreatorRejected {
    const TYPE: &'static str = "creator.rejected";
}

/// How a payout is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutMethod {
    /// Bank transfer.
    BankTransfer,
    /// PayPal.
    Paypal,
    /// Store credit.
    StoreCredit,
}

/// A creator requested a payout of earned commission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutRequested {
    /// The payout's id.
    pub payout_id: Id,
    /// The creator.
    pub creator_id: Id,
    /// Amount requested.
    pub amount: Money,
    /// How to pay it.
    pub method: PayoutMethod,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Event for PayoutRequested {
    const TYPE: &'static str = "payout.requested";
}

/// A payout was paid out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutCompleted {
    /// The payout's id.
    pub payout_id: Id,
    /// The creator.
    pub creator_id: Id,
    /// Amount paid.
    pub amount: Money,
    /// The payment provider's reference.
    pub provider_reference: Id,
    /// When it was paid.
    pub completed_at: DateTime<Utc>,
}

impl Event for PayoutCompleted {
    const TYPE: &'static str = "payout.completed";
}
