//! API keys: which tenant a request publishes for, which event types it may send, and how fast.
//!
//! A key reads `cvk_<id>_<secret>`. Only the SHA-256 of the secret is stored, in the key-value
//! bucket [`KEYS_BUCKET`] under the id, with the key's tenant, scope and rate; the key itself is
//! shown once, when it is created. Revoking deletes the record: every gateway refuses the key
//! within [`CACHE_TTL`](crate::auth::CACHE_TTL).

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::kv;
use conveyor::{Connection, Error, TenantId};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use conveyor::topology::KEYS_BUCKET;

/// The prefix of every key.
pub const KEY_PREFIX: &str = "cvk_";

/// Why a key operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// A scope pattern or a rate is malformed; nothing was stored.
    InvalidSpec,
    /// No key has this id.
    NotFound,
    /// The bucket could not be read or written.
    Unavailable,
}

impl fmt::Display for KeyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidSpec => "invalid key spec",
            Self::NotFound => "no such key",
            Self::Unavailable => "key store unavailable",
        })
    }
}

/// A failed key operation.
pub type KeyError = Error<KeyErrorKind>;

/// How many events a key may publish per period, e.g. `100/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Events per period (at least 1).
    pub events: u32,
    /// The period.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

impl Rate {
    /// Parses `<n>/s`, `<n>/m` or `<n>/h` (also `/sec`, `/min`, `/hour`).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bad = || {
            Error::new(
                KeyErrorKind::InvalidSpec,
                format!(
                    "invalid rate {text:?}: expected <events>/s, <events>/m or <events>/h, e.g. 100/s"
                ),
            )
        };
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let events: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if events == 0 {
            return Err(bad());
        }
        Ok(Self { events, per })
    }

    /// Events per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.events) / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => {
                return write!(
                    f,
                    "{}/{}",
                    self.events,
                    humantime::format_duration(self.per)
                );
            }
        };
        write!(f, "{}/{unit}", self.events)
    }
}

/// What a new key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The tenant every event of the key is published for.
    pub tenant: TenantId,
    /// Event type patterns the key may publish (empty: every type). Tokens are separated by
    /// `.`; `*` matches one token, a final `>` one or more: `order.*` matches `order.created`,
    /// `video.>` matches `video.transcription.completed`.
    pub types: Vec<String>,
    /// The key's rate limit (none: unlimited).
    pub rate: Option<Rate>,
    /// A label for people (`checkout-api`).
    pub name: Option<String>,
}

/// A stored key: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's public id (the part after `cvk_`).
    pub id: String,
    /// The tenant it publishes for.
    pub tenant: String,
    /// Its event type patterns (empty: every type).
    #[serde(default)]
    pub types: Vec<String>,
    /// Its rate limit.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Its label.
    #[serde(default)]
    pub name: Option<String>,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
}

impl KeyRecord {
    /// True when the key may publish events of `event_type`.
    pub fn allows(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|p| pattern_matches(p, event_type))
    }
}

/// True when `event_type` matches `pattern` (`*` one token, a final `>` the rest).
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    let mut tokens = event_type.split('.');
    let mut parts = pattern.split('.').peekable();
    while let Some(part) = parts.next() {
        if part == ">" && parts.peek().is_none() {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(t) if part == "*" || part == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

fn check_pattern(pattern: &str) -> Result<(), KeyError> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let n = tokens.len();
    let ok = tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && (*t == "*"
                || (*t == ">" && i + 1 == n)
                || t.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                }))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            KeyErrorKind::InvalidSpec,
            format!(
                "invalid type pattern {pattern:?}: tokens of a-z, 0-9, '_' and '-' separated by '.', '*' for one token, a final '>' for the rest"
            ),
        ))
    }
}

/// The key store, on [`KEYS_BUCKET`].
#[derive(Clone)]
pub struct Keys {
    kv: kv::Store,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    Error::with_source(KeyErrorKind::Unavailable, what.to_owned(), e)
}

