//! W3C trace context: how a trace continues from a publisher through handlers and the events
//! they publish.
//!
//! Every event carries a `traceparent` (`00-<trace id>-<parent span id>-<flags>`). A publisher
//! takes it, in this order, from [`EventOptions::traceparent`](crate::EventOptions), from the
//! handler it runs in (the handler's own span becomes the parent), from the current
//! OpenTelemetry span (feature `otel`), or starts a new trace. The worker opens one span per
//! handler run with the fields `trace_id`, `span_id` and `parent_span_id`, so log lines of one
//! trace can be joined across processes; with the `otel` feature the span is also parented to
//! the remote context and exported by whatever OpenTelemetry layer the app installs.
//!
//! ```
//! use conveyor::trace::TraceParent;
//!
//! let parent: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
//! let child = parent.child();
//! assert_eq!(child.trace_id(), parent.trace_id());
//! assert_ne!(child.span_id(), parent.span_id());
//! assert!(child.to_string().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! # Ok::<(), conveyor::trace::TraceParentError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// A W3C `traceparent`: trace id, parent span id and trace flags (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

/// A `traceparent` string that is not `00-<32 hex>-<16 hex>-<2 hex>` with non-zero ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid traceparent {value:?}: expected 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
)]
pub struct TraceParentError {
    value: String,
}

impl TraceParent {
    /// Starts a new trace: random trace and span ids, sampled.
    pub fn generate() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            flags: 1,
        }
    }

    /// Builds one from its parts; `None` when an id is zero (invalid in W3C).
    pub fn from_parts(trace_id: u128, span_id: u64, flags: u8) -> Option<Self> {
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new span in the same trace: same trace id and flags, a fresh span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The span id (the parent of whoever receives this context).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        self.write_trace_id(&mut [0; 32]).to_owned()
    }

    /// Writes the trace id as 32 lowercase hex digits into `buf` and returns them (no
    /// allocation: a run record is written for every run).
    pub(crate) fn write_trace_id<'b>(&self, buf: &'b mut [u8; 32]) -> &'b str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in buf.iter_mut().enumerate() {
            let nibble = (self.trace_id >> (4 * (31 - i))) & 0xf;
            // `nibble` is below 16: the index is in range and the cast cannot truncate.
            *b = HEX.get(nibble as usize).copied().unwrap_or(b'0');
        }
        std::str::from_utf8(buf).unwrap_or_default()
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The context of the current OpenTelemetry span, when there is a valid one.
    #[cfg(feature = "otel")]
    pub fn from_current_span() -> Option<Self> {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return None;
        }
        Self::from_parts(
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
            sc.trace_flags().to_u8(),
        )
    }

    /// The remote OpenTelemetry context this trace parent stands for.
    #[cfg(feature = "otel")]
    pub fn to_otel_context(&self) -> opentelemetry::Context {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        let sc = SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.span_id.to_be_bytes()),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(sc)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TraceParentError {
            value: s.chars().take(80).collect(),
        };
        // Fixed positions: `vv-<32>-<16>-ff` is 55 bytes; a version after 00 may append
        // `-<more>`. Parsed on every delivery, so read in place rather than split.
        let b = s.trim().as_bytes();
        let dashes = [2, 35, 52].iter().all(|&i| b.get(i) == Some(&b'-'));
        let (Some(version), Some(trace_hi), Some(trace_lo), Some(span), Some(flags), true) = (
            b.get(0..2),
            b.get(3..19),
            b.get(19..35),
            b.get(36..52),
            b.get(53..55),
            dashes,
        ) else {
            return Err(err());
        };
        let version = hex(version).ok_or_else(err)?;
        let longer = b.len() > 55;
        if version == 0xff || (version == 0 && longer) || (longer && b.get(55) != Some(&b'-')) {
            return Err(err());
        }
        let trace_id = u128::from(hex(trace_hi).ok_or_else(err)?) << 64
            | u128::from(hex(trace_lo).ok_or_else(err)?);
        let span_id = hex(span).ok_or_else(err)?;
        let flags = u8::try_from(hex(flags).ok_or_else(err)?).map_err(|_| err())?;
        Self::from_parts(trace_id, span_id, flags).ok_or_else(err)
    }
}

