//! The delivery headers the runtime reads, and reading them.

use async_nats::jetstream;

pub(super) use crate::delay::{ATTEMPT_HEADER as ATTEMPTS_MADE, SCHEDULER_HEADER as SCHEDULER};
pub(super) use crate::dlq::REPLAY_FOR_HEADER as REPLAY_FOR;
pub(super) use crate::rate::RATE_SLOT_HEADER as RATE_SLOT;
pub(super) use crate::runs::RUN_KEY_HEADER as RUN_KEY;

/// The (first) value of header `name` of `msg`, if any.
///
/// A scan of the headers rather than the map's lookup: a delivery carries a handful of
/// headers, and every lookup hashed the name with the map's SipHash first, several times the
/// cost of comparing the few names there are. Names compare as async-nats compares them: by
/// their exact text.
pub(super) fn header<'m>(
    msg: &'m jetstream::Message,
    name: &str,
) -> Option<&'m async_nats::HeaderValue> {
    find(msg.message.headers.as_ref(), name)
}

fn find<'h>(
    headers: Option<&'h async_nats::HeaderMap>,
    name: &str,
) -> Option<&'h async_nats::HeaderValue> {
    headers?
        .iter()
        .find(|(n, _)| AsRef::<str>::as_ref(*n) == name)
        .and_then(|(_, values)| values.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header is found by its exact name among standard and custom ones, its first value
    /// is returned, and a missing name, another case or a message without headers give none.
    #[test]
    fn finds_a_header_by_its_exact_name() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", "acme:1");
        h.insert("Content-Type", "application/cloudevents+json");
        h.append(ATTEMPTS_MADE, "3");
        h.append(ATTEMPTS_MADE, "4");
        h.insert(REPLAY_FOR, "billing");
        let h = Some(&h);
        assert_eq!(find(h, ATTEMPTS_MADE).map(|v| v.as_str()), Some("3"));
        assert_eq!(find(h, REPLAY_FOR).map(|v| v.as_str()), Some("billing"));
        assert_eq!(find(h, "Nats-Msg-Id").map(|v| v.as_str()), Some("acme:1"));
        assert!(find(h, RUN_KEY).is_none());
        assert!(find(h, &REPLAY_FOR.to_lowercase()).is_none());
        assert!(find(None, ATTEMPTS_MADE).is_none());
    }
}
