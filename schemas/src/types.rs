//! Value types shared by the catalog's events. Each is valid by construction: its constructor and
//! its deserializer enforce the same rule its JSON Schema states, so a value that decodes is a
//! value the schema accepts, and every value round-trips.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A value rejected by a validated type's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    what: &'static str,
    value: String,
    rule: &'static str,
}

impl InvalidValue {
    /// A `value` of kind `what` that breaks `rule`.
    pub fn new(what: &'static str, value: String, rule: &'static str) -> Self {
        Self { what, value, rule }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.rule)
    }
}

impl std::error::Error for InvalidValue {}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $rule:literal, $schema:tt, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                let check: fn(&str) -> bool = $check;
                if check(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidValue { what: $what, value, rule: $rule })
                }
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 128
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c < '\u{20}' || c == '\u{7f}')
}

validated_string!(
    /// An identifier: 1 to 128 characters, no whitespace or control characters.
    Id,
    "id",
    "1 to 128 characters without whitespace",
    {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\s\\x00-\\x1f\\x7f]+$",
     "description": "An identifier: 1 to 128 characters without whitespace."},
    is_id
);

validated_string!(
    /// An ISO 4217 currency code: three uppercase letters, e.g. `EUR`.
    Currency,
    "currency",
    "three uppercase letters (ISO 4217)",
    {"type": "string", "pattern": "^[A-Z]{3}$",
     "description": "ISO 4217 currency code, e.g. EUR."},
    |s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
);

validated_string!(
    /// An email address (`local@domain`, no whitespace).
    EmailAddress,
    "email address",
    "local@domain without whitespace",
    {"type": "string", "format": "email", "pattern": "^[^@\\s]+@[^@\\s]+$", "maxLength": 320,
     "description": "An email address."},
    |s| s.len() <= 320
        && !s.chars().any(char::is_whitespace)
        && s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
);

validated_string!(
    /// An absolute `http` or `https` URL.
    HttpUrl,
    "URL",
    "an absolute http:// or https:// URL without whitespace",
    {"type": "string", "format": "uri", "pattern": "^https?://[^\\s]+$", "maxLength": 2048,
     "description": "An absolute http(s) URL."},
    |s| s.len() <= 2048
        && (s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")))
            .is_some_and(|rest| !rest.is_empty() && !rest.chars().any(char::is_whitespace))
);

validated_string!(
    /// A BCP 47 language tag, e.g. `en` or `pt-BR`.
    LanguageTag,
    "language tag",
    "a BCP 47 tag such as en or pt-BR",
    {"type": "string", "pattern": "^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
     "description": "A BCP 47 language tag, e.g. en or pt-BR."},
    |s| {
        let mut parts = s.split('-');
        parts.next().is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()))
            && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
    }
);

validated_string!(
    /// An IANA time zone name, e.g. `Europe/Amsterdam` or `UTC`.
    TimeZoneName,
    "time zone",
    "an IANA time zone name such as Europe/Amsterdam",
    {"type": "string", "pattern": "^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$", "maxLength": 64,
     "description": "An IANA time zone name, e.g. Europe/Amsterdam."},
    |s| !s.is_empty() && s.len() <= 64
        && s.split('/').enumerate().all(|(i, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '+' || c == '-'))))
        && s.split('/').next().is_some_and(|p| p.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
);

/// An amount of money: integer minor units (cents for EUR) and an ISO 4217 currency.
/// Integers avoid the rounding errors of floating point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in the currency's minor unit, e.g. 1999 for 19.99 EUR.
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: Currency,
}

impl Money {
    /// `amount_minor` of `currency` (e.g. `Money::new(1999, "EUR")`).
    pub fn new(amount_minor: i64, currency: &str) -> Result<Self, InvalidValue> {
        Ok(Self {
            amount_minor,
            currency: Currency::new(currency)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_hold_at_construction_and_decoding() {
        assert!(Currency::new("EUR").is_ok());
        assert!(Currency::new("eur").is_err());
        assert!(serde_json::from_str::<Currency>("\"EURO\"").is_err());
        assert!(Id::new("o-1").is_ok());
        assert!(Id::new("").is_err());
        assert!(Id::new("a b").is_err());
        assert!(EmailAddress::new("ops@acme.test").is_ok());
        assert!(EmailAddress::new("ops@").is_err());
        assert!(EmailAddress::new("a@b@c").is_err());
        assert!(HttpUrl::new("https://hooks.acme.test/x").is_ok());
        assert!(HttpUrl::new("ftp://x").is_err());
        assert!(LanguageTag::new("pt-BR").is_ok());
        assert!(LanguageTag::new("PT").is_err());
        assert!(TimeZoneName::new("Europe/Amsterdam").is_ok());
        assert!(TimeZoneName::new("Etc/GMT+2").is_ok());
        assert!(TimeZoneName::new("UTC").is_ok());
        assert!(TimeZoneName::new("../etc").is_err());
    }
}
