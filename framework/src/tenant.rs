//! Validated tenant ids.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// The longest tenant id accepted, in characters.
pub const MAX_TENANT_LEN: usize = 64;

/// Which rule an invalid tenant id broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TenantIdErrorKind {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_TENANT_LEN`] characters.
    TooLong,
    /// The id contains `.`, the NATS subject token separator.
    Separator,
    /// The id contains `*` or `>`, NATS subject wildcards.
    Wildcard,
    /// The id contains whitespace.
    Whitespace,
    /// The id contains a non-ASCII character.
    NonAscii,
    /// The id contains another character outside `[A-Za-z0-9_-]` (e.g. `$`).
    InvalidCharacter,
}

impl fmt::Display for TenantIdErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty tenant id",
            Self::TooLong => "tenant id too long",
            Self::Separator => "tenant id contains a subject separator",
            Self::Wildcard => "tenant id contains a subject wildcard",
            Self::Whitespace => "tenant id contains whitespace",
            Self::NonAscii => "tenant id contains a non-ASCII character",
            Self::InvalidCharacter => "tenant id contains an invalid character",
        })
    }
}

/// An invalid tenant id; [`kind`](Error::kind) names the rule it broke.
pub type TenantIdError = Error<TenantIdErrorKind>;

/// A tenant id: 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// The tenant is token 2 of every event subject (`events.<tenant>.<type>`), so NATS permissions
/// (`events.acme.>`) and filters (`events.*.order.created`) work. Anything that would change the
/// subject's shape (`.`, `*`, `>`, whitespace) or enter a system namespace (`$`) is rejected here,
/// before anything is sent: the server would store such subjects literally.
///
/// ```
/// use conveyor::{TenantId, TenantIdErrorKind};
///
/// let acme = TenantId::parse("acme")?;
/// assert_eq!(acme.as_str(), "acme");
/// assert_eq!(TenantId::parse("a.b").unwrap_err().kind(), TenantIdErrorKind::Separator);
/// # Ok::<(), conveyor::TenantIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates `id` and returns it as a tenant id.
    pub fn parse(id: impl AsRef<str> + Into<String>) -> Result<Self, TenantIdError> {
        validate_token(id.as_ref(), "tenant id")?;
        Ok(Self(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `value` against the restricted token rule `[A-Za-z0-9_-]{1,64}` shared by tenant ids
/// and group names. `what` names the value in messages.
pub(crate) fn validate_token(value: &str, what: &str) -> Result<(), TenantIdError> {
    use TenantIdErrorKind as K;
    if value.is_empty() {
        return Err(Error::new(
            K::Empty,
            format!("a {what} must have 1 to {MAX_TENANT_LEN} characters of [A-Za-z0-9_-]"),
        ));
    }
    let len = value.chars().count();
    if len > MAX_TENANT_LEN {
        return Err(Error::new(
            K::TooLong,
            format!("{what} has {len} characters; at most {MAX_TENANT_LEN} are allowed"),
        ));
    }
    for (pos, c) in value.chars().enumerate() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            continue;
        }
        let (kind, rule) = match c {
            '.' => (K::Separator, "'.' separates subject tokens"),
            '*' | '>' => (K::Wildcard, "'*' and '>' are subject wildcards"),
            c if c.is_whitespace() => (K::Whitespace, "subjects cannot contain whitespace"),
            c if !c.is_ascii() => (K::NonAscii, "only ASCII [A-Za-z0-9_-] is allowed"),
            _ => (K::InvalidCharacter, "only [A-Za-z0-9_-] is allowed"),
        };
        return Err(Error::new(
            kind,
            format!("{what} {value:?} has {c:?} at position {pos}: {rule}"),
        ));
    }
    Ok(())
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = TenantIdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl Serialize for TenantId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(s).map_err(serde::de::Error::custom)
    }
}

/// Anything a tenant id can be taken from: a [`TenantId`] (already valid) or a string
/// (validated on use). Lets [`Publisher::publish`](crate::Publisher::publish) take either.
pub trait IntoTenantId {
    /// Returns the tenant id, or the rule the string broke.
    fn into_tenant_id(self) -> Result<TenantId, TenantIdError>;
}

impl IntoTenantId for TenantId {
    fn into_tenant_id(self) -> Result<TenantId, TenantIdError> {
        Ok(self)
    }
}

impl IntoTenantId for &TenantId {
    fn into_tenant_id(self) -> Result<TenantId, TenantIdError> {
        Ok(self.clone())
    }
}

impl IntoTenantId for &str {
    fn into_tenant_id(self) -> Result<TenantId, TenantIdError> {
        TenantId::parse(self)
    }
}

impl IntoTenantId for String {
    fn into_tenant_id(self) -> Result<TenantId, TenantIdError> {
        TenantId::parse(self)
    }
}

impl IntoTenantId for &String {
    fn into_tenant_id(self) -> Result<TenantId, TenantIdError> {
        TenantId::parse(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(id: &str) -> TenantIdErrorKind {
        match TenantId::parse(id) {
            Ok(t) => panic!("{t:?} should be invalid"),
            Err(e) => e.kind(),
        }
    }

    #[test]
    fn accepts_the_restricted_alphabet() {
        for id in ["acme", "a", "ACME_01-eu", &"x".repeat(64)] {
            assert!(TenantId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn each_invalid_form_names_its_rule() {
        use TenantIdErrorKind as K;
        assert_eq!(kind(""), K::Empty);
        assert_eq!(kind("a.b"), K::Separator);
        assert_eq!(kind("*"), K::Wildcard);
        assert_eq!(kind(">"), K::Wildcard);
        assert_eq!(kind("$sys"), K::InvalidCharacter);
        assert_eq!(kind("a b"), K::Whitespace);
        assert_eq!(kind("a\tb"), K::Whitespace);
        assert_eq!(kind(&"x".repeat(65)), K::TooLong);
        assert_eq!(kind("tü"), K::NonAscii);
    }

    #[test]
    fn messages_name_character_and_position() {
        let err = TenantId::parse("ac$me").unwrap_err();
        assert!(err.to_string().contains("'$' at position 2"), "{err}");
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantId>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"a.b\"").is_err());
    }
}