/// Up to 16 lowercase hex digits as a number; `None` for any other byte.
///
/// Through a table, without a branch per digit: the digits of ids are random, and a branch on
/// `0-9` or `a-f` for each of a traceparent's 52 was mispredicted about half the time.
fn hex(digits: &[u8]) -> Option<u64> {
    let mut bad = 0u8;
    let value = digits.iter().fold(0u64, |acc, &b| {
        let digit = HEX_DIGITS[usize::from(b)];
        bad |= digit;
        acc << 4 | u64::from(digit & 0x0f)
    });
    (bad & NOT_HEX == 0).then_some(value)
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_DIGITS`].
const NOT_HEX: u8 = 0x80;

/// The value of each lowercase hex digit, [`NOT_HEX`] for every other byte.
const HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn nonzero_u128() -> u128 {
    loop {
        let v = fastrand::u128(..);
        if v != 0 {
            return v;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let v = fastrand::u64(..);
        if v != 0 {
            return v;
        }
    }
}

tokio::task_local! {
    /// The trace context of the handler run the current task belongs to.
    static CURRENT: TraceParent;
}

/// Runs `fut` with `tp` as the current trace context: events published inside it continue the
/// trace with `tp`'s span as their parent.
pub async fn in_context<F: std::future::Future>(tp: TraceParent, fut: F) -> F::Output {
    CURRENT.scope(tp, fut).await
}

/// The trace context of the handler run the current task belongs to, if any.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|tp| *tp).ok()
}

/// The `traceparent` a publisher puts on an event given none explicitly: the current handler's
/// span, else the current OpenTelemetry span (feature `otel`), else a new trace.
pub(crate) fn for_publish() -> TraceParent {
    if let Some(tp) = current() {
        return tp;
    }
    #[cfg(feature = "otel")]
    if let Some(tp) = TraceParent::from_current_span() {
        return tp;
    }
    TraceParent::generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_w3c_example() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp: TraceParent = s.parse().unwrap();
        assert_eq!(tp.to_string(), s);
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(tp.flags(), 1);
        let small = TraceParent::from_parts(0xab, 1, 0).unwrap();
        assert_eq!(small.trace_id_hex(), format!("{:032x}", 0xab));
        let big = TraceParent::from_parts(u128::MAX, 1, 0).unwrap();
        assert_eq!(big.trace_id_hex(), "f".repeat(32));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hex_digits_are_read_for_every_byte_value() {
        for b in 0..=u8::MAX {
            let expected = char::from(b)
                .to_digit(16)
                .filter(|_| !b.is_ascii_uppercase())
                .map(u64::from);
            assert_eq!(hex(&[b]), expected, "byte {b:#04x}");
            assert_eq!(
                hex(&[b'7', b, b'a']),
                expected.map(|d| 0x700 | d << 4 | 0xa)
            );
        }
        assert_eq!(hex(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(hex(b"0123456789abcdef"), Some(0x0123_4567_89ab_cdef));
    }

    #[test]
    fn accepts_later_versions_and_surrounding_space() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let tp: TraceParent = later.parse().unwrap();
        assert_eq!(tp.trace_id(), 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(tp.span_id(), 0x00f0_67aa_0ba9_02b7);
        let spaced = " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ";
        assert_eq!(spaced.parse::<TraceParent>().unwrap().flags(), 0);
    }

    #[test]
    fn child_keeps_trace() {
        let tp = TraceParent::generate();
        let c = tp.child();
        assert_eq!(c.trace_id(), tp.trace_id());
        assert_ne!(c.span_id(), tp.span_id());
        assert_eq!(c.to_string().parse::<TraceParent>().unwrap(), c);
    }

    #[tokio::test]
    async fn current_is_scoped() {
        assert!(current().is_none());
        let tp = TraceParent::generate();
        in_context(tp, async move {
            assert_eq!(current(), Some(tp));
            assert_eq!(for_publish(), tp);
        })
        .await;
        assert!(current().is_none());
    }
}
