//! The [`Event`] trait and event type names.

use std::fmt;

use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;

/// The longest event type accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// A typed, tenant-scoped event.
///
/// The payload travels as the `data` of a CloudEvents envelope; [`TYPE`](Event::TYPE) is the
/// envelope's `type` and the tail of the subject (`events.<tenant>.<type>`). The JSON Schema of the
/// payload comes from [`JsonSchema`], so apps in other languages can publish valid events.
///
/// ```
/// use conveyor::Event;
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// /// An order was placed.
/// #[derive(Debug, Serialize, Deserialize, JsonSchema)]
/// struct OrderCreated {
///     order_id: String,
///     total_minor: i64,
///     currency: String,
/// }
///
/// impl Event for OrderCreated {
///     const TYPE: &'static str = "order.created";
/// }
/// ```
pub trait Event: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The event type: lowercase dot-separated tokens of `[a-z0-9_]` starting with a letter,
    /// e.g. `order.created`.
    const TYPE: &'static str;
}

/// Why an event type name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventTypeErrorKind {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_EVENT_TYPE_LEN`] bytes.
    TooLong,
    /// The name starts or ends with `.`, or has two dots in a row.
    EmptyToken,
    /// The name has a character outside lowercase `[a-z0-9_]` and `.`.
    InvalidCharacter,
    /// The name does not start with a lowercase letter (a leading digit would read as the
    /// partition token of a stored subject, see [`crate::partition`]).
    InvalidStart,
}

impl fmt::Display for EventTypeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty event type",
            Self::TooLong => "event type too long",
            Self::EmptyToken => "event type has an empty token",
            Self::InvalidCharacter => "event type contains an invalid character",
            Self::InvalidStart => "event type does not start with a letter",
        })
    }
}

/// An invalid event type name.
pub type EventTypeError = Error<EventTypeErrorKind>;

/// Checks an event type name: lowercase dot-separated tokens of `[a-z0-9_]`, starting with a
/// letter.
///
/// ```
/// assert!(conveyor::validate_event_type("video.transcription.completed").is_ok());
/// assert!(conveyor::validate_event_type("Order.Created").is_err());
/// ```
pub fn validate_event_type(name: &str) -> Result<(), EventTypeError> {
    use EventTypeErrorKind as K;
    if name.is_empty() {
        return Err(Error::new(K::Empty, "an event type must not be empty"));
    }
    if name.len() > MAX_EVENT_TYPE_LEN {
        return Err(Error::new(
            K::TooLong,
            format!(
                "event type has {} bytes; at most {MAX_EVENT_TYPE_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(Error::new(
            K::EmptyToken,
            format!("event type {name:?} must be dot-separated non-empty tokens"),
        ));
    }
    if let Some((pos, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '.'))
    {
        return Err(Error::new(
            K::InvalidCharacter,
            format!(
                "event type {name:?} has {c:?} at position {pos}: only lowercase [a-z0-9_] tokens separated by '.' are allowed"
            ),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::new(
            K::InvalidStart,
            format!("event type {name:?} must start with a lowercase letter"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_rules() {
        use EventTypeErrorKind as K;
        assert!(validate_event_type("order.created").is_ok());
        assert!(validate_event_type("daily_report").is_ok());
        let kind = |s: &str| validate_event_type(s).unwrap_err().kind();
        assert_eq!(kind(""), K::Empty);
        assert_eq!(kind(".a"), K::EmptyToken);
        assert_eq!(kind("a..b"), K::EmptyToken);
        assert_eq!(kind("a."), K::EmptyToken);
        assert_eq!(kind("a.*"), K::InvalidCharacter);
        assert_eq!(kind("a.>"), K::InvalidCharacter);
        assert_eq!(kind("Order"), K::InvalidCharacter);
        assert_eq!(kind("a b"), K::InvalidCharacter);
        assert_eq!(kind(&"a".repeat(129)), K::TooLong);
        assert_eq!(kind("3.created"), K::InvalidStart);
        assert_eq!(kind("_x"), K::InvalidStart);
        assert!(validate_event_type("a.3").is_ok());
    }
}
