//! Events stored in an earlier subject layout of `EVENTS`, and the filters that still deliver
//! them after the stream is switched to the current one.
//!
//! `EVENTS` stores events as `events.~.<partition>.<tenant>.<type>` (see [`crate::partition`]).
//! Earlier versions stored `events.<tenant>.<partition>.<type>` and, before partitions,
//! `events.<tenant>.<type>`. When [`crate::topology::provision`] switches an existing stream to
//! the current transform, it records the last sequence the stream held then in the stream's
//! metadata ([`EARLIER_LAYOUT_UNTIL`]). While the stream's first sequence is at or below it,
//! events of an earlier layout may be left, and every consumer of a group also filters those
//! forms ([`earlier_filters`]); once they are gone (aged out, purged), workers take the earlier
//! forms out of the filters as they bind.
//!
//! A filter of an earlier form that the server would see as overlapping one of the current form
//! in the same consumer (a group handling both `x` and `a.x`: `events.*.3.a.x` and
//! `events.~.3.*.x` both match `events.~.3.a.x`) is left out ([`without_overlaps`]), since the
//! server refuses overlapping filters: such a group does not receive `a.x` events stored in
//! the earlier layout.

use async_nats::jetstream::stream;

use crate::partition::is_stored_form;

/// The `EVENTS` metadata key holding the last stream sequence that may hold an event of an
/// earlier layout (a decimal number), set when the stream was switched to the current one.
pub const EARLIER_LAYOUT_UNTIL: &str = "conveyor.earlier_layout_until";

/// True while `EVENTS` (as `info` shows it) may hold events of an earlier layout: it was
/// switched to the current layout and still holds a message from before the switch.
pub fn earlier_layout_present(info: &stream::Info) -> bool {
    earlier_present(
        info.config.metadata.get(EARLIER_LAYOUT_UNTIL),
        info.state.first_sequence,
        info.state.messages,
    )
}

fn earlier_present(until: Option<&String>, first_sequence: u64, messages: u64) -> bool {
    until
        .and_then(|until| until.parse::<u64>().ok())
        .is_some_and(|until| messages > 0 && first_sequence <= until)
}

/// Carries `actual`'s metadata (other than the server's own `_nats.` keys) into `desired`, the
/// configuration it is updated to. True when the update switches `EVENTS` from another subject
/// transform (or none) to the current one: the caller then records the switch.
pub(crate) fn keep_metadata(actual: &stream::Info, desired: &mut stream::Config) -> bool {
    for (key, value) in &actual.config.metadata {
        if !key.starts_with("_nats.") {
            desired
                .metadata
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
    desired.name == crate::topology::EVENTS_STREAM
        && actual.config.subject_transform != desired.subject_transform
}

/// Records in `config` that the stream's events up to `last_sequence` may be of an earlier
/// layout.
pub(crate) fn record_switch(config: &mut stream::Config, last_sequence: u64) {
    config
        .metadata
        .insert(EARLIER_LAYOUT_UNTIL.into(), last_sequence.to_string());
}

/// The filters of the earlier layouts for a group's consumer of `partition`: for each event
/// type on `lane`, `events.*.<p>.<type>` and, on partition 0, `events.*.<type>`.
pub fn earlier_filters<'a>(
    event_types: impl IntoIterator<Item = &'a str>,
    lane: Option<&str>,
    partition: u32,
) -> Vec<String> {
    let lane = crate::partition::lane_suffix(lane);
    event_types
        .into_iter()
        .flat_map(|t| {
            let unpartitioned = (partition == 0).then(|| format!("events.*.{t}{lane}"));
            std::iter::once(format!("events.*.{partition}.{t}{lane}")).chain(unpartitioned)
        })
        .collect()
}

/// `filters` without the earlier-layout filters that overlap a current-layout one, sorted and
/// without duplicates.
pub fn without_overlaps(filters: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut filters: Vec<String> = filters.into_iter().collect();
    filters.sort();
    filters.dedup();
    let current: Vec<String> = filters
        .iter()
        .filter(|f| is_stored_form(f))
        .cloned()
        .collect();
    filters.retain(|f| {
        let keep = is_stored_form(f) || !current.iter().any(|c| overlap(f, c));
        if !keep {
            tracing::warn!(filter = %f, "an earlier-layout filter overlaps a current one and is left out: events of its type stored in the earlier layout are not delivered to this group");
        }
        keep
    });
    filters
}

/// True when some subject matches both filters (NATS wildcards `*` and `>`).
fn overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_overlap() {
        assert!(overlap("events.*.3.a.x", "events.~.3.*.x"));
        assert!(overlap("events.>", "events.~.3.*.x"));
        assert!(!overlap("events.*.3.x", "events.~.3.*.x"));
        assert!(!overlap("events.*.3.a.x", "events.~.4.*.x"));
        assert!(!overlap("events.*.a.x", "events.~.0.*.x"));
    }

    #[test]
    fn earlier_filters_overlapping_current_ones_are_left_out() {
        let mut filters = crate::partition::filter_subjects(["x", "a.x"], None, 3);
        filters.extend(earlier_filters(["x", "a.x"], None, 3));
        assert_eq!(
            without_overlaps(filters),
            ["events.*.3.x", "events.~.3.*.a.x", "events.~.3.*.x"]
        );
        let mut filters = crate::partition::filter_subjects(["order.created"], Some("bulk"), 0);
        filters.extend(earlier_filters(["order.created"], Some("bulk"), 0));
        assert_eq!(
            without_overlaps(filters),
            [
                "events.*.0.order.created.~bulk",
                "events.*.order.created.~bulk",
                "events.~.0.*.order.created.~bulk"
            ]
        );
    }

    #[test]
    fn earlier_events_are_present_until_the_first_sequence_passes_the_switch() {
        let five = "5".to_owned();
        assert!(!earlier_present(None, 1, 10));
        assert!(earlier_present(Some(&five), 1, 10));
        assert!(earlier_present(Some(&five), 5, 10));
        assert!(!earlier_present(Some(&five), 6, 10));
        assert!(!earlier_present(Some(&five), 1, 0));
        assert!(!earlier_present(Some(&"x".to_owned()), 1, 10));
    }
}
