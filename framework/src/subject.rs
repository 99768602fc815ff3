//! The wire grammar: the subjects Conveyor publishes to and filters on, the tokens in them, and
//! one validator (with its own error kinds) for each kind of token.
//!
//! | subject | form | built by |
//! |---|---|---|
//! | event | `events.<tenant>.<type>[.~<lane>]` | [`event_subject_in_lane`] |
//! | stored event | `events.~.<partition>.<tenant>.<type>[.~<lane>]` | the stream's subject transform, see [`crate::partition`] |
//! | delayed event, group copy | `delayed.<tenant>.{e,d,r}. ...` | [`crate::delay`] |
//! | dead letter | `dlq.<group>.<tenant>.<type>` | [`dead_letter_subject`] |
//! | parked event | `parked.<group>.<tenant>.<type>` | [`parked_subject`] |
//! | progress | `progress.<tenant>.<group>.<escaped event id>` | [`progress_subject`] |
//! | run history batch | `history.<group>.<shard>` | [`history_subject`], [`history_shard`] |
//!
//! Tokens: a tenant id ([`crate::TenantId::parse`]) and a group name ([`validate_group_name`])
//! are `[A-Za-z0-9_-]{1,64}`; an event type is dot-separated `[a-z0-9_]` tokens
//! ([`crate::validate_event_type`]); a lane is `[a-z0-9_]{1,32}` ([`validate_lane`]); an event
//! id inside a subject is escaped ([`escape_token`]).

use std::fmt;

use crate::error::Error;
use crate::tenant::TenantId;

/// Prefix of every event subject: `events.<tenant>.<type>`.
pub const EVENTS_SUBJECT_PREFIX: &str = "events";

/// The marker of a lane token: `events.<tenant>.<type>.~<lane>`.
pub const LANE_MARKER: char = '~';

/// The longest lane name.
pub const MAX_LANE_LEN: usize = 32;

/// The text before and after the first `.` of `s`, `None` without one. Subjects are split on
/// every delivery: a byte scan is a few instructions a token where `str::split_once('.')` goes
/// through a char searcher and a `memchr` call.
#[inline]
pub(crate) fn split_dot(s: &str) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == b'.')?;
    // `.` is ASCII: both sides start on a char boundary.
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// The text before and after the last `.` of `s`, `None` without one (see [`split_dot`]).
#[inline]
pub(crate) fn rsplit_dot(s: &str) -> Option<(&str, &str)> {
    let i = s.bytes().rposition(|b| b == b'.')?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Returns the subject an event of `event_type` for `tenant` is published on.
pub fn event_subject(tenant: &TenantId, event_type: &str) -> String {
    format!("{EVENTS_SUBJECT_PREFIX}.{tenant}.{event_type}")
}

/// The subject of an event on a lane (`None`: the default lane).
pub fn event_subject_in_lane(tenant: &TenantId, event_type: &str, lane: Option<&str>) -> String {
    match lane {
        Some(lane) => format!("{EVENTS_SUBJECT_PREFIX}.{tenant}.{event_type}.{LANE_MARKER}{lane}"),
        None => event_subject(tenant, event_type),
    }
}

/// Splits an event subject into its tenant token and event type, if it has the
/// `events.<tenant>.<type>` shape, published or stored (`events.~.<partition>.<tenant>.<type>`,
/// or the earlier `events.<tenant>.<partition>.<type>`, see [`crate::partition`]). A lane token
/// `.~<lane>` at the end is not part of the type (see [`event_lane`]). The tokens are not
/// validated.
///
/// ```
/// use conveyor::subject::split_event_subject;
/// assert_eq!(split_event_subject("events.acme.order.created"), Some(("acme", "order.created")));
/// assert_eq!(split_event_subject("events.~.15.acme.order.created"), Some(("acme", "order.created")));
/// assert_eq!(split_event_subject("events.acme.15.order.created"), Some(("acme", "order.created")));
/// ```
pub fn split_event_subject(subject: &str) -> Option<(&str, &str)> {
    let split = crate::partition::split_stored(subject)?;
    let event_type = match rsplit_dot(split.rest) {
        Some((t, lane)) if lane.starts_with(LANE_MARKER) => t,
        _ => split.rest,
    };
    (!event_type.is_empty()).then_some((split.tenant, event_type))
}

/// The lane of an event subject (`events.<tenant>.<type>.~<lane>`), `None` for the default lane.
pub fn event_lane(subject: &str) -> Option<&str> {
    let (_, last) = rsplit_dot(subject)?;
    last.strip_prefix(LANE_MARKER)
}

/// The subject of a dead letter of `group` for an event of `tenant` and `event_type`.
pub fn dead_letter_subject(group: &str, tenant: &str, event_type: &str) -> String {
    format!("dlq.{group}.{tenant}.{event_type}")
}

/// The subject a paused tenant's event of `group` waits on in `PARKED`.
pub fn parked_subject(group: &str, tenant: &str, event_type: &str) -> String {
    format!("parked.{group}.{tenant}.{event_type}")
}

/// The subject progress updates of an event in a group are published on.
pub fn progress_subject(tenant: &str, group: &str, event_id: &str) -> String {
    format!("progress.{tenant}.{group}.{}", escape_token(event_id))
}

/// How many shards the run history of a group is spread over (see [`history_shard`]).
pub const HISTORY_SHARDS: u32 = 32;

/// The history shard of an event id: the 32-bit FNV-1a hash of its UTF-8 bytes, modulo
/// [`HISTORY_SHARDS`]. Every record of one event in one group is on the same subject, so the
/// records of an event are found by reading one shard of the history.
///
/// ```
/// assert_eq!(conveyor::subject::history_shard(""), 0x811c_9dc5 % 32);
/// assert!(conveyor::subject::history_shard("order-1001") < conveyor::subject::HISTORY_SHARDS);
/// ```
pub fn history_shard(event_id: &str) -> u32 {
    // FNV-1a: a fixed, documented hash that an app in any language computes in three lines
    // (std's hasher is randomised per process and may change between Rust versions).
    let hash = event_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % HISTORY_SHARDS
}

/// The subject a batch of run records of `group` in `shard` is appended to, in `HISTORY`.
pub fn history_subject(group: &str, shard: u32) -> String {
    format!("history.{group}.{shard:02}")
}

/// Escapes an event id into one subject or key token: `[A-Za-z0-9_-]` stay, every other byte
/// becomes `=XX` (its hex value), so ids with dots, colons or spaces are safe in subjects and
/// KV keys, and two different ids never escape to the same token.
///
/// ```
/// assert_eq!(conveyor::subject::escape_token("cron:daily:acme:1700000000"), "cron=3Adaily=3Aacme=3A1700000000");
/// assert_eq!(conveyor::subject::unescape_token("a=2Eb").as_deref(), Some("a.b"));
/// ```
pub fn escape_token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// Reverses [`escape_token`]; `None` when `token` is no escaped id.
pub fn unescape_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a lane name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LaneErrorKind {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_LANE_LEN`].
    TooLong,
    /// A character outside `[a-z0-9_]`.
    InvalidCharacter,
}

impl fmt::Display for LaneErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty lane name",
            Self::TooLong => "lane name too long",
            Self::InvalidCharacter => "invalid character in lane name",
        })
    }
}

/// A refused lane name.
pub type LaneError = Error<LaneErrorKind>;

/// Checks a lane name: 1 to 32 characters of `[a-z0-9_]`.
///
/// ```
/// use conveyor::subject::{LaneErrorKind, validate_lane};
/// assert!(validate_lane("bulk").is_ok());
/// assert_eq!(validate_lane("Bulk").unwrap_err().kind(), LaneErrorKind::InvalidCharacter);
/// ```
pub fn validate_lane(lane: &str) -> Result<(), LaneError> {
    let rule = format!("a lane is 1 to {MAX_LANE_LEN} characters of [a-z0-9_]");
    let kind = if lane.is_empty() {
        LaneErrorKind::Empty
    } else if lane.len() > MAX_LANE_LEN {
        LaneErrorKind::TooLong
    } else if !lane
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        LaneErrorKind::InvalidCharacter
    } else {
        return Ok(());
    };
    Err(Error::new(kind, format!("lane {lane:?}: {rule}")))
}

/// Why a group name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GroupNameErrorKind {
    /// The name is empty.
    Empty,
    /// The name is longer than 64 characters.
    TooLong,
    /// A `.`, which separates subject tokens.
    Separator,
    /// A `*` or `>`, subject wildcards.
    Wildcard,
    /// Whitespace.
    Whitespace,
    /// A character outside `[A-Za-z0-9_-]` (including non-ASCII ones and the `~` that
    /// separates a group's name from its partition in consumer names).
    InvalidCharacter,
}

