//! `conveyor dashboard`: the operator dashboard and its JSON API, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use conveyor::Connection;
use conveyor_dashboard::{Dashboard, DashboardConfig};

use crate::Fail;

/// How the dashboard serves.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen. Any address but a loopback one needs --token.
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// The token every request must carry (Authorization: Bearer, or open /?token=<token> once).
    #[arg(long, env = "CONVEYOR_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Refuse every action that changes something (replay, purge, pause, cancel, send).
    #[arg(long)]
    read_only: bool,
    /// The scheduler's schedule file (as `conveyor-scheduler run --config`), for the
    /// Schedules page.
    #[arg(long)]
    schedules: Option<PathBuf>,
}

pub(crate) async fn run(conn: &Connection, args: DashboardArgs) -> Result<(), Fail> {
    let schedules = match &args.schedules {
        Some(path) => conveyor_scheduler::config::load(path).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let config = DashboardConfig {
        listen: args.listen,
        token: args.token,
        read_only: args.read_only,
        schedules,
        ..DashboardConfig::default()
    };
    let dashboard = Dashboard::start(conn, config)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "dashboard on http://{}/{} (Ctrl-C stops it)",
        dashboard.local_addr(),
        if args.read_only { " (read-only)" } else { "" }
    );
    let _ = tokio::signal::ctrl_c().await;
    dashboard.shutdown().await;
    Ok(())
}
