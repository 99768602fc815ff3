//! The CloudEvents 1.0 envelope (JSON structured mode) every event travels in.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;
use crate::event::Event;
use crate::tenant::TenantId;

/// The CloudEvents spec version Conveyor speaks.
pub const SPEC_VERSION: &str = "1.0";
/// `Content-Type` of an event message (CloudEvents structured mode).
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// `datacontenttype` of every event: the payload is JSON.
pub const DATA_CONTENT_TYPE: &str = "application/json";
pub use crate::subject::{
    EVENTS_SUBJECT_PREFIX, LANE_MARKER, event_lane, event_subject, event_subject_in_lane,
    split_event_subject, validate_lane,
};

mod borrowed;
mod options;
pub use options::EventOptions;

/// The longest event id accepted, in bytes.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// Checks an event id: 1 to [`MAX_EVENT_ID_LEN`] bytes, no control characters. The id is also
/// in the `Nats-Msg-Id` header, so a CR or LF in it would break the message framing; an empty id
/// would make every such event a duplicate of the first.
///
/// ```
/// assert!(conveyor::envelope::validate_event_id("order-1001").is_ok());
/// let e = conveyor::envelope::validate_event_id("").unwrap_err();
/// assert_eq!(e.kind(), conveyor::envelope::DecodeErrorKind::InvalidId);
/// ```
pub fn validate_event_id(id: &str) -> Result<(), DecodeError> {
    check_event_id(id).map_err(|m| Error::new(DecodeErrorKind::InvalidId, m))
}

pub(crate) fn check_event_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the event id is empty".to_owned());
    }
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(format!(
            "the event id is {} bytes long; at most {MAX_EVENT_ID_LEN} are allowed",
            id.len()
        ));
    }
    // Ids are checked on every publish and delivery: printable ASCII, the usual case, is
    // settled by one pass over the bytes; anything else is checked character by character.
    if id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("the event id contains the control character {c:?}"));
    }
    Ok(())
}

/// Why a message could not be decoded as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The body is not a JSON CloudEvents envelope (bad JSON or a missing attribute).
    InvalidEnvelope,
    /// `specversion` is not `1.0`.
    UnsupportedSpecVersion,
    /// `tenantid` breaks the tenant id rules.
    InvalidTenant,
    /// `data` does not match the event type's payload.
    InvalidData,
    /// The envelope's `type` is not the type being decoded.
    TypeMismatch,
    /// `id` is empty, longer than [`MAX_EVENT_ID_LEN`] bytes, or has control characters.
    InvalidId,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidEnvelope => "invalid envelope",
            Self::UnsupportedSpecVersion => "unsupported specversion",
            Self::InvalidTenant => "invalid tenantid",
            Self::InvalidData => "invalid data",
            Self::TypeMismatch => "event type mismatch",
            Self::InvalidId => "invalid event id",
        })
    }
}

/// A message that could not be decoded as an event.
pub type DecodeError = Error<DecodeErrorKind>;

/// Returns a new event id (a UUIDv7: unique and ordered by creation time).
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[derive(Serialize)]
struct WireOut<'a, T: ?Sized> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    time: &'a str,
    datacontenttype: &'static str,
    tenantid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlationid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causationid: Option<&'a str>,
    data: &'a T,
}

/// The envelope attributes of a decoded event, borrowed from the message body.
#[derive(Debug, Deserialize)]
pub struct RawEnvelope<'a> {
    /// `specversion`.
    #[serde(borrow)]
    pub specversion: Cow<'a, str>,
    /// `id`.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// `source`.
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    /// `type`.
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
    /// `time`.
    #[serde(default, deserialize_with = "borrowed::opt_time")]
    pub time: Option<DateTime<Utc>>,
    /// `tenantid`.
    #[serde(borrow)]
    pub tenantid: Cow<'a, str>,
    /// `traceparent`.
    #[serde(default, borrow, deserialize_with = "borrowed::opt_str")]
    pub traceparent: Option<Cow<'a, str>>,
    /// `correlationid`.
    #[serde(default, borrow, deserialize_with = "borrowed::opt_str")]
    pub correlationid: Option<Cow<'a, str>>,
    /// `causationid`.
    #[serde(default, borrow, deserialize_with = "borrowed::opt_str")]
    pub causationid: Option<Cow<'a, str>>,
    /// `data`, still encoded.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl<'a> RawEnvelope<'a> {
    /// Parses the envelope of `body` without decoding `data`.
    pub fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        let invalid = |e: Box<dyn std::error::Error + Send + Sync>| {
            Error::with_source(
                DecodeErrorKind::InvalidEnvelope,
                "the body is not a CloudEvents JSON envelope",
                e,
            )
        };
        // One UTF-8 check of the whole body, then a reader that trusts it: reading the bytes
        // checks every string, key and the raw `data` on its own, in more instructions.
        let text = std::str::from_utf8(body).map_err(|e| invalid(e.into()))?;
        let env: RawEnvelope<'a> = serde_json::from_str(text).map_err(|e| invalid(e.into()))?;
        if env.specversion != SPEC_VERSION {
            return Err(Error::new(
                DecodeErrorKind::UnsupportedSpecVersion,
                format!(
                    "specversion is {:?}; only {SPEC_VERSION:?} is supported",
                    env.specversion
                ),
            ));
        }
        validate_event_id(&env.id)?;
        Ok(env)
    }

    /// Validates and returns `tenantid`.
    pub fn tenant(&self) -> Result<TenantId, DecodeError> {
        TenantId::parse(self.tenantid.as_ref()).map_err(|e| {
            Error::with_source(
                DecodeErrorKind::InvalidTenant,
                format!("tenantid {:?} is invalid", self.tenantid),
                e,
            )
        })
    }

    /// Decodes `data` as `T`.
    pub fn decode_data<T: serde::de::DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode_data::<T>(self.data, &self.event_type)
    }
}

