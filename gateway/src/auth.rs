//! Who is calling: the request's API key, checked against the key store through a short-lived
//! cache, and the key's rate limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};

use crate::keys::{KeyRecord, Keys, secret_matches, split_key};
use crate::rejection::Rejection;

/// How long a gateway trusts what it read of a key: a revoked key is refused within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Keys as last read from the store, and the rate-limit buckets of the keys seen.
#[derive(Clone)]
pub(crate) struct Auth {
    keys: Keys,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    cached: HashMap<String, (Option<KeyRecord>, Instant)>,
    buckets: HashMap<String, Bucket>,
}

impl Auth {
    pub(crate) fn new(keys: Keys) -> Self {
        Self {
            keys,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// The key record of the request's `Authorization: Bearer <key>`.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<KeyRecord, Rejection> {
        let unauthorized =
            |why: &str| Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", why.to_owned());
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "no API key: send Authorization: Bearer <key> (create one with conveyor keys create)",
            ));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or("");
        let Some((id, secret)) = split_key(key) else {
            return Err(unauthorized(
                "the API key is malformed: expected Bearer cvk_<id>_<secret>",
            ));
        };
        let record = self.record(id).await?;
        match record {
            Some(r) if secret_matches(&r, secret) => Ok(r),
            _ => Err(unauthorized("unknown or revoked API key")),
        }
    }

    async fn record(&self, id: &str) -> Result<Option<KeyRecord>, Rejection> {
        if let Ok(inner) = self.inner.lock()
            && let Some((record, at)) = inner.cached.get(id)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(record.clone());
        }
        let record =
            self.keys.get(id).await.map_err(|e| {
                Rejection::unavailable(format!("the key store cannot be read: {e}"))
            })?;
        if let Ok(mut inner) = self.inner.lock() {
            if inner.cached.len() > 100_000 {
                inner.cached.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            inner
                .cached
                .insert(id.to_owned(), (record.clone(), Instant::now()));
        }
        Ok(record)
    }

    /// Takes `n` events from the key's rate limit; 429 with `Retry-After` when it is spent.
    pub(crate) fn take(&self, key: &KeyRecord, n: usize) -> Result<(), Rejection> {
        let Some(rate) = key.rate else {
            return Ok(());
        };
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(());
        };
        let bucket = inner
            .buckets
            .entry(key.id.clone())
            .or_insert_with(|| Bucket::new(rate.per_second(), f64::from(rate.events)));
        bucket.set_rate(rate.per_second(), f64::from(rate.events));
        bucket.take(n as f64, Instant::now()).map_err(|wait| {
            Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("the key's rate limit of {rate} is spent; retry after {wait:.1?}"),
            )
            .retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }
}

/// A token bucket that may go into debt: a request is taken whole while the bucket holds a
/// token, so a batch larger than the burst is not refused forever, and the debt delays the
/// requests after it. Written here because it is a few lines and must allow that debt.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            at: None,
        }
    }

    fn set_rate(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
    }

    /// Takes `n` tokens at `now`, or says how long until the bucket holds a token again.
    pub(crate) fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate));
        }
        self.tokens -= n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_when_spent_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 10.0);
        for _ in 0..10 {
            assert!(b.take(1.0, t0).is_ok());
        }
        let wait = b.take(1.0, t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(b.take(1.0, t0 + Duration::from_millis(150)).is_ok());
    }

    #[test]
    fn a_large_batch_goes_into_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 10.0);
        assert!(b.take(100.0, t0).is_ok());
        let wait = b.take(1.0, t0).unwrap_err();
        assert!(wait >= Duration::from_secs(9), "{wait:?}");
        assert!(b.take(1.0, t0 + Duration::from_secs(10)).is_ok());
    }
}
