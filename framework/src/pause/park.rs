//! Parking a paused tenant's events in `PARKED`, and re-publishing them when it is resumed:
//! to the subjects they were parked from, oldest first, each removed once stored.

use super::*;

/// Events read per request from `PARKED`.
const UNPARK_BATCH: usize = 500;

pub(super) async fn unpark(
    conn: &Connection,
    tenant: &TenantId,
    group: Option<&str>,
) -> Result<u64, PauseError> {
    let stream = match conn.jetstream().get_stream(PARKED_STREAM).await {
        Ok(s) => s,
        // Nothing was ever parked.
        Err(_) => return Ok(0),
    };
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            filter_subject: format!("parked.{}.{tenant}.>", group.unwrap_or("*")),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("cannot read PARKED", e))?;
    let mut total = 0;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(UNPARK_BATCH)
            .messages()
            .await
            .map_err(|e| unavailable("cannot read PARKED", e))?;
        let mut read = 0;
        let mut pending = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| unavailable("cannot read PARKED", e))?;
            let info = m.info().map_err(|e| unavailable("cannot read PARKED", e))?;
            let (sequence, subject) = (info.stream_sequence, m.message.subject.to_string());
            pending = info.pending;
            read += 1;
            match events_subject(&subject) {
                Some((group, events)) => {
                    let mut message = Publish::build()
                        .payload(m.message.payload.clone())
                        .message_id(format!("{tenant}:resume:{sequence}"))
                        .header(crate::dlq::REPLAY_FOR_HEADER, group);
                    message = copy_headers(
                        message,
                        m.message.headers.as_ref(),
                        &["Nats-Msg-Id", crate::dlq::REPLAY_FOR_HEADER],
                    );
                    conn.jetstream()
                        .send_publish(events, message)
                        .await
                        .map_err(|e| unavailable("cannot re-publish a parked event", e))?
                        .await
                        .map_err(|e| unavailable("cannot re-publish a parked event", e))?;
                    total += 1;
                }
                None => {
                    tracing::warn!(%subject, "a PARKED message with an unusable subject is removed")
                }
            }
            stream
                .delete_message(sequence)
                .await
                .map_err(|e| unavailable("cannot remove a parked event", e))?;
        }
        if read == 0 || pending == 0 {
            return Ok(total);
        }
    }
}

/// The subject an event is parked on: `parked.<group>.<tenant>.<type>[.~<lane>]`, from the
/// event's stored subject.
pub(crate) fn parked_subject(group: &str, stored: &str) -> Option<String> {
    let (tenant, event_type) = split_event_subject(stored)?;
    Some(match event_lane(stored) {
        Some(lane) => format!("parked.{group}.{tenant}.{event_type}.{LANE_MARKER}{lane}"),
        None => format!("parked.{group}.{tenant}.{event_type}"),
    })
}

/// The group and the `events.` subject a parked event is re-published on, from its subject
/// alone (the worker that parked it could write only its own `parked.<group>.>` subjects).
pub(super) fn events_subject(parked: &str) -> Option<(&str, String)> {
    let rest = parked.strip_prefix("parked.")?;
    let (group, rest) = rest.split_once('.')?;
    let (tenant, _) = rest.split_once('.')?;
    crate::subject::validate_group_name(group).ok()?;
    TenantId::parse(tenant).ok()?;
    let events = format!("events.{rest}");
    let (_, event_type) = split_event_subject(&events)?;
    crate::event::validate_event_type(event_type).ok()?;
    if let Some(lane) = event_lane(&events) {
        crate::envelope::validate_lane(lane).ok()?;
    }
    Some((group, events))
}

/// Parks a delivery of a paused tenant's event for `group`: stores its body and headers on
/// its parked subject, idempotently (`Nats-Msg-Id` `park:<group>:<stream sequence>`).
pub(crate) async fn park(
    conn: &Connection,
    group: &str,
    msg: &async_nats::Message,
    stream_sequence: u64,
) -> Result<(), PauseError> {
    let subject = parked_subject(group, &msg.subject).ok_or_else(|| {
        unavailable(
            "cannot park",
            format!("{:?} is not an event subject", msg.subject),
        )
    })?;
    let message = copy_headers(
        Publish::build()
            .payload(msg.payload.clone())
            .message_id(format!("park:{group}:{stream_sequence}")),
        msg.headers.as_ref(),
        &["Nats-Msg-Id"],
    );
    conn.jetstream()
        .send_publish(subject, message)
        .await
        .map_err(|e| unavailable("cannot park", e))?
        .await
        .map_err(|e| unavailable("cannot park", e))?;
    Ok(())
}

/// Adds every header of `from` but those named in `skip` to `message`.
fn copy_headers(
    mut message: Publish,
    from: Option<&async_nats::HeaderMap>,
    skip: &[&str],
) -> Publish {
    for (name, values) in from.into_iter().flat_map(|h| h.iter()) {
        let name: &str = name.as_ref();
        if skip.contains(&name) {
            continue;
        }
        for v in values {
            message = message.header(name, v.as_str());
        }
    }
    message
}
