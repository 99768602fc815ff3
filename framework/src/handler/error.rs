//! What a handler returns: [`HandlerResult`], [`HandlerError`] and how to retry it.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What a handler returns: `Ok(())` acks the event; an error says how to retry.
pub type HandlerResult = Result<(), HandlerError>;

/// How a failed handler wants its event treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retry after the delay of the handler's [`RetryPolicy`](crate::RetryPolicy).
    Backoff,
    /// Retry after exactly this delay (e.g. an HTTP 429 `Retry-After`).
    After(Duration),
    /// Never retry: dead-letter the event now.
    Never,
}

/// A failed handler run and what to do about it.
///
/// `?` on any `std::error::Error` gives a retryable error; use [`HandlerError::permanent`] for
/// input that will never succeed and [`HandlerError::retry_after`] when the caller knows when to
/// come back.
///
/// ```
/// use std::time::Duration;
/// use conveyor::{HandlerError, Retry};
///
/// let e = HandlerError::retry_after(Duration::from_secs(30), "rate limited");
/// assert_eq!(e.retry(), Retry::After(Duration::from_secs(30)));
/// let e = HandlerError::permanent("unknown customer");
/// assert_eq!(e.retry(), Retry::Never);
/// ```
pub struct HandlerError {
    retry: Retry,
    error: BoxError,
}

impl HandlerError {
    /// A transient failure: retried with the handler's backoff while attempts are left.
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self {
            retry: Retry::Backoff,
            error: error.into(),
        }
    }

    /// A failure with the given retry behaviour.
    pub(crate) fn with_retry(retry: Retry, error: impl Into<BoxError>) -> Self {
        Self {
            retry,
            error: error.into(),
        }
    }

    /// A failure to retry after exactly `delay` (still bounded by the attempt limit).
    pub fn retry_after(delay: Duration, error: impl Into<BoxError>) -> Self {
        Self {
            retry: Retry::After(delay),
            error: error.into(),
        }
    }

    /// A permanent failure: the event goes to the dead letters without another attempt.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self {
            retry: Retry::Never,
            error: error.into(),
        }
    }

    /// The failure an HTTP response status stands for, for handlers that call HTTP services:
    /// `None` for 1xx to 3xx; 429 retries after `retry_after` when the server sent one (else with
    /// backoff); 408 and 5xx retry with backoff; any other 4xx is permanent (the request will not
    /// get better by repeating it). The status is part of the error text, so a dead letter says
    /// `HTTP 410 ...`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use conveyor::{HandlerError, Retry};
    ///
    /// assert!(HandlerError::for_http_status(204, None, "ok").is_none());
    /// let e = HandlerError::for_http_status(429, Some(Duration::from_secs(7)), "slow down").unwrap();
    /// assert_eq!(e.retry(), Retry::After(Duration::from_secs(7)));
    /// assert_eq!(HandlerError::for_http_status(503, None, "busy").unwrap().retry(), Retry::Backoff);
    /// let e = HandlerError::for_http_status(410, None, "gone").unwrap();
    /// assert_eq!(e.retry(), Retry::Never);
    /// assert_eq!(e.to_string(), "HTTP 410: gone");
    /// ```
    pub fn for_http_status(
        status: u16,
        retry_after: Option<Duration>,
        message: impl fmt::Display,
    ) -> Option<Self> {
        let error = format!("HTTP {status}: {message}");
        match status {
            100..=399 => None,
            429 => Some(match retry_after {
                Some(d) => Self::retry_after(d, error),
                None => Self::transient(error),
            }),
            408 | 500..=599 => Some(Self::transient(error)),
            _ => Some(Self::permanent(error)),
        }
    }

    /// [`for_http_status`](Self::for_http_status) with the raw `Retry-After` header value, as
    /// HTTP clients hand it over.
    ///
    /// ```
    /// use std::time::Duration;
    /// use conveyor::{HandlerError, Retry};
    /// let e = HandlerError::for_http_response(429, Some("3"), "slow down").unwrap();
    /// assert_eq!(e.retry(), Retry::After(Duration::from_secs(3)));
    /// ```
    pub fn for_http_response(
        status: u16,
        retry_after: Option<&str>,
        message: impl fmt::Display,
    ) -> Option<Self> {
        Self::for_http_status(
            status,
            retry_after.and_then(Self::parse_retry_after),
            message,
        )
    }

    /// Parses an HTTP `Retry-After` value: delay seconds or an HTTP date (a date in the past
    /// gives zero).
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(conveyor::HandlerError::parse_retry_after("12"), Some(Duration::from_secs(12)));
    /// assert_eq!(conveyor::HandlerError::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
    /// assert_eq!(conveyor::HandlerError::parse_retry_after("soon"), None);
    /// ```
    pub fn parse_retry_after(value: &str) -> Option<Duration> {
        let value = value.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = DateTime::parse_from_rfc2822(value).ok()?;
        Some(
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO),
        )
    }

    /// How this failure is retried.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::transient(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("retry", &self.retry)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        let mut source = self.error.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
