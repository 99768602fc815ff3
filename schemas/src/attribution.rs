//! Attribution: marketing touchpoints and the conversions they are credited with.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{HttpUrl, Id, Money};

/// The marketing channel of a touchpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Organic search.
    OrganicSearch,
    /// Paid search.
    PaidSearch,
    /// Paid or organic social media.
    Social,
    /// A creator's link or code.
    Creator,
    /// Email campaign.
    Email,
    /// Typed-in or bookmarked.
    Direct,
    /// Another site's link.
    Referral,
}

/// A visitor interacted with a marketing touchpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TouchpointRecorded {
    /// The touchpoint's id.
    pub touchpoint_id: Id,
    /// The anonymous visitor (or known customer) id.
    pub visitor_id: Id,
    /// The channel.
    pub channel: Channel,
    /// Campaign id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Id>,
    /// Creator id, for creator links and codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<Id>,
    /// The landing page.
    pub landing_url: HttpUrl,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

impl Event for TouchpointRecorded {
    const TYPE: &'static str = "touchpoint.recorded";
}

/// The attribution model that assigned credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributionModel {
    /// All credit to the first touchpoint.
    FirstTouch,
    /// All credit to the last touchpoint.
    LastTouch,
    /// Equal credit to every touchpoint.
    Linear,
    /// More credit to recent touchpoints.
    TimeDecay,
}

/// One touchpoint's share of a conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Credit {
    /// The touchpoint.
    pub touchpoint_id: Id,
    /// Its share in basis points; the shares of a conversion sum to 10000.
    pub share_bps: u32,
}

/// A conversion (order) was attributed to the touchpoints that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversionAttributed {
    /// The order that converted.
    pub order_id: Id,
    /// The visitor who converted.
    pub visitor_id: Id,
    /// The model used.
    pub model: AttributionModel,
    /// Revenue of the conversion.
    pub revenue: Money,
    /// Credit per touchpoint.
    pub credits: Vec<Credit>,
    /// When it was attributed.
    pub attributed_at: DateTime<Utc>,
}

impl Event for ConversionAttributed {
    const TYPE: &'static str = "conversion.attributed";
}
