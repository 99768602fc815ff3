//! The event types a group's consumers filter: listing them, and dropping one that no version
//! of the group handles any more.
//!
//! During a rolling deploy every process keeps the filters it finds on the group's consumers
//! and adds its own, so old and new versions never take types away from each other. A type
//! removed from every version therefore stays in the filter: its events are handed back for a
//! while and then dead-lettered as `unknown-type`. [`drop_event_type`] takes it out once no
//! process handles it (a process that still does adds it back when it next binds).
//!
//! ```no_run
//! # async fn run(conn: conveyor::Connection) -> Result<(), conveyor::filters::FilterError> {
//! println!("{:?}", conveyor::filters::event_types(&conn, "billing").await?);
//! let dropped = conveyor::filters::drop_event_type(&conn, "billing", "invoice.legacy").await?;
//! println!("{} pending events of the type are no longer delivered", dropped.pending_skipped);
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{self, Consumer, PullConsumer, pull};
use async_nats::jetstream::stream::ConsumerErrorKind;

use crate::connection::Connection;
use crate::envelope::LANE_MARKER;
use crate::error::Error;
use crate::partition::consumer_names;
use crate::topology::EVENTS_STREAM;

/// Why reading or changing a group's filters failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FilterErrorKind {
    /// The group name or event type is malformed.
    Invalid,
    /// The group has no consumers (no worker of it ever ran).
    UnknownGroup,
    /// The group's consumers do not filter that type.
    UnknownType,
    /// Dropping the type would leave the group without any type.
    LastType,
    /// The server did not answer or refused the change.
    Unavailable,
}

impl fmt::Display for FilterErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "invalid group or event type",
            Self::UnknownGroup => "unknown group",
            Self::UnknownType => "type not handled by the group",
            Self::LastType => "the group's last type",
            Self::Unavailable => "jetstream unavailable",
        })
    }
}

/// A failed read or change of a group's filters.
pub type FilterError = Error<FilterErrorKind>;

/// What [`drop_event_type`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Partition consumers updated.
    pub consumers: u32,
    /// Events of the type that were pending for the group and will not be delivered to it.
    pub pending_skipped: u64,
}

/// The event type a consumer filter selects: `events.~.<p>.*.<type>[.~<lane>]`, or one of the
/// earlier layouts' `events.*.<p>.<type>[.~<lane>]` and `events.*.<type>[.~<lane>]`.
fn filtered_type(filter: &str) -> Option<&str> {
    let rest = match filter.strip_prefix("events.~.") {
        Some(rest) => rest.split_once(".*.")?.1,
        None => {
            let rest = filter.strip_prefix("events.*.")?;
            match rest.split_once('.') {
                Some((p, tail)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => tail,
                _ => rest,
            }
        }
    };
    let lane = format!(".{LANE_MARKER}");
    Some(rest.split_once(lane.as_str()).map_or(rest, |(t, _)| t))
}

fn filters_of(config: &consumer::Config) -> Vec<String> {
    if config.filter_subjects.is_empty() && !config.filter_subject.is_empty() {
        vec![config.filter_subject.clone()]
    } else {
        config.filter_subjects.clone()
    }
}

fn check(group: &str, event_type: Option<&str>) -> Result<(), FilterError> {
    crate::subject::validate_group_name(group)
        .map_err(|e| Error::restate(FilterErrorKind::Invalid, e))?;
    if let Some(t) = event_type {
        crate::event::validate_event_type(t)
            .map_err(|e| Error::restate(FilterErrorKind::Invalid, e))?;
    }
    Ok(())
}

async fn consumers(conn: &Connection, group: &str) -> Result<Vec<PullConsumer>, FilterError> {
    let js = conn.jetstream();
    let mut found = Vec::new();
    for name in consumer_names(group) {
        match js
            .get_consumer_from_stream::<pull::Config, _, _>(&name, EVENTS_STREAM)
            .await
        {
            Ok(c) => found.push(c),
            Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
                {}
            Err(e) => {
                return Err(Error::with_source(
                    FilterErrorKind::Unavailable,
                    format!("cannot read consumer {name}"),
                    e,
                ));
            }
        }
    }
    if found.is_empty() {
        return Err(Error::new(
            FilterErrorKind::UnknownGroup,
            format!("group {group:?} has no consumers: no worker of it has run"),
        ));
    }
    Ok(found)
}

/// The event types `group`'s consumers filter, sorted.
pub async fn event_types(conn: &Connection, group: &str) -> Result<Vec<String>, FilterError> {
    check(group, None)?;
    let mut types = BTreeSet::new();
    for c in consumers(conn, group).await? {
        for f in filters_of(&c.cached_info().config) {
            if let Some(t) = filtered_type(&f) {
                types.insert(t.to_owned());
            }
        }
    }
    Ok(types.into_iter().collect())
}

/// Takes `event_type` out of every partition consumer of `group` (on every lane), so its events
/// are no longer delivered to the group. Run it once no process of the group handles the type.
pub async fn drop_event_type(
    conn: &Connection,
    group: &str,
    event_type: &str,
) -> Result<Dropped, FilterError> {
    check(group, Some(event_type))?;
    let found = consumers(conn, group).await?;
    let mut changes = Vec::new();
    for c in &found {
        let info = c.cached_info();
        let filters = filters_of(&info.config);
        let kept: Vec<String> = filters
            .iter()
            .filter(|f| filtered_type(f) != Some(event_type))
            .cloned()
            .collect();
        if kept.len() == filters.len() {
            continue;
        }
        if kept.is_empty() {
            return Err(Error::new(
                FilterErrorKind::LastType,
                format!(
                    "{event_type} is the only type of group {group:?}; nothing would be left to deliver"
                ),
            ));
        }
        changes.push((info.clone(), kept));
    }
    if changes.is_empty() {
        return Err(Error::new(
            FilterErrorKind::UnknownType,
            format!("group {group:?} does not filter {event_type}"),
        ));
    }
    let stream = conn
        .jetstream()
        .get_stream_no_info(EVENTS_STREAM)
        .await
        .map_err(|e| Error::with_source(FilterErrorKind::Unavailable, "cannot open EVENTS", e))?;
    let mut dropped = Dropped {
        consumers: 0,
        pending_skipped: 0,
    };
    for (info, kept) in changes {
        let mut config = info.config.clone();
        config.filter_subject = String::new();
        config.filter_subjects = kept;
        let updated: Consumer<consumer::Config> =
            stream.update_consumer(config).await.map_err(|e| {
                Error::with_source(
                    FilterErrorKind::Unavailable,
                    format!("cannot update consumer {}", info.name),
                    e,
                )
            })?;
        dropped.consumers += 1;
        dropped.pending_skipped += info
            .num_pending
            .saturating_sub(updated.cached_info().num_pending);
    }
    tracing::info!(%group, %event_type, consumers = dropped.consumers, pending_skipped = dropped.pending_skipped, "event type dropped from the group's consumers");
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::filtered_type;

    #[test]
    fn reads_the_type_of_every_filter_form() {
        for (filter, t) in [
            ("events.~.3.*.order.created", Some("order.created")),
            ("events.~.3.*.order.created.~bulk", Some("order.created")),
            ("events.*.3.order.created", Some("order.created")),
            ("events.*.0.order.created.~bulk", Some("order.created")),
            ("events.*.order.created", Some("order.created")),
            ("events.*.order.created.~bulk", Some("order.created")),
            ("events.*.12.x", Some("x")),
            ("dlq.billing.>", None),
        ] {
            assert_eq!(filtered_type(filter), t, "{filter}");
        }
    }
}
