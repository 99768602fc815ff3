//! The Conveyor event catalog: one Rust type per event type, grouped by domain.
//!
//! Every type implements [`conveyor::Event`]; its doc comments become the descriptions of its
//! JSON Schema. The tenant is not a payload field: it travels in the envelope (`tenantid`) and in
//! the subject (`events.<tenant>.<type>`).

pub mod commerce;
pub mod money;

pub use money::Money;