impl Keys {
    /// Opens the bucket, creating it when missing.
    pub async fn open(conn: &Connection) -> Result<Self, KeyError> {
        let js = conn.jetstream();
        if let Ok(kv) = js.get_key_value(KEYS_BUCKET).await {
            return Ok(Self { kv });
        }
        let kv = js
            .create_key_value(kv::Config {
                bucket: KEYS_BUCKET.into(),
                description: "Conveyor gateway API keys (hashed)".into(),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("cannot open the key bucket", e))?;
        Ok(Self { kv })
    }

    /// Creates a key; returns the key (shown only now) and its record.
    pub async fn create(&self, spec: KeySpec) -> Result<(String, KeyRecord), KeyError> {
        for p in &spec.types {
            check_pattern(p)?;
        }
        // uuid's v4 ids come from a cryptographic generator (rand's thread RNG).
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let record = KeyRecord {
            id: id.clone(),
            tenant: spec.tenant.to_string(),
            types: spec.types,
            rate: spec.rate,
            name: spec.name,
            created_at: chrono::Utc::now(),
            secret_sha256: sha256_hex(&secret),
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| Error::with_source(KeyErrorKind::InvalidSpec, "cannot encode", e))?;
        self.kv
            .create(&id, value.into())
            .await
            .map_err(|e| unavailable("cannot store the key", e))?;
        Ok((format!("{KEY_PREFIX}{id}_{secret}"), record))
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let mut ids = self
            .kv
            .keys()
            .await
            .map_err(|e| unavailable("cannot list keys", e))?;
        let mut out = Vec::new();
        while let Some(id) = ids.next().await {
            let id = id.map_err(|e| unavailable("cannot list keys", e))?;
            if let Some(record) = self.get(&id).await? {
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The record of key `id`, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<KeyRecord>, KeyError> {
        if !is_id(id) {
            return Ok(None);
        }
        let value = self
            .kv
            .get(id)
            .await
            .map_err(|e| unavailable("cannot read a key", e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Revokes key `id` (the id or the whole key); [`KeyErrorKind::NotFound`] when none.
    pub async fn revoke(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let id = split_key(id).map_or(id, |(id, _)| id);
        let Some(record) = self.get(id).await? else {
            return Err(Error::new(
                KeyErrorKind::NotFound,
                format!("no key has id {id:?}"),
            ));
        };
        self.kv
            .purge(id)
            .await
            .map_err(|e| unavailable("cannot revoke the key", e))?;
        Ok(record)
    }
}

/// The id and secret of a key (`cvk_<id>_<secret>`), if it has that form.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    (is_id(id) && !secret.is_empty()).then_some((id, secret))
}

fn is_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True when `secret` is the secret of `record` (compared in constant time).
pub fn secret_matches(record: &KeyRecord, secret: &str) -> bool {
    let a = sha256_hex(secret);
    let b = &record.secret_sha256;
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn sha256_hex(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_by_token() {
        assert!(pattern_matches("order.*", "order.created"));
        assert!(!pattern_matches("order.*", "order.refund.partial"));
        assert!(!pattern_matches("order.*", "order"));
        assert!(pattern_matches("video.>", "video.transcription.completed"));
        assert!(!pattern_matches("video.>", "video"));
        assert!(pattern_matches("order.created", "order.created"));
        assert!(!pattern_matches("order.created", "order.created.v2"));
        assert!(!pattern_matches("orders.*", "order.created"));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("order.*").is_ok());
        assert!(check_pattern("video.>").is_ok());
        assert!(check_pattern(">").is_ok());
        assert!(check_pattern("order..x").is_err());
        assert!(check_pattern(">.x").is_err());
        assert!(check_pattern("Order.*").is_err());
    }

    #[test]
    fn rates_parse_and_print() {
        let r = Rate::parse("100/s").unwrap();
        assert_eq!(r.per_second(), 100.0);
        assert_eq!(r.to_string(), "100/s");
        assert_eq!(Rate::parse("600/m").unwrap().per_second(), 10.0);
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("100").is_err());
        assert!(Rate::parse("x/s").is_err());
        assert!(Rate::parse("1/d").is_err());
    }

    #[test]
    fn keys_split_and_match() {
        let record = KeyRecord {
            id: "0123456789ab".into(),
            tenant: "acme".into(),
            types: vec![],
            rate: None,
            name: None,
            created_at: chrono::Utc::now(),
            secret_sha256: sha256_hex("s3cret"),
        };
        let (id, secret) = split_key("cvk_0123456789ab_s3cret").unwrap();
        assert_eq!(id, "0123456789ab");
        assert!(secret_matches(&record, secret));
        assert!(!secret_matches(&record, "s3cres"));
        assert!(split_key("cvk_nothex_x").is_none());
        assert!(split_key("0123456789ab_s3cret").is_none());
        assert!(split_key("cvk_0123456789ab_").is_none());
    }
}
