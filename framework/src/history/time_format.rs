//! Writing the times of run records: RFC 3339 in UTC with nanoseconds
//! (`2026-12-01T23:21:44.123456789Z`), as `chrono` writes them with `SecondsFormat::Nanos`.
//!
//! Written by hand because a record holds up to a dozen times and is written for every run:
//! chrono's `Serialize` goes through `core::fmt` one piece at a time, which made encoding a
//! record several times slower than the rest of it. Reading uses chrono's parser.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// The time as RFC 3339 text, or `None` for a year chrono would write differently (before 0
/// or after 9999).
fn format(t: &DateTime<Utc>) -> Option<[u8; 30]> {
    // Read from the naive time once: each accessor of a `DateTime` converts it to local time
    // (an offset of zero, for UTC) on its own.
    let t = t.naive_utc();
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (at..at + width).rev() {
            if let Some(b) = out.get_mut(i) {
                // `v % 10` is below 10: the cast cannot truncate.
                *b = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    let secs = t.num_seconds_from_midnight();
    put(11, secs / 3600, 2);
    put(14, secs / 60 % 60, 2);
    // A leap second is written as second 60, as chrono does.
    let nanos = t.nanosecond();
    put(17, secs % 60 + nanos / 1_000_000_000, 2);
    put(20, nanos % 1_000_000_000, 9);
    Some(out)
}

/// `serialize_with` for a `DateTime<Utc>`.
pub(super) fn time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let text = format(t);
    match text.as_ref().and_then(|b| std::str::from_utf8(b).ok()) {
        Some(text) => s.serialize_str(text),
        None => s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
    }
}

/// `serialize_with` for an `Option<DateTime<Utc>>` (skipped when `None`).
pub(super) fn optional_time<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => time(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn written_as_chrono_writes_nanoseconds_and_read_back_equal() {
        let times = [
            Utc::now(),
            Utc.with_ymd_and_hms(2026, 12, 1, 23, 21, 44).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 0).unwrap() + chrono::Duration::nanoseconds(5),
            // A leap second: chrono holds it as second 59 with over a second of nanoseconds.
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_250_000_000))
                .unwrap()
                .and_utc(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-5, 3, 1, 0, 0, 0).unwrap(),
        ];
        for t in times {
            let mut json = Vec::new();
            time(&t, &mut serde_json::Serializer::new(&mut json)).unwrap();
            let expected = format!(
                "\"{}\"",
                t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            );
            assert_eq!(String::from_utf8(json.clone()).unwrap(), expected);
            let back: DateTime<Utc> = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, t);
        }
    }
}
