//! Retry policies: how often a handler is tried and how long to wait between tries.

use std::time::Duration;

/// How many attempts a handler gets and the delay before each retry: exponential, capped and
/// jittered. Applied as a Nak delay on the failed delivery (the consumer has no `backoff` list).
///
/// The delay after failed attempt `n` (1-based) is
/// `min(initial_delay × multiplier^(n-1), max_delay)`, then reduced by up to `jitter` × itself
/// at random, so retries of many events spread out. No delay is ever longer than `max_delay`
/// nor than [`RetryPolicy::MAX_DELAY_CAP`] (7 days), whatever the policy or a handler's
/// [`retry_after`](crate::HandlerError::retry_after) asks for.
///
/// ```
/// use std::time::Duration;
/// use conveyor::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(4, Duration::from_secs(1)).with_jitter(0.0);
/// assert_eq!(policy.delay_after(1), Duration::from_secs(1));
/// assert_eq!(policy.delay_after(3), Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt.
    pub initial_delay: Duration,
    /// Upper bound for any delay.
    pub max_delay: Duration,
    /// Growth factor per attempt (at least 1.0).
    pub multiplier: f64,
    /// Fraction (0.0 to 1.0) by which a delay is randomly shortened.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts; 1 s, 2 s, 4 s, 8 s between them (up to 20% shorter at random); at most 5 min.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The longest delay any retry waits, whatever `max_delay` says: 7 days.
    pub const MAX_DELAY_CAP: Duration = Duration::from_secs(7 * 24 * 3600);

    /// `max_attempts` attempts with delays doubling from `initial_delay`.
    pub fn exponential(max_attempts: u32, initial_delay: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial_delay,
            ..Self::default()
        }
    }

    /// A single attempt: a failure goes straight to the dead letters.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the cap on delays.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets the growth factor (values below 1.0 count as 1.0).
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// Sets the jitter fraction (clamped to 0.0..=1.0).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay before the retry that follows failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(64);
        let factor = self.multiplier.max(1.0).powi(exp as i32);
        let base = self.initial_delay.as_secs_f64() * factor;
        let capped = base.min(self.cap().as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * fastrand::f64();
        let secs = capped * (1.0 - jitter);
        // NaN (a NaN multiplier) and negative values count as no delay.
        Duration::try_from_secs_f64(secs).map_or(Duration::ZERO, |d| d.min(self.cap()))
    }

    /// `delay` bounded by this policy's cap: `max_delay`, and never more than
    /// [`MAX_DELAY_CAP`](Self::MAX_DELAY_CAP). Applied to the delay a handler asks for with
    /// [`HandlerError::retry_after`](crate::HandlerError::retry_after) (an HTTP `Retry-After` of
    /// ten years waits `max_delay`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use conveyor::RetryPolicy;
    ///
    /// let policy = RetryPolicy::default(); // max_delay 5 min
    /// assert_eq!(policy.bounded(Duration::from_secs(315_360_000)), Duration::from_secs(300));
    /// assert_eq!(policy.bounded(Duration::from_secs(7)), Duration::from_secs(7));
    /// ```
    pub fn bounded(&self, delay: Duration) -> Duration {
        delay.min(self.cap())
    }

    fn cap(&self) -> Duration {
        self.max_delay.min(Self::MAX_DELAY_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let p = RetryPolicy::exponential(10, Duration::from_millis(100))
            .with_max_delay(Duration::from_millis(500))
            .with_jitter(0.0);
        let d: Vec<_> = (1..=5).map(|a| p.delay_after(a).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn no_policy_gives_an_unbounded_or_panicking_delay() {
        let p = RetryPolicy::exponential(100, Duration::MAX)
            .with_max_delay(Duration::MAX)
            .with_multiplier(f64::MAX);
        for attempt in [1, 2, 64, u32::MAX] {
            assert!(p.delay_after(attempt) <= RetryPolicy::MAX_DELAY_CAP);
        }
        assert_eq!(p.bounded(Duration::MAX), RetryPolicy::MAX_DELAY_CAP);
        let nan = RetryPolicy {
            multiplier: f64::NAN,
            ..RetryPolicy::default()
        };
        assert!(nan.delay_after(3) <= nan.max_delay);
    }

    #[test]
    fn jitter_only_shortens() {
        let p = RetryPolicy::exponential(3, Duration::from_secs(1)).with_jitter(0.5);
        for _ in 0..100 {
            let d = p.delay_after(1);
            assert!(
                d <= Duration::from_secs(1) && d >= Duration::from_millis(500),
                "{d:?}"
            );
        }
    }
}
