//! Pausing a whole group: the server's consumer pause on each of its partition consumers.

use chrono::{DateTime, Utc};

use super::*;

/// Pauses a whole group: every partition consumer of `group` (the server's consumer pause,
/// nats-server 2.11) until `until` (`None`: until [`resume_group`], in practice 100 years).
/// Its events stay in `EVENTS` and are delivered in order once the pause ends; workers stay
/// bound meanwhile. The pause is kept by the server and survives restarts.
pub async fn pause_group(
    conn: &Connection,
    group: &str,
    until: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, PauseError> {
    let until = until.unwrap_or_else(|| Utc::now() + chrono::Duration::days(36_500));
    set_group_pause(conn, group, Some(until)).await?;
    Ok(until)
}

/// Ends the pause of a whole group (see [`pause_group`]).
pub async fn resume_group(conn: &Connection, group: &str) -> Result<(), PauseError> {
    set_group_pause(conn, group, None).await
}

/// Pauses (`Some(until)`) or resumes every partition consumer of `group`.
async fn set_group_pause(
    conn: &Connection,
    group: &str,
    until: Option<DateTime<Utc>>,
) -> Result<(), PauseError> {
    check_group(Some(group))?;
    let stream = conn
        .jetstream()
        .get_stream(crate::topology::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable("cannot read EVENTS", e))?;
    for name in crate::partition::consumer_names(group) {
        match until {
            Some(until) => stream.pause_consumer(&name, until).await,
            None => stream.resume_consumer(&name).await,
        }
        .map_err(|e| match e.kind() {
            async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
            {
                Error::new(
                    PauseErrorKind::UnknownGroup,
                    format!("group {group:?} has no consumer {name}: run a worker of the group once first"),
                )
            }
            _ => unavailable(&format!("cannot pause or resume consumer {name}"), e),
        })?;
    }
    Ok(())
}
