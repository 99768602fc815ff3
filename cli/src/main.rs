//! `conveyor`: set up, inspect and repair a Conveyor deployment.
//!
//! Exit codes: 0 success, 1 failure (one `error:` line says what and how to fix it), 2 usage.

mod dashboard;
mod dlq;
mod groups;
mod keys;
mod publish;
mod runs;
mod scheduled;
mod setup;
mod status;
mod tenants;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use clap::{Parser, Subcommand};
use conveyor::Connection;
use conveyor::connect_args::ConnectArgs;
use conveyor::topology::EVENTS_STREAM;
use futures::StreamExt;
use serde_json::Value;

/// Set up, inspect and repair a Conveyor deployment on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version)]
struct Cli {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the topology (streams, buckets), verify with a probe event, and report.
    Setup {
        /// The topology file.
        #[arg(long, default_value = "nats-config/topology.toml")]
        topology: PathBuf,
        /// Replicas of every stream and bucket (overrides the file, whose `replicas = 0` means:
        /// 3 on a cluster of three or more servers, else 1).
        #[arg(long)]
        replicas: Option<usize>,
    },
    /// Publish one event after checking its type, tenant and payload against the catalog.
    Publish(publish::PublishArgs),
    /// Streams, groups (consumers) and dead letters per group.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Serve the operator dashboard and its JSON API (http://127.0.0.1:8700 by default).
    Dashboard(dashboard::DashboardArgs),
    /// Inspect, replay and purge dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Follow events live, one line per event, until Ctrl-C.
    Tail {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this event type.
        #[arg(long = "type")]
        event_type: Option<String>,
    },
    /// Run history of groups that record it: the runs of an event, or recent failures.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Pause and resume tenants.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Pause and resume whole groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// API keys of the HTTP gateway (conveyor-gateway): one tenant each.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Delayed events and delayed retries waiting for their time.
    #[command(subcommand)]
    Scheduled(scheduled::ScheduledCommand),
    /// Cancel an event for a group: a running handler is told and stopped, a queued one is
    /// skipped, a delayed one is removed before it fires; either way it is acked as cancelled,
    /// not dead-lettered.
    Cancel {
        /// The event id.
        event_id: String,
        /// The event's tenant.
        #[arg(long)]
        tenant: String,
        /// The group to cancel it for (default: every group).
        #[arg(long)]
        group: Option<String>,
        /// Why (kept with the cancellation).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

type Fail = String;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (run with --help for usage)");
            return ExitCode::from(2);
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(a: &ConnectArgs) -> Result<Connection, Fail> {
    // A command gives up soon instead of reconnecting for ever.
    let o = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(Some(3));
    let o = a.apply(o).await.map_err(|e| e.message().to_owned())?;
    let addrs = a.addresses().map_err(|e| e.message().to_owned())?;
    let connecting = Connection::connect_with(addrs, o);
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!(
            "cannot connect to {}: {} (check --server / NATS_URL and the credentials)",
            a.server,
            e.kind()
        )),
        Err(_) => Err(format!(
            "cannot reach NATS at {} within 5 s (is the server running? check --server / NATS_URL)",
            a.server
        )),
    }
}

async fn run(cli: Cli) -> Result<(), Fail> {
    match cli.command {
        Command::Publish(args) => publish::publish(&cli.conn, args).await,
        Command::Scheduled(cmd) => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, scheduled::run(&conn, cmd).await)
        }
        Command::Setup { topology, replicas } => setup::setup(&cli.conn, &topology, replicas).await,
        Command::Status { json } => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, status::status(&conn, json).await)
        }
        Command::Dlq(cmd) => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, dlq::dlq(&conn, cmd).await)
        }
        Command::Tail { tenant, event_type } => tail(&cli.conn, tenant, event_type).await,
        Command::Runs(cmd) => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, runs::runs(&conn, cmd).await)
        }
        Command::Groups(cmd) => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, groups::run(&conn, cmd).await)
        }
        Command::Dashboard(args) => {
            // Not the command's short-lived connection: the dashboard runs until stopped.
            let conn = cli.conn.connect().await.map_err(|e| e.to_string())?;
            dashboard::run(&conn, args).await
        }
        Command::Keys(cmd) => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, keys::run(&conn, cmd).await)
        }
        Command::Tenants(cmd) => {
            let conn = connect(&cli.conn).await?;
            explain(&conn, tenants::run(&conn, cmd).await)
        }
        Command::Cancel {
            event_id,
            tenant,
            group,
            reason,
        } => {
            let tenant = conveyor::TenantId::parse(&tenant)
                .map_err(|e| format!("invalid --tenant: {}", e.message()))?;
            let conn = connect(&cli.conn).await?;
            let result =
                conveyor::control::cancel(&conn, &tenant, &event_id, group.as_deref(), &reason)
                    .await
                    .map(|c| {
                        println!(
                    "cancelled {event_id} of {tenant} for {}{}",
                    group
                        .as_deref()
                        .map_or("every group".to_owned(), |g| format!("group {g}")),
                    match c.unscheduled {
                        Some(0) => String::new(),
                        Some(n) => format!("; {n} schedule(s) removed before firing"),
                        None =>
                            "; its schedules could not be removed (they are skipped when they fire)"
                                .to_owned(),
                    }
                );
                    })
                    .map_err(|e| e.to_string());
            explain(&conn, result)
        }
    }
}

async fn tail(
    conn_args: &ConnectArgs,
    tenant: Option<String>,
    event_type: Option<String>,
) -> Result<(), Fail> {
    if let Some(t) = &tenant {
        conveyor::TenantId::parse(t.as_str())
            .map_err(|e| format!("invalid --tenant: {}", e.message()))?;
    }
    if let Some(t) = &event_type {
        conveyor::validate_event_type(t).map_err(|e| format!("invalid --type: {}", e.message()))?;
    }
    let subject = format!(
        "events.{}.{}",
        tenant.as_deref().unwrap_or("*"),
        event_type.as_deref().unwrap_or(">")
    );
    let filter = conveyor::partition::stored_filter(tenant.as_deref(), event_type.as_deref());
    let conn = connect(conn_args).await?;
    let stream = conn
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| format!("stream EVENTS not found ({e}); run `conveyor setup`"))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    eprintln!("following {subject} (Ctrl-C to stop)");
    loop {
        let next = tokio::select! {
            m = messages.next() => m,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(m) = next else { return Ok(()) };
        let m = m.map_err(|e| e.to_string())?;
        let line = match serde_json::from_slice::<Value>(&m.payload) {
            Ok(v) => format!(
                "{} {} {} {} from {}",
                v["time"].as_str().unwrap_or("-"),
                v["tenantid"].as_str().unwrap_or("?"),
                v["type"].as_str().unwrap_or("?"),
                v["id"].as_str().unwrap_or("?"),
                v["source"].as_str().unwrap_or("?"),
            ),
            Err(_) => format!("(not an envelope) on {}", m.subject),
        };
        println!("{line}");
    }
}

/// Replaces an error by "permission denied" when the server refused this user something just
/// now (JetStream requests refused for permissions only time out).
fn explain(conn: &Connection, result: Result<(), Fail>) -> Result<(), Fail> {
    result.map_err(|e| match conn.recent_permission_violation() {
        Some(subject) => format!(
            "permission denied: this user may not use {subject:?}; check its permissions in the server configuration"
        ),
        None => e,
    })
}
