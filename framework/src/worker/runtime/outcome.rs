//! What becomes of one delivery ([`Outcome`]), its labels, and the pure decision from a
//! handler run's result to its outcome ([`decide`]).

use std::time::Duration;

use chrono::Utc;

use crate::dlq::DeadLetterKind;
use crate::handler::{HandlerResult, Retry};
use crate::history::RunState;
use crate::retry::RetryPolicy;
use crate::telemetry::Outcome as Counted;

/// What becomes of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Handled: acked.
    Ack,
    /// The attempt failed and attempts are left: retried after `delay`.
    Retry { delay: Duration, error: String },
    /// Copied to the dead letters, then terminated.
    DeadLetter { kind: DeadLetterKind, error: String },
    /// Cancelled before it started (`running` false) or while it ran.
    Cancelled { running: bool },
    /// Given back without a result (shutdown): not an attempt.
    HandBack,
    /// A type this process does not handle: handed back after `delay` for another version of
    /// the group.
    Elsewhere { delay: Duration },
    /// A replayed dead letter of another group: acked, not run.
    NotForThisGroup,
    /// The tenant is paused for this group: the event is parked (see [`crate::pause`]).
    Park,
    /// Over the group's rate limit: acked and copied to run at its slot (see [`crate::rate`]).
    RateLimited { slot: chrono::DateTime<Utc> },
    /// Its concurrency key is full: acked and copied to run when it has room (see
    /// [`crate::concurrency`]).
    WaitForRoom { key: String },
}

impl Outcome {
    pub(crate) fn dead(kind: DeadLetterKind, error: impl Into<String>) -> Self {
        Self::DeadLetter {
            kind,
            error: error.into(),
        }
    }

    /// Its `outcome` label in metrics.
    pub(crate) fn counted(&self) -> Counted {
        match self {
            Self::Ack => Counted::Ok,
            Self::Retry { .. } => Counted::Retry,
            Self::DeadLetter { .. } => Counted::DeadLetter,
            Self::Cancelled { .. } => Counted::Cancelled,
            Self::HandBack | Self::Elsewhere { .. } => Counted::HandedBack,
            Self::NotForThisGroup => Counted::Skipped,
            Self::Park => Counted::Paused,
            Self::RateLimited { .. } => Counted::RateLimited,
            Self::WaitForRoom { .. } => Counted::ConcurrencyLimited,
        }
    }

    /// Its `outcome` field in the delivery's log span.
    pub(crate) fn span_label(&self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Retry { .. } => "retry",
            Self::DeadLetter { .. } => "dead-letter",
            Self::Cancelled { .. } => "cancelled",
            Self::HandBack | Self::Elsewhere { .. } => "handed-back",
            Self::NotForThisGroup => "skipped",
            Self::Park => "paused",
            Self::RateLimited { .. } => "rate-limited",
            Self::WaitForRoom { .. } => "concurrency-limited",
        }
    }

    /// The state its run record ends in, with the error to record; `None` for outcomes
    /// decided before a run record exists.
    pub(crate) fn run_state(&self) -> Option<(RunState, Option<String>)> {
        Some(match self {
            Self::Ack => (RunState::Succeeded, None),
            Self::Retry { error, .. } => (RunState::Retrying, Some(error.clone())),
            Self::DeadLetter { kind, error } => {
                (RunState::DeadLettered, Some(format!("{kind}: {error}")))
            }
            Self::Cancelled { .. } => (RunState::Cancelled, None),
            Self::HandBack => (RunState::HandedBack, None),
            Self::NotForThisGroup
            | Self::Elsewhere { .. }
            | Self::Park
            | Self::RateLimited { .. }
            | Self::WaitForRoom { .. } => return None,
        })
    }
}

/// How one handler run ended.
#[derive(Debug)]
pub(crate) enum Run {
    /// The handler returned.
    Done(HandlerResult),
    /// The handler panicked, with this message.
    Panicked(String),
    /// The handler ran past its timeout.
    TimedOut,
    /// The event was cancelled while it ran.
    Cancelled,
    /// The worker gave up on the run (shutdown past its grace).
    Aborted,
}

/// What the decision needs to know of the handler besides the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt<'a> {
    /// This attempt's number, from 1.
    pub(crate) number: u32,
    /// The handler's retry policy.
    pub(crate) policy: &'a RetryPolicy,
    /// The handler's timeout (for the error text of a run that exceeded it).
    pub(crate) timeout: Duration,
}

