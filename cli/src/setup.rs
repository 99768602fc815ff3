//! `conveyor setup`: apply the topology, verify it with a probe event, report what changed.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::AccountErrorKind;
use conveyor::connect_args::ConnectArgs;
use conveyor::topology::{EVENTS_STREAM, Topology, provision};
use conveyor::{Connection, EventOptions, Publisher};
use serde_json::json;

use crate::{Fail, connect};

/// How long `setup` waits for JetStream to answer: a cluster that has just started elects its
/// meta leader first, and a deploy script runs `setup` right after starting it.
const JETSTREAM_WITHIN: Duration = Duration::from_secs(30);

pub(crate) async fn setup(
    conn_args: &ConnectArgs,
    path: &PathBuf,
    replicas: Option<usize>,
) -> Result<(), Fail> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read topology {}: {e}", path.display()))?;
    let mut topology: Topology = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))?;
    let mut conn = connect(conn_args).await?;
    let info = conn.client().server_info();
    println!(
        "connected to {} (nats-server {})",
        info.server_name, info.version
    );
    if wait_for_jetstream(&conn, JETSTREAM_WITHIN).await? {
        // The servers a client is told of at connect time grow as a starting cluster's routes
        // form: count them on a connection made now that JetStream answers.
        conn = connect(conn_args).await?;
    }
    let info = conn.client().server_info();
    if let Some(r) = replicas {
        topology.replicas = r;
    } else if topology.replicas == 0 {
        // By cluster size: 3 replicas on a cluster of three or more servers, else 1.
        let servers = if info.cluster.is_some() {
            info.connect_urls.len().max(1)
        } else {
            1
        };
        topology.replicas = if servers >= 3 { 3 } else { 1 };
        println!("replicas: {} ({servers} server(s) seen)", topology.replicas);
    }
    let report = provision(&conn, &topology)
        .await
        .map_err(|e| e.to_string())?;
    for (name, change) in &report {
        println!("{name:<26} {change}");
    }
    // Verify: publish a probe event and read it back.
    let probe_id = format!("setup-probe-{}", conveyor::envelope::new_event_id());
    let published = Publisher::new(&conn)
        .with_source("conveyor-setup")
        .publish_untyped(
            "conveyor-setup",
            "setup.probe",
            &json!({"probe": probe_id}),
            EventOptions::default().id(probe_id.clone()),
        )
        .await
        .map_err(|e| format!("probe publish failed: {e}"))?;
    let stream = conn
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let back = stream
        .direct_get(published.stream_sequence)
        .await
        .map_err(|e| format!("probe read-back failed: {e}"))?;
    let ok = String::from_utf8_lossy(&back.payload).contains(&probe_id);
    if !ok {
        return Err("probe read back with a different body".into());
    }
    stream
        .delete_message(published.stream_sequence)
        .await
        .map_err(|e| format!("could not remove the probe: {e}"))?;
    let changed = report
        .iter()
        .filter(|(_, c)| *c != conveyor::topology::StreamChange::Unchanged)
        .count();
    println!(
        "verified: probe event published and read back (EVENTS #{})",
        published.stream_sequence
    );
    println!(
        "setup complete: {changed} changed, {} unchanged",
        report.len() - changed
    );
    Ok(())
}

/// Waits until JetStream answers an account request. Returns whether it had to wait; fails at
/// once when the server has no JetStream, and after `within` while it stays unavailable.
async fn wait_for_jetstream(conn: &Connection, within: Duration) -> Result<bool, Fail> {
    let deadline = tokio::time::Instant::now() + within;
    let mut waited = false;
    loop {
        let error = match conn.jetstream().query_account().await {
            Ok(_) => return Ok(waited),
            Err(e) => e,
        };
        let transient = match error.kind() {
            AccountErrorKind::TimedOut => true,
            AccountErrorKind::JetStream(e) => e.error_code() == ErrorCode::CLUSTER_NOT_AVAILABLE,
            _ => false,
        };
        if !transient {
            return Err(format!("jetstream unavailable: {error}"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "jetstream still unavailable after {within:?} ({error}); is a majority of the cluster's servers up?"
            ));
        }
        if !waited {
            println!("waiting for JetStream ({error})");
            waited = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
