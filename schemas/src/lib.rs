//! The Conveyor event catalog: one Rust type per event type, grouped by domain, and the JSON
//! Schema files generated from it.
//!
//! Every type implements [`conveyor::Event`]; its doc comments become the descriptions of its
//! JSON Schema. The tenant is not a payload field: it travels in the envelope (`tenantid`) and in
//! the subject (`events.<tenant>.<type>`).
//!
//! - [`catalog()`] lists every event type with its domain, schema and an example;
//! - [`export`] writes the schema files under `schemas/json/` (run `python3 dev.py schemas`)
//!   and checks committed files for drift;
//! - [`typescript`] writes TypeScript declarations of every type under `schemas/ts/`;
//! - [`compat`] tells a compatible change of an event type from a breaking one;
//! - [`validate`] checks a JSON payload against its type's schema (for publishers that do not
//!   have the Rust types, such as the CLI).
//!
//! Breaking changes (a removed or renamed field, a new required field, a narrowed type, a
//! removed enum value) are not made to an existing type: they go into a new type with a version
//! suffix, e.g. `order.created.v2`, published alongside the old one until its consumers move.

pub mod analysis;
pub mod attribution;
mod catalog;
pub mod commerce;
pub mod compat;
pub mod creators;
pub mod dam;
pub mod export;
pub mod fraud;
pub mod messaging;
pub mod notifications;
pub mod platform;
pub mod reviews;
pub mod scheduled;
pub mod types;
pub mod typescript;
pub mod video;

pub use catalog::{Entry, catalog, find};
pub use types::{
    Currency, EmailAddress, HttpUrl, Id, InvalidValue, LanguageTag, Money, TimeZoneName,
};

/// One way a payload breaks its type's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending value inside `data`, e.g. `/lines/0/quantity`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Why a payload could not be validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidateError {
    /// The event type is not in the catalog.
    UnknownType(String),
    /// The payload breaks the schema.
    Invalid(Vec<Violation>),
}

impl std::fmt::Display for ValidateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown event type {t:?}"),
            Self::Invalid(v) => {
                for (i, v) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "data{}: {}", v.path, v.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ValidateError {}

/// A type's compiled validator, or why its schema did not compile.
type Compiled = Result<jsonschema::Validator, String>;

/// The compiled validator of every type, built once: compiling a schema costs far more than
/// checking a payload against it.
fn validators() -> &'static std::collections::HashMap<&'static str, Compiled> {
    static VALIDATORS: std::sync::OnceLock<std::collections::HashMap<&'static str, Compiled>> =
        std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        catalog()
            .iter()
            .map(|entry| {
                let compiled =
                    jsonschema::draft202012::new(&entry.schema()).map_err(|e| e.to_string());
                (entry.event_type(), compiled)
            })
            .collect()
    })
}

/// Checks `data` against the schema of `event_type`.
///
/// ```
/// let ok = serde_json::json!({"order_id": "o-1", "tracking_number": null, "fulfilled_at": "2026-11-22T09:00:00Z"});
/// assert!(conveyor_schemas::validate("order.fulfilled", &ok).is_ok());
/// let bad = serde_json::json!({"order_id": "o-1"});
/// let err = conveyor_schemas::validate("order.fulfilled", &bad).unwrap_err();
/// assert!(err.to_string().contains("fulfilled_at"));
/// ```
pub fn validate(event_type: &str, data: &serde_json::Value) -> Result<(), ValidateError> {
    let validator = match validators().get(event_type) {
        None => return Err(ValidateError::UnknownType(event_type.into())),
        Some(Err(e)) => {
            return Err(ValidateError::Invalid(vec![Violation {
                path: String::new(),
                message: format!("the catalog's schema does not compile: {e}"),
            }]));
        }
        Some(Ok(v)) => v,
    };
    let violations: Vec<Violation> = validator
        .iter_errors(data)
        .map(|e| Violation {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ValidateError::Invalid(violations))
    }
}