/// The outcome of a handler run. `cancelled`: the event was cancelled meanwhile (a run that
/// returned after its cancellation is cancelled whatever it returned, unless the worker aborted
/// it). Errors are retried while attempts are left, unless they say `Retry::Never`; a retry
/// waits the policy's backoff or the error's own delay, bounded by the policy.
pub(crate) fn decide(run: &Run, cancelled: bool, attempt: Attempt<'_>) -> Outcome {
    if cancelled && !matches!(run, Run::Aborted) {
        return Outcome::Cancelled { running: true };
    }
    let (kind, retry, error) = match run {
        Run::Done(Ok(())) => return Outcome::Ack,
        Run::Aborted => return Outcome::HandBack,
        Run::Cancelled => return Outcome::Cancelled { running: true },
        Run::Done(Err(e)) => (DeadLetterKind::Handler, e.retry(), e.to_string()),
        Run::Panicked(message) => (
            DeadLetterKind::Panic,
            Retry::Backoff,
            format!("handler panicked: {message}"),
        ),
        Run::TimedOut => (
            DeadLetterKind::Timeout,
            Retry::Backoff,
            format!("handler exceeded its {:?} timeout", attempt.timeout),
        ),
    };
    let policy = attempt.policy;
    match retry {
        Retry::Never => Outcome::DeadLetter { kind, error },
        _ if attempt.number >= policy.max_attempts => Outcome::DeadLetter { kind, error },
        Retry::After(delay) => Outcome::Retry {
            delay: policy.bounded(delay),
            error,
        },
        Retry::Backoff => Outcome::Retry {
            delay: policy.delay_after(attempt.number),
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HandlerError;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.0,
        }
    }

    fn failed(message: &str) -> Run {
        Run::Done(Err(HandlerError::transient(message.to_owned())))
    }

    #[test]
    fn decides_every_run_at_every_attempt() {
        let p = policy();
        let at = |number| Attempt {
            number,
            policy: &p,
            timeout: Duration::from_secs(30),
        };
        let retry = |secs, error: &str| Outcome::Retry {
            delay: Duration::from_secs(secs),
            error: error.into(),
        };
        let dead = |kind, error: &str| Outcome::dead(kind, error);
        let table: Vec<(&str, Run, bool, u32, Outcome)> = vec![
            ("success", Run::Done(Ok(())), false, 1, Outcome::Ack),
            (
                "success on the last attempt",
                Run::Done(Ok(())),
                false,
                3,
                Outcome::Ack,
            ),
            (
                "error, first attempt: backoff",
                failed("down"),
                false,
                1,
                retry(1, "down"),
            ),
            (
                "error, second attempt: doubled",
                failed("down"),
                false,
                2,
                retry(2, "down"),
            ),
            (
                "error on the last attempt",
                failed("down"),
                false,
                3,
                dead(DeadLetterKind::Handler, "down"),
            ),
            (
                "permanent error, first attempt",
                Run::Done(Err(HandlerError::permanent("bad card"))),
                false,
                1,
                dead(DeadLetterKind::Handler, "bad card"),
            ),
            (
                "retry_after, bounded by max_delay",
                Run::Done(Err(HandlerError::retry_after(
                    Duration::from_secs(3600),
                    "busy",
                ))),
                false,
                1,
                retry(60, "busy"),
            ),
            (
                "retry_after within max_delay",
                Run::Done(Err(HandlerError::retry_after(
                    Duration::from_secs(7),
                    "busy",
                ))),
                false,
                2,
                retry(7, "busy"),
            ),
            (
                "panic: retried",
                Run::Panicked("index out of bounds".into()),
                false,
                1,
                retry(1, "handler panicked: index out of bounds"),
            ),
            (
                "panic on the last attempt",
                Run::Panicked("boom".into()),
                false,
                3,
                dead(DeadLetterKind::Panic, "handler panicked: boom"),
            ),
            (
                "timeout: retried",
                Run::TimedOut,
                false,
                2,
                retry(2, "handler exceeded its 30s timeout"),
            ),
            (
                "timeout on the last attempt",
                Run::TimedOut,
                false,
                3,
                dead(DeadLetterKind::Timeout, "handler exceeded its 30s timeout"),
            ),
            (
                "cancelled while running",
                Run::Cancelled,
                true,
                1,
                Outcome::Cancelled { running: true },
            ),
            (
                "returned after its cancellation",
                Run::Done(Ok(())),
                true,
                1,
                Outcome::Cancelled { running: true },
            ),
            (
                "failed after its cancellation",
                failed("stopped"),
                true,
                3,
                Outcome::Cancelled { running: true },
            ),
            (
                "aborted by shutdown",
                Run::Aborted,
                false,
                3,
                Outcome::HandBack,
            ),
            (
                "aborted though cancelled",
                Run::Aborted,
                true,
                1,
                Outcome::HandBack,
            ),
        ];
        for (case, run, cancelled, number, expected) in table {
            assert_eq!(decide(&run, cancelled, at(number)), expected, "{case}");
        }
    }

    #[test]
    fn every_outcome_has_one_label_and_run_state() {
        let outcomes = [
            (Outcome::Ack, "ok", Some(RunState::Succeeded)),
            (
                Outcome::Retry {
                    delay: Duration::ZERO,
                    error: "e".into(),
                },
                "retry",
                Some(RunState::Retrying),
            ),
            (
                Outcome::dead(DeadLetterKind::Decode, "e"),
                "dead_letter",
                Some(RunState::DeadLettered),
            ),
            (
                Outcome::Cancelled { running: false },
                "cancelled",
                Some(RunState::Cancelled),
            ),
            (Outcome::HandBack, "handed_back", Some(RunState::HandedBack)),
            (
                Outcome::Elsewhere {
                    delay: Duration::ZERO,
                },
                "handed_back",
                None,
            ),
            (Outcome::NotForThisGroup, "skipped", None),
            (Outcome::Park, "paused", None),
            (
                Outcome::RateLimited { slot: Utc::now() },
                "rate_limited",
                None,
            ),
            (
                Outcome::WaitForRoom { key: "k".into() },
                "concurrency_limited",
                None,
            ),
        ];
        for (outcome, label, state) in outcomes {
            assert_eq!(outcome.counted().as_str(), label, "{outcome:?}");
            assert_eq!(outcome.run_state().map(|(s, _)| s), state, "{outcome:?}");
            assert!(!outcome.span_label().is_empty());
        }
        assert_eq!(
            Outcome::dead(DeadLetterKind::Timeout, "slow").run_state(),
            Some((RunState::DeadLettered, Some("timeout: slow".into())))
        );
    }
}