pub(crate) fn decode_data<T: serde::de::DeserializeOwned>(
    data: &RawValue,
    event_type: &str,
) -> Result<T, DecodeError> {
    // The common case pays for plain decoding only; a failure is decoded again with path
    // tracking, so the error names the field.
    if let Ok(value) = serde_json::from_str(data.get()) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(data.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "data".to_owned()
        } else {
            format!("data.{path}")
        };
        Error::with_source(
            DecodeErrorKind::InvalidData,
            format!("{field} does not match event type {event_type:?}"),
            e.into_inner(),
        )
    })
}

/// A decoded event with its envelope attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<T> {
    /// Unique event id (also the `Nats-Msg-Id`).
    pub id: String,
    /// The publishing app.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// When the event happened.
    pub time: Option<DateTime<Utc>>,
    /// The tenant the event belongs to.
    pub tenant: TenantId,
    /// W3C trace context, if any.
    pub traceparent: Option<String>,
    /// Correlation id, if any.
    pub correlation_id: Option<String>,
    /// Causation id, if any.
    pub causation_id: Option<String>,
    /// The typed payload.
    pub data: T,
}

impl<E: Event> Envelope<E> {
    /// Decodes a message body as an event of type `E`.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let raw = RawEnvelope::parse(body)?;
        if raw.event_type != E::TYPE {
            return Err(Error::new(
                DecodeErrorKind::TypeMismatch,
                format!(
                    "envelope type is {:?}, expected {:?}",
                    raw.event_type,
                    E::TYPE
                ),
            ));
        }
        Ok(Self {
            tenant: raw.tenant()?,
            data: raw.decode_data()?,
            id: raw.id.into_owned(),
            source: raw.source.into_owned(),
            event_type: raw.event_type.into_owned(),
            time: raw.time,
            traceparent: raw.traceparent.map(Cow::into_owned),
            correlation_id: raw.correlationid.map(Cow::into_owned),
            causation_id: raw.causationid.map(Cow::into_owned),
        })
    }
}

/// The attributes of one envelope to encode, resolved (id, time, trace context).
pub(crate) struct Attributes<'a> {
    pub(crate) id: &'a str,
    pub(crate) source: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) time: &'a DateTime<Utc>,
    pub(crate) tenant: &'a TenantId,
    pub(crate) traceparent: Option<&'a str>,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) causation_id: Option<&'a str>,
    /// The encoded length of the data when it is known (0 otherwise): the body is allocated
    /// once at its size instead of growing through a dozen reallocations for a large event.
    pub(crate) data_len: usize,
}

/// Room in an envelope's body for everything but the data.
const ENVELOPE_ROOM: usize = 512;

