//! Events the framework itself publishes.

pub use conveyor::sla::SlaBreached;
