//! Commerce: orders and customers.

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Money;

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// Stock keeping unit of the product.
    pub sku: String,
    /// Units ordered (at least 1).
    #[schemars(range(min = 1))]
    pub quantity: u32,
    /// Price of one unit.
    pub unit_price: Money,
}

/// An order was placed by a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCreated {
    /// The order's id in the shop.
    pub order_id: String,
    /// The customer who placed it.
    pub customer_id: String,
    /// The ordered lines.
    pub lines: Vec<OrderLine>,
    /// Total charged, taxes included.
    pub total: Money,
    /// When the order was placed (RFC 3339).
    pub placed_at: DateTime<Utc>,
}

impl Event for OrderCreated {
    const TYPE: &'static str = "order.created";
}

/// An order was shipped to its customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderFulfilled {
    /// The order's id in the shop.
    pub order_id: String,
    /// Carrier tracking number, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// When it was shipped (RFC 3339).
    pub fulfilled_at: DateTime<Utc>,
}

impl Event for OrderFulfilled {
    const TYPE: &'static str = "order.fulfilled";
}
