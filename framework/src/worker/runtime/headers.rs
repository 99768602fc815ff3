//! The delivery headers the runtime reads, and reading them.

use async_nats::jetstream;

/// Header names looked up on every delivery, built once: async-nats copies a `&str` name into a
/// new allocation on every lookup, a clone of a built name only counts a reference.
pub(super) static REPLAY_FOR: std::sync::LazyLock<Option<async_nats::HeaderName>> =
    std::sync::LazyLock::new(|| crate::dlq::REPLAY_FOR_HEADER.parse().ok());
pub(super) static RUN_KEY: std::sync::LazyLock<Option<async_nats::HeaderName>> =
    std::sync::LazyLock::new(|| crate::runs::RUN_KEY_HEADER.parse().ok());
pub(super) static ATTEMPTS_MADE: std::sync::LazyLock<Option<async_nats::HeaderName>> =
    std::sync::LazyLock::new(|| crate::delay::ATTEMPT_HEADER.parse().ok());
pub(super) static SCHEDULER: std::sync::LazyLock<Option<async_nats::HeaderName>> =
    std::sync::LazyLock::new(|| crate::delay::SCHEDULER_HEADER.parse().ok());
pub(super) static RATE_SLOT: std::sync::LazyLock<Option<async_nats::HeaderName>> =
    std::sync::LazyLock::new(|| crate::rate::RATE_SLOT_HEADER.parse().ok());

/// The value of header `name` of `msg`, if any.
pub(super) fn header<'m>(
    msg: &'m jetstream::Message,
    name: &std::sync::LazyLock<Option<async_nats::HeaderName>>,
) -> Option<&'m async_nats::HeaderValue> {
    msg.message
        .headers
        .as_ref()
        .zip(name.as_ref())
        .and_then(|(h, name)| h.get(name.clone()))
}
