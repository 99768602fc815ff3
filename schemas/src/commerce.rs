//! Commerce: orders and customers.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use conveyor::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{EmailAddress, Id, Money};

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// Stock keeping unit of the product.
    pub sku: Id,
    /// Units ordered (at least 1).
    pub quantity: NonZeroU32,
    /// Price of one unit.
    pub unit_price: Money,
}

/// An order was placed by a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCreated {
    /// The order's id in the shop.
    pub order_id: Id,
    /// The customer who placed it.
    pub customer_id: Id,
    /// The ordered lines.
    pub lines: Vec<OrderLine>,
    /// Total charged, taxes included.
    pub total: Money,
    /// When the order was placed.
    pub placed_at: DateTime<Utc>,
}

impl Event for OrderCreated {
    const TYPE: &'static str = "order.created";
}

/// An order was shipped to its customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderFulfilled {
    /// The order's id in the shop.
    pub order_id: Id,
    /// Carrier tracking number, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// When it was shipped.
    pub fulfilled_at: DateTime<Utc>,
}

impl Event for OrderFulfilled {
    const TYPE: &'static str = "order.fulfilled";
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    /// The customer cancelled it.
    CustomerRequest,
    /// Payment failed or was withdrawn.
    PaymentFailed,
    /// An item is out of stock.
    OutOfStock,
    /// Fraud screening blocked it.
    FraudSuspected,
}

/// An order was cancelled before fulfilment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    /// The order's id in the shop.
    pub order_id: Id,
    /// Why it was cancelled.
    pub reason: CancellationReason,
    /// When it was cancelled.
    pub cancelled_at: DateTime<Utc>,
}

impl Event for OrderCancelled {
    const TYPE: &'static str = "order.cancelled";
}

/// Money was returned to the customer for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRefunded {
    /// The order's id in the shop.
    pub order_id: Id,
    /// The refund's id at the payment provider.
    pub refund_id: Id,
    /// Amount refunded.
    pub amount: Money,
    /// When the refund was issued.
    pub refunded_at: DateTime<Utc>,
}

impl Event for OrderRefunded {
    const TYPE: &'static str = "order.refunded";
}

/// A customer account was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerCreated {
    /// The customer's id.
    pub customer_id: Id,
    /// Contact email.
    pub email: EmailAddress,
    /// Display name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the customer agreed to marketing email.
    pub marketing_opt_in: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl Event for CustomerCreated {
    const TYPE: &'static str = "customer.created";
}
