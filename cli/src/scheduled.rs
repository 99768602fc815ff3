//! `conveyor scheduled`: delayed events and delayed retries waiting for their time.

use clap::Subcommand;
use conveyor::Connection;
use conveyor::delay::{self, ScheduledKind};
use serde_json::json;

use crate::Fail;

/// Delayed events and retries.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduledCommand {
    /// What waits, oldest schedule first: due time, tenant, type, id, and for a retry the group
    /// and the attempts made. `conveyor cancel <id> --tenant <t>` removes one.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(conn: &Connection, cmd: ScheduledCommand) -> Result<(), Fail> {
    match cmd {
        ScheduledCommand::List {
            tenant,
            limit,
            json,
        } => {
            let tenant = tenant
                .map(|t| conveyor::TenantId::parse(&t))
                .transpose()
                .map_err(|e| format!("invalid --tenant: {}", e.message()))?;
            let all = delay::scheduled(conn, tenant.as_ref(), limit)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|s| {
                        let (group, attempts) = match &s.kind {
                            ScheduledKind::Retry { group, attempts }
                            | ScheduledKind::RateLimited { group, attempts }
                            | ScheduledKind::WaitingForRoom { group, attempts } => {
                                (Some(group.as_str()), Some(*attempts))
                            }
                            _ => (None, None),
                        };
                        let waits_for = match &s.kind {
                            ScheduledKind::Event => "delay",
                            ScheduledKind::Debounce { .. } => "debounce",
                            ScheduledKind::Retry { .. } => "retry",
                            ScheduledKind::RateLimited { .. } => "rate_limit",
                            ScheduledKind::WaitingForRoom { .. } => "concurrency_limit",
                        };
                        let debounce_key = match &s.kind {
                            ScheduledKind::Debounce { key } => Some(key.as_str()),
                            _ => None,
                        };
                        json!({
                            "tenant": s.tenant,
                            "event_id": s.event_id,
                            "event_type": s.event_type,
                            "due": s.due.map(|t| t.to_rfc3339()),
                            "target": s.target,
                            "waits_for": waits_for,
                            "group": group,
                            "attempts": attempts,
                            "debounce_key": debounce_key,
                            "subject": s.subject,
                            "stream_sequence": s.stream_sequence,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            if all.is_empty() {
                println!("nothing scheduled");
            }
            for s in &all {
                let what = match &s.kind {
                    ScheduledKind::Retry { group, attempts } => {
                        format!("retry for {group} after {attempts} attempt(s)")
                    }
                    ScheduledKind::RateLimited { group, .. } => {
                        format!("waits for its rate-limit slot in {group}")
                    }
                    ScheduledKind::WaitingForRoom { group, .. } => {
                        format!("waits for room under {group}'s concurrency limit")
                    }
                    ScheduledKind::Debounce { key } => format!("debounced, key {key}"),
                    ScheduledKind::Event => "delayed event".to_owned(),
                };
                println!(
                    "{} {} {} {} ({what})",
                    s.due.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
                    s.tenant,
                    s.event_type,
                    s.event_id
                );
            }
            Ok(())
        }
    }
}