impl fmt::Display for GroupNameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty group name",
            Self::TooLong => "group name too long",
            Self::Separator => "separator in group name",
            Self::Wildcard => "wildcard in group name",
            Self::Whitespace => "whitespace in group name",
            Self::InvalidCharacter => "invalid character in group name",
        })
    }
}

/// A refused group name.
pub type GroupNameError = Error<GroupNameErrorKind>;

/// Checks a group name: 1 to 64 characters of `[A-Za-z0-9_-]` (it is a token of consumer, DLQ
/// and KV subjects).
///
/// ```
/// use conveyor::subject::{GroupNameErrorKind, validate_group_name};
/// assert!(validate_group_name("billing").is_ok());
/// let e = validate_group_name("bil.ling").unwrap_err();
/// assert_eq!(e.kind(), GroupNameErrorKind::Separator);
/// assert!(e.message().starts_with("group name \"bil.ling\""), "{e}");
/// ```
pub fn validate_group_name(name: &str) -> Result<(), GroupNameError> {
    use crate::tenant::TenantIdErrorKind as T;
    crate::tenant::validate_token(name, "group name").map_err(|e| {
        let kind = match e.kind() {
            T::Empty => GroupNameErrorKind::Empty,
            T::TooLong => GroupNameErrorKind::TooLong,
            T::Separator => GroupNameErrorKind::Separator,
            T::Wildcard => GroupNameErrorKind::Wildcard,
            T::Whitespace => GroupNameErrorKind::Whitespace,
            _ => GroupNameErrorKind::InvalidCharacter,
        };
        Error::new(kind, e.message().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_split_at_their_first_and_last_dot() {
        assert_eq!(
            split_dot("events.acme.order"),
            Some(("events", "acme.order"))
        );
        assert_eq!(
            rsplit_dot("events.acme.order"),
            Some(("events.acme", "order"))
        );
        assert_eq!(split_dot(".a"), Some(("", "a")));
        assert_eq!(split_dot("a."), Some(("a", "")));
        assert_eq!(rsplit_dot("a."), Some(("a", "")));
        assert_eq!(split_dot("ä.ö.ü"), Some(("ä", "ö.ü")));
        assert_eq!(rsplit_dot("ä.ö.ü"), Some(("ä.ö", "ü")));
        for none in ["", "events", "äöü"] {
            assert_eq!(split_dot(none), None);
            assert_eq!(rsplit_dot(none), None);
        }
    }
}