/// Encodes the envelope of one event.
pub(crate) fn encode<T: Serialize + ?Sized>(
    a: &Attributes<'_>,
    data: &T,
) -> Result<Vec<u8>, serde_json::Error> {
    let time = a.time.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut body = Vec::with_capacity(ENVELOPE_ROOM + a.data_len);
    serde_json::to_writer(
        &mut body,
        &WireOut {
            specversion: SPEC_VERSION,
            id: a.id,
            source: a.source,
            event_type: a.event_type,
            time: &time,
            datacontenttype: DATA_CONTENT_TYPE,
            tenantid: a.tenant.as_str(),
            traceparent: a.traceparent,
            correlationid: a.correlation_id,
            causationid: a.causation_id,
            data,
        },
    )?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    struct Ping {
        n: u32,
    }
    impl Event for Ping {
        const TYPE: &'static str = "ping";
    }

    /// A body that is not UTF-8, or not JSON, is an invalid envelope; a valid one with
    /// escapes and non-ASCII text parses.
    #[test]
    fn bodies_that_are_not_utf8_json_are_invalid_envelopes() {
        let good = r#"{"specversion":"1.0","id":"e-1","source":"s","type":"ping","tenantid":"acme","data":{"n":"\u00e9t\u00e9 é"}}"#
            .as_bytes();
        let env = RawEnvelope::parse(good).expect("valid envelope");
        assert_eq!(env.data.get(), r#"{"n":"\u00e9t\u00e9 é"}"#);
        let mut bad_utf8 = good.to_vec();
        let at = bad_utf8.len() - 5;
        bad_utf8[at] = 0xff;
        for body in [bad_utf8.as_slice(), b"not json", b""] {
            let e = RawEnvelope::parse(body).expect_err("refused");
            assert_eq!(e.kind(), DecodeErrorKind::InvalidEnvelope);
        }
    }

    /// Printable ASCII and other text pass; every control character (C0, DEL and C1), an
    /// empty id and an overlong one are refused.
    #[test]
    fn event_ids_are_checked_for_control_characters_and_length() {
        for ok in ["order-1001", "a b~", "acme:ünïcødé", "東京-1", "x\u{a0}y"] {
            assert!(check_event_id(ok).is_ok(), "{ok:?}");
        }
        let long = "i".repeat(MAX_EVENT_ID_LEN + 1);
        for bad in [
            "",
            "a\u{0}b",
            "a\tb",
            "x\r\n",
            "del\u{7f}",
            "c1\u{85}",
            "é\u{9f}",
            &long,
        ] {
            assert!(check_event_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_event_id(&"i".repeat(MAX_EVENT_ID_LEN)).is_ok());
    }

    #[test]
    fn round_trips_through_the_wire_format() {
        let tenant = TenantId::parse("acme").unwrap();
        let opts = EventOptions::default().correlation_id("c1");
        let time = Utc::now();
        let attrs = Attributes {
            id: "id1",
            source: "app",
            event_type: "ping",
            time: &time,
            tenant: &tenant,
            traceparent: None,
            correlation_id: opts.correlation_id.as_deref(),
            causation_id: None,
            data_len: 0,
        };
        let body = encode(&attrs, &Ping { n: 7 }).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["tenantid"], "acme");
        assert_eq!(json["correlationid"], "c1");
        assert!(json.get("causationid").is_none());
        let env = Envelope::<Ping>::decode(&body).unwrap();
        assert_eq!(env.data, Ping { n: 7 });
        assert_eq!(env.id, "id1");
        assert_eq!(env.correlation_id.as_deref(), Some("c1"));
    }

    #[test]
    fn decode_errors_have_kinds() {
        let kind = |b: &str| Envelope::<Ping>::decode(b.as_bytes()).unwrap_err().kind();
        assert_eq!(kind("nope"), DecodeErrorKind::InvalidEnvelope);
        let base = r#""id":"1","source":"s","type":"ping","tenantid":"acme","data":{"n":1}"#;
        assert_eq!(
            kind(&format!(r#"{{"specversion":"0.3",{base}}}"#)),
            DecodeErrorKind::UnsupportedSpecVersion
        );
        let bad_data = base.replace(r#"{"n":1}"#, r#"{"n":"x"}"#);
        let body = format!(r#"{{"specversion":"1.0",{bad_data}}}"#);
        assert_eq!(kind(&body), DecodeErrorKind::InvalidData);
        let err = Envelope::<Ping>::decode(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("data.n does not match"), "{err}");
        let bad_tenant = base.replace("acme", "a.b");
        assert_eq!(
            kind(&format!(r#"{{"specversion":"1.0",{bad_tenant}}}"#)),
            DecodeErrorKind::InvalidTenant
        );
        let long = "x".repeat(MAX_EVENT_ID_LEN + 1);
        for bad_id in ["", "a\\u0000b", "line\\r\\nNats-Msg-Id: x", long.as_str()] {
            let body = base.replace(r#""id":"1""#, &format!(r#""id":"{bad_id}""#));
            assert_eq!(
                kind(&format!(r#"{{"specversion":"1.0",{body}}}"#)),
                DecodeErrorKind::InvalidId,
                "{bad_id:?}"
            );
        }
    }

    #[test]
    fn splits_subjects() {
        assert_eq!(
            split_event_subject("events.acme.order.created"),
            Some(("acme", "order.created"))
        );
        assert_eq!(split_event_subject("events.acme"), None);
        assert_eq!(split_event_subject("dlq.acme.x"), None);
    }
}
