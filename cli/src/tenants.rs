//! `conveyor tenants`: pause and resume a tenant's events, set its weight, see its backlog.

use clap::Subcommand;
use conveyor::Connection;
use conveyor::pause::{self, Pause};

use crate::Fail;

/// Pause and resume tenants.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantsCommand {
    /// Pause a tenant: its events are kept (in the PARKED stream) and not run until it is
    /// resumed; other tenants are not affected. Survives restarts.
    Pause {
        /// The tenant.
        tenant: String,
        /// Only for this group (default: every group).
        #[arg(long)]
        group: Option<String>,
        /// Why (kept with the pause).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a tenant: removes the pause and runs its parked events, oldest first.
    Resume {
        /// The tenant.
        tenant: String,
        /// The group it was paused for (default: the pause for every group).
        #[arg(long)]
        group: Option<String>,
    },
    /// The paused tenants.
    Paused,
    /// Each tenant's backlog per group: its events the group has not been delivered yet.
    Backlog {
        /// The tenants.
        #[arg(required = true)]
        tenants: Vec<String>,
    },
    /// Set a tenant's weight (1 to 100, default 1): while tenants of different partitions have
    /// backlogs, each gets handler slots in proportion to its weight.
    Weight {
        /// The tenant.
        tenant: String,
        /// Its weight.
        weight: u32,
    },
}

fn tenant_id(tenant: &str) -> Result<conveyor::TenantId, Fail> {
    conveyor::TenantId::parse(tenant).map_err(|e| format!("invalid tenant: {}", e.message()))
}

/// One line for a pause.
pub(crate) fn describe(p: &Pause) -> String {
    format!(
        "{} paused for {} since {}{}",
        p.tenant,
        p.group
            .as_deref()
            .map_or_else(|| "every group".to_owned(), |g| format!("group {g}")),
        p.paused_at.to_rfc3339(),
        if p.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.reason)
        }
    )
}

pub(crate) async fn run(conn: &Connection, cmd: TenantsCommand) -> Result<(), Fail> {
    match cmd {
        TenantsCommand::Pause {
            tenant,
            group,
            reason,
        } => {
            let tenant = tenant_id(&tenant)?;
            let p = pause::pause(conn, &tenant, group.as_deref(), &reason)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", describe(&p));
            Ok(())
        }
        TenantsCommand::Resume { tenant, group } => {
            let tenant = tenant_id(&tenant)?;
            let n = pause::resume(conn, &tenant, group.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            println!("{tenant} resumed; {n} parked events re-published");
            Ok(())
        }
        TenantsCommand::Weight { tenant, weight } => {
            let tenant = tenant_id(&tenant)?;
            conveyor::weights::set_weight(conn, &tenant, weight)
                .await
                .map_err(|e| e.to_string())?;
            println!("{tenant} has weight {weight}");
            Ok(())
        }
        TenantsCommand::Backlog { tenants } => {
            let ids = tenants
                .iter()
                .map(|t| tenant_id(t))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = conveyor::status::tenant_backlogs(conn, &ids)
                .await
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                println!("no backlog");
            }
            for b in &rows {
                match b.pending {
                    Some(n) => println!("{}\t{}\t{n} waiting", b.tenant, b.group),
                    None => println!(
                        "{}\t{}\tnot counted (ask for fewer tenants)",
                        b.tenant, b.group
                    ),
                }
            }
            Ok(())
        }
        TenantsCommand::Paused => {
            let all = pause::paused(conn).await.map_err(|e| e.to_string())?;
            if all.is_empty() {
                println!("no tenant is paused");
            }
            for p in &all {
                let parked = match conveyor::TenantId::parse(&p.tenant) {
                    Ok(t) => pause::parked_count(conn, &t)
                        .await
                        .map_err(|e| e.to_string())?,
                    Err(_) => 0,
                };
                println!("{}; {parked} events parked", describe(p));
            }
            Ok(())
        }
    }
}
