//! Money as integer minor units plus an ISO 4217 currency code.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An amount of money: integer minor units (cents for EUR/USD) and an ISO 4217 currency code.
/// Integers avoid the rounding errors of floating point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in the currency's minor unit, e.g. 1999 for 19.99 EUR.
    pub amount_minor: i64,
    /// ISO 4217 currency code, e.g. `EUR`.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

impl Money {
    /// `amount_minor` of `currency`.
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Self {
        Self {
            amount_minor,
            currency: currency.into(),
        }
    }
}
