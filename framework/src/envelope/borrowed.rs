//! Deserializers for the envelope attributes read on every delivery, without copies where the
//! body allows none.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A string borrowed from the body unless it holds escapes (then decoded into a copy).
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CowVisitor;
        impl<'de> Visitor<'de> for CowVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(CowVisitor).map(CowStr)
    }
}

/// An optional string attribute, borrowed from the body: serde's own `Cow` inside an `Option`
/// always copies, which `traceparent` would pay on every delivery.
pub(super) fn opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<CowStr<'de>>::deserialize(d)?.map(|s| s.0))
}

/// `time`: RFC 3339 through chrono's dedicated parser, falling back to its relaxed form (a
/// space for the `T`, for one) that chrono's `Deserialize` accepts; several times faster than
/// that `Deserialize` for the timestamps every publisher writes.
pub(super) fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(CowStr(s)) = Option::<CowStr<'de>>::deserialize(d)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| s.parse::<DateTime<Utc>>())
        .map(Some)
        .map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Attrs<'a> {
        #[serde(default, borrow, deserialize_with = "opt_str")]
        s: Option<Cow<'a, str>>,
        #[serde(default, deserialize_with = "opt_time")]
        t: Option<DateTime<Utc>>,
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_times_parse_in_both_forms() {
        let a: Attrs<'_> =
            serde_json::from_str(r#"{"s":"00-ab","t":"2026-01-02T03:04:05.123456Z"}"#)
                .expect("parse");
        assert!(matches!(a.s, Some(Cow::Borrowed("00-ab"))));
        assert_eq!(
            a.t.map(|t| t.to_rfc3339()),
            Some("2026-01-02T03:04:05.123456+00:00".to_owned())
        );
        let a: Attrs<'_> =
            serde_json::from_str(r#"{"s":"a\"b","t":"2026-01-02 05:04:05+02:00"}"#).expect("parse");
        assert!(matches!(a.s, Some(Cow::Owned(ref s)) if s == "a\"b"));
        assert_eq!(
            a.t.map(|t| t.to_rfc3339()),
            Some("2026-01-02T03:04:05+00:00".to_owned())
        );
        let a: Attrs<'_> = serde_json::from_str(r#"{"s":null,"t":null}"#).expect("parse");
        assert!(a.s.is_none() && a.t.is_none());
        let a: Attrs<'_> = serde_json::from_str("{}").expect("parse");
        assert!(a.s.is_none() && a.t.is_none());
        assert!(serde_json::from_str::<Attrs<'_>>(r#"{"t":"yesterday"}"#).is_err());
        assert!(serde_json::from_str::<Attrs<'_>>(r#"{"s":5}"#).is_err());
    }
}
