//! `conveyor publish`: one event, checked against the catalog, now or delayed.

use std::time::Duration;

use clap::Args;
use conveyor::delay::When;
use conveyor::{EventOptions, Publisher};
use serde_json::Value;

use crate::{Fail, connect};
use conveyor::connect_args::ConnectArgs;

/// What `conveyor publish` is asked to send.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The event type, e.g. order.created.
    event_type: String,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The payload: JSON, or @file.
    #[arg(long)]
    data: String,
    /// The event id (default: a new one).
    #[arg(long)]
    id: Option<String>,
    /// The `source` attribute.
    #[arg(long, default_value = "conveyor-cli")]
    source: String,
    /// Validate only; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Deliver it this long from now (e.g. 10m, 3d): stored now, visible to groups then.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Deliver it at this time (RFC 3339, e.g. 2026-12-24T09:00:00Z).
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

pub(crate) async fn publish(conn_args: &ConnectArgs, args: PublishArgs) -> Result<(), Fail> {
    let PublishArgs {
        event_type,
        tenant,
        data,
        id,
        source,
        dry_run,
        delay,
        at,
    } = args;
    let deliver = match (delay, at) {
        (Some(d), _) => Some(When::After(d)),
        (None, Some(t)) => Some(When::At(t.with_timezone(&chrono::Utc))),
        (None, None) => None,
    };
    let event_type = event_type.as_str();
    let tenant = conveyor::TenantId::parse(&tenant)
        .map_err(|e| format!("invalid --tenant: {}", e.message()))?;
    if conveyor_schemas::find(event_type).is_none() {
        return Err(format!(
            "unknown event type {event_type:?}; the catalog's types are in schemas/json/catalog.json"
        ));
    }
    let text = match data.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => data.to_owned(),
    };
    let payload: Value =
        serde_json::from_str(&text).map_err(|e| format!("--data is not JSON: {e}"))?;
    conveyor_schemas::validate(event_type, &payload)
        .map_err(|e| format!("invalid {event_type} payload: {e}"))?;
    if dry_run {
        println!("valid {event_type} event for tenant {tenant} (dry run: nothing sent)");
        return Ok(());
    }
    // The id is chosen here, so a failure can name it for a retry without a duplicate.
    let id = match id {
        Some(id) => {
            conveyor::envelope::validate_event_id(&id).map_err(|e| format!("invalid --id: {e}"))?;
            id
        }
        None => conveyor::envelope::new_event_id(),
    };
    let conn = connect(conn_args).await?;
    let mut options = EventOptions::default().id(id.clone());
    options.deliver = deliver;
    let published = Publisher::new(&conn)
        .with_source(source)
        .publish_untyped(tenant, event_type, &payload, options)
        .await
        .map_err(|e| match e.kind() {
            conveyor::PublishErrorKind::Timeout => format!(
                "{e}\nevent {id} may have been stored; to retry without a duplicate, run the same command with --id {id}"
            ),
            _ => e.to_string(),
        })?;
    println!(
        "{} {} on {} (EVENTS #{}){}",
        if published.duplicate {
            "duplicate of"
        } else {
            "published"
        },
        published.id,
        published.subject,
        published.stream_sequence,
        published
            .deliver_at
            .map(|t| format!(", delivered at {}", t.to_rfc3339()))
            .unwrap_or_default()
    );
    Ok(())
}
