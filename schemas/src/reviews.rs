//! Reviews: product reviews and review reminders.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{EmailAddress, Id, LanguageTag};

/// A customer submitted a product review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewSubmitted {
    /// The review's id.
    pub review_id: Id,
    /// The reviewed product.
    pub product_id: Id,
    /// The order the review is for, when it comes from a purchase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Id>,
    /// The reviewing customer.
    pub customer_id: Id,
    /// Stars, 1 to 5.
    pub rating: Rating,
    /// Review title.
    pub title: String,
    /// Review text.
    pub body: String,
    /// Language of the text.
    pub language: LanguageTag,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
}

/// A star rating from 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Rating(u8);

impl Rating {
    /// A rating of `stars` (1 to 5).
    pub fn new(stars: u8) -> Result<Self, crate::types::InvalidValue> {
        Self::try_from(stars)
    }
    /// The number of stars.
    pub fn stars(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = crate::types::InvalidValue;
    fn try_from(stars: u8) -> Result<Self, Self::Error> {
        if (1..=5).contains(&stars) {
            Ok(Self(stars))
        } else {
            Err(crate::types::InvalidValue::new(
                "rating",
                stars.to_string(),
                "1 to 5 stars",
            ))
        }
    }
}

impl From<Rating> for u8 {
    fn from(r: Rating) -> u8 {
        r.0
    }
}

impl JsonSchema for Rating {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rating".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "integer", "minimum": 1, "maximum": 5})
    }
}

impl Event for ReviewSubmitted {
    const TYPE: &'static str = "review.submitted";
}

/// A reminder to review a purchase was scheduled for a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewReminderScheduled {
    /// The order to review.
    pub order_id: Id,
    /// The customer to remind.
    pub customer_id: Id,
    /// Where to send the reminder.
    pub email: EmailAddress,
    /// When the reminder goes out.
    pub send_at: DateTime<Utc>,
    /// Reminders already sent for this order (0 for the first).
    pub reminders_sent: u32,
}

impl Event for ReviewReminderScheduled {
    const TYPE: &'static str = "review.reminder.scheduled";
}
