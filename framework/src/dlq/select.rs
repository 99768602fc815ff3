//! Choosing dead letters: by group, tenant, type and error kind; one by its sequence; every
//! matching one replayed; and a fingerprint of the error text that groups letters failing the
//! same way. `conveyor dlq` and the dashboard both use these.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{DeadLetter, DeadLetterError, DeadLetterErrorKind, StoredLetter, letters, replay};
use crate::connection::Connection;
use crate::error::Error;
use crate::topology::DLQ_STREAM;

/// Which dead letters: every field given must match (none given: all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The group that failed.
    pub group: Option<String>,
    /// The event's tenant.
    pub tenant: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The error kind (`handler`, `decode`, `timeout`, ...).
    pub kind: Option<String>,
    /// The error's [`fingerprint`].
    pub fingerprint: Option<String>,
}

impl Filter {
    /// True when `letter` matches.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let (tenant, ty) =
            crate::subject::split_event_subject(&letter.original_subject).unwrap_or(("", ""));
        self.group.as_ref().is_none_or(|g| *g == letter.group)
            && self.tenant.as_ref().is_none_or(|t| t == tenant)
            && self.event_type.as_ref().is_none_or(|t| t == ty)
            && self.kind.as_ref().is_none_or(|k| k == letter.kind.as_str())
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| *f == fingerprint(&letter.error))
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The dead letters matching `filter`, oldest first, without bodies.
pub async fn list(
    conn: &Connection,
    filter: &Filter,
) -> Result<Vec<StoredLetter>, DeadLetterError> {
    let mut out = Vec::new();
    let mut all = std::pin::pin!(letters(conn, false));
    while let Some(stored) = all.next().await {
        let stored = stored?;
        if filter.matches(&stored.letter) {
            out.push(stored);
        }
    }
    Ok(out)
}

/// Dead letter `seq` with its body, and the headers it is stored with.
pub async fn get(
    conn: &Connection,
    seq: u64,
) -> Result<(StoredLetter, async_nats::HeaderMap), DeadLetterError> {
    let stream = conn
        .jetstream()
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| Error::with_source(DeadLetterErrorKind::Read, "cannot open DLQ", e))?;
    let m = stream.direct_get(seq).await.map_err(|e| {
        Error::with_source(
            DeadLetterErrorKind::NotFound,
            format!("no dead letter #{seq}"),
            e,
        )
    })?;
    let letter = DeadLetter::from_parts(&m.headers, m.payload.clone())?;
    Ok((
        StoredLetter {
            sequence: seq,
            subject: m.subject.to_string(),
            letter,
        },
        m.headers,
    ))
}

/// Replays every dead letter matching `filter` (each removed once its re-publish is
/// acknowledged), streaming: none is kept in memory. Returns how many were replayed.
pub async fn replay_matching(conn: &Connection, filter: &Filter) -> Result<u64, DeadLetterError> {
    let mut replayed = 0;
    let mut all = std::pin::pin!(letters(conn, true));
    while let Some(stored) = all.next().await {
        let stored = stored?;
        if filter.matches(&stored.letter) {
            replay(conn, &stored).await?;
            replayed += 1;
        }
    }
    Ok(replayed)
}

/// A short fingerprint of an error text with its variable parts (numbers, ids, quoted values)
/// blanked, so letters that failed the same way share it: `HTTP 410 for order o-17` and
/// `HTTP 410 for order o-23` do.
///
/// ```
/// use conveyor::dlq::fingerprint;
/// assert_eq!(fingerprint("HTTP 410 at /hooks/17"), fingerprint("HTTP 410 at /hooks/23"));
/// assert_ne!(fingerprint("HTTP 410"), fingerprint("timed out"));
/// ```
pub fn fingerprint(error: &str) -> String {
    format!("{:08x}", fnv1a(normalize(error).as_bytes()) as u32)
}

/// The error text with digit runs kept only when they are HTTP-status-like (3 digits after
/// `HTTP `), every other token holding a digit replaced by `#`, and quoted values by `"…"`.
fn normalize(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut in_quote = false;
    let mut prev_http = false;
    for token in
        error.split_inclusive(|c: char| c.is_whitespace() || c == '/' || c == ':' || c == ',')
    {
        let (word, sep) = token
            .char_indices()
            .last()
            .filter(|(_, c)| c.is_whitespace() || *c == '/' || *c == ':' || *c == ',')
            .map_or((token, ""), |(i, _)| (&token[..i], &token[i..]));
        let quotes = word.matches('"').count();
        if in_quote {
            // Inside a quoted value: nothing of it is kept; its closing quote ends it.
            in_quote = quotes % 2 == 0;
            if !in_quote {
                out.push_str(sep);
            }
            continue;
        }
        if quotes > 0 {
            // A quoted value, whole (`"vid-1"`) or starting here (`"vid 22`).
            in_quote = quotes % 2 == 1;
            out.push_str("\"…\"");
            if !in_quote {
                out.push_str(sep);
            }
            continue;
        }
        let keep = !word.chars().any(|c| c.is_ascii_digit())
            || (prev_http && word.len() == 3 && word.chars().all(|c| c.is_ascii_digit()));
        out.push_str(if keep { word } else { "#" });
        out.push_str(sep);
        prev_http = word.eq_ignore_ascii_case("http");
    }
    out
}

/// FNV-1a: a fingerprint needs no cryptographic hash, and this is a fold.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_ids_and_numbers_but_not_statuses() {
        assert_eq!(
            fingerprint("handler: HTTP 410: webhook endpoint http://127.0.0.1:42081/hooks/gone"),
            fingerprint("handler: HTTP 410: webhook endpoint http://127.0.0.1:39999/hooks/gone")
        );
        assert_ne!(fingerprint("HTTP 410: gone"), fingerprint("HTTP 500: gone"));
        assert_eq!(
            fingerprint("no upload recorded for \"vid-1\""),
            fingerprint("no upload recorded for \"vid-22 b\"")
        );
        assert_eq!(
            fingerprint("order o-17 failed"),
            fingerprint("order o-9 failed")
        );
        assert_eq!(fingerprint("x").len(), 8);
    }
}
