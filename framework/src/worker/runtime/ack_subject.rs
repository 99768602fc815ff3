//! Reading a delivery's JetStream metadata from its reply subject, on every delivery.

/// What the pull loop reads from a delivery's ack subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AckInfo {
    /// The message's sequence in the stream.
    pub(super) stream_sequence: u64,
    /// How many times it has been delivered, this delivery included.
    pub(super) delivered: i64,
    /// Messages left for the consumer after this one.
    pub(super) pending: u64,
}

/// The metadata in `reply`, read the way async-nats' `Message::info` reads it:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or,
/// with a domain and account hash first (ADR-15), at least nine tokens after `$JS.ACK.`
/// (later ones ignored). Only the three numbers the loop uses are parsed: `Message::info` also
/// parses the consumer sequence and turns the time into a date, which made it about 6 % of a
/// fast handler's delivery.
pub(super) fn ack_info(reply: &str) -> Option<AckInfo> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let mut tokens = [""; 10];
    let mut n = 0;
    let mut left = Some(rest);
    while let (Some(text), Some(slot)) = (left, tokens.get_mut(n)) {
        (*slot, left) = match crate::subject::split_dot(text) {
            Some((token, tail)) => (token, Some(tail)),
            None => (text, None),
        };
        n += 1;
    }
    let (delivered, stream_sequence, pending) = match n {
        9.. => (tokens[4], tokens[5], tokens[8]),
        7 => (tokens[2], tokens[3], tokens[6]),
        _ => return None,
    };
    Some(AckInfo {
        stream_sequence: stream_sequence.parse().ok()?,
        delivered: delivered.parse().ok()?,
        pending: pending.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms of the ack subject, a trailing token, and subjects async-nats refuses.
    #[test]
    fn reads_both_forms_of_the_ack_subject() {
        let info = |stream_sequence, delivered, pending| {
            Some(AckInfo {
                stream_sequence,
                delivered,
                pending,
            })
        };
        assert_eq!(
            ack_info("$JS.ACK.EVENTS.billing-03.2.1234.99.1764720000000000000.17"),
            info(1234, 2, 17)
        );
        assert_eq!(
            ack_info("$JS.ACK._.ABCHASH.EVENTS.billing-03.1.5.6.1764720000000000000.0"),
            info(5, 1, 0)
        );
        assert_eq!(
            ack_info("$JS.ACK.hub.ABCHASH.EVENTS.billing-03.3.7.8.1764720000000000000.4.tok.more"),
            info(7, 3, 4)
        );
        for bad in [
            "",
            "_INBOX.abc",
            "$JS.ACK.EVENTS.billing-03.2.1234",
            "$JS.ACK.EVENTS.billing-03.2.1234.99.1764720000000000000.17.x",
            "$JS.ACK.EVENTS.billing-03.two.1234.99.1764720000000000000.17",
            "$JS.ACK.EVENTS.billing-03.2.-1.99.1764720000000000000.17",
        ] {
            assert_eq!(ack_info(bad), None, "{bad:?}");
        }
    }
}
