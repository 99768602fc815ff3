//! `conveyor runs`: the run history of groups that record it.

use clap::Subcommand;
use conveyor::Connection;

use crate::Fail;

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// Every recorded attempt at one event, in every group, with its state transitions.
    Show {
        /// The event id.
        event_id: String,
        /// Print JSON lines (one run record per line).
        #[arg(long)]
        json: bool,
    },
    /// Events of a group whose latest attempt failed (retrying or dead-lettered), newest first.
    Failed {
        /// The group.
        #[arg(long)]
        group: String,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn runs(conn: &Connection, cmd: RunsCommand) -> Result<(), Fail> {
    use conveyor::history;
    let (records, json, title) = match cmd {
        RunsCommand::Show { event_id, json } => {
            let records = history::runs_of_event(conn, &event_id)
                .await
                .map_err(|e| e.to_string())?;
            if records.is_empty() && !json {
                println!(
                    "no runs recorded for {event_id} (not handled yet, or its groups do not record history)"
                );
                return Ok(());
            }
            (records, json, false)
        }
        RunsCommand::Failed {
            group,
            tenant,
            limit,
            json,
        } => {
            // Group names follow the tenant id rule.
            conveyor::TenantId::parse(group.as_str())
                .map_err(|e| format!("invalid --group: {}", e.message()))?;
            if let Some(t) = &tenant {
                conveyor::TenantId::parse(t.as_str())
                    .map_err(|e| format!("invalid --tenant: {}", e.message()))?;
            }
            let records = history::recent_failures(conn, &group, tenant.as_deref(), limit)
                .await
                .map_err(|e| e.to_string())?;
            if records.is_empty() && !json {
                println!("no failed runs in group {group}");
                return Ok(());
            }
            (records, json, true)
        }
    };
    if json {
        for r in &records {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
        return Ok(());
    }
    if title {
        println!(
            "{:<24} {:<10} {:<22} {:>7} {:<14} EVENT / ERROR",
            "UPDATED", "TENANT", "TYPE", "ATTEMPT", "STATE"
        );
        for r in &records {
            println!(
                "{:<24} {:<10} {:<22} {:>7} {:<14} {} {}",
                r.updated_at()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    .unwrap_or_default(),
                r.tenant,
                r.event_type,
                format!("{}/{}", r.attempt, r.max_attempts),
                r.state,
                r.event_id,
                r.error.as_deref().unwrap_or("")
            );
        }
        return Ok(());
    }
    for r in &records {
        println!(
            "{} {} attempt {}/{} of {} ({}, tenant {}): {}",
            r.group,
            r.event_id,
            r.attempt,
            r.max_attempts,
            r.event_type,
            r.duration_ms
                .map_or("running".to_owned(), |ms| format!("{ms} ms")),
            r.tenant,
            r.state
        );
        for t in &r.transitions {
            println!(
                "  {}  {:<14}{}",
                t.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                t.state.as_str(),
                t.error
                    .as_deref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default()
            );
        }
        if let Some(p) = &r.progress {
            println!("  progress {}% {}", p.percent, p.message);
        }
        if let Some(at) = r.retry_at {
            println!("  next attempt at {}", at.format("%Y-%m-%d %H:%M:%S%.3f"));
        }
        if r.sla_breached {
            println!(
                "  over its expected duration of {} ms",
                r.expected_ms.unwrap_or(0)
            );
        }
    }
    Ok(())
}
