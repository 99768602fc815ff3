//! `conveyor status`: streams, groups, dead letters, the scheduler leader, paused tenants.

use conveyor::Connection;
use conveyor::topology::{DLQ_STREAM, EVENTS_STREAM};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Fail;
use crate::dlq::dead_letters;

pub(crate) async fn status(conn: &Connection, as_json: bool) -> Result<(), Fail> {
    let js = conn.jetstream();
    let mut streams = Vec::new();
    for name in [EVENTS_STREAM, DLQ_STREAM] {
        let mut s = js
            .get_stream(name)
            .await
            .map_err(|e| format!("stream {name} not found ({e}); run `conveyor setup`"))?;
        let info = s.info().await.map_err(|e| e.to_string())?;
        streams.push(
            json!({"stream": name, "messages": info.state.messages, "bytes": info.state.bytes}),
        );
    }
    let events = js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    // A group has one consumer per partition: its rows are summed.
    let mut by_group: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    let mut infos = events.consumers();
    let dead = dead_letters(conn).await?;
    while let Some(info) = infos.next().await {
        let info = info.map_err(|e| e.to_string())?;
        // Ephemeral consumers (a `conveyor tail`, a schedule listing) are no groups.
        if info.config.durable_name.is_none() {
            continue;
        }
        let (group, _) = conveyor::partition::group_of_consumer(&info.name);
        let row = by_group.entry(group.to_owned()).or_insert_with(|| {
            json!({
                "group": group,
                "pending": 0u64,
                "ack_pending": 0u64,
                "redelivered": 0u64,
                "waiting": 0u64,
                "consumers": 0u64,
                "paused": false,
                "last_active": Value::Null,
                "dead_letters": dead.iter().filter(|(_, d)| d.group == group).count(),
            })
        });
        for (field, n) in [
            ("pending", info.num_pending),
            ("ack_pending", info.num_ack_pending as u64),
            ("redelivered", info.num_redelivered as u64),
            ("waiting", info.num_waiting as u64),
            ("consumers", 1),
        ] {
            row[field] = json!(row[field].as_u64().unwrap_or(0) + n);
        }
        if info.paused {
            row["paused"] = json!(true);
        }
        if let Some(t) = info.delivered.last_active {
            let t = t.to_string();
            if row["last_active"].as_str().is_none_or(|last| *last < *t) {
                row["last_active"] = json!(t);
            }
        }
    }
    // Sampling here too keeps the counts going where no scheduler runs; a user who may not
    // sample reads what the scheduler's leader counted.
    let retention = match conveyor::retention::sample(conn).await {
        Ok(r) => Some(r),
        Err(_) => conveyor::retention::report(conn).await.ok(),
    };
    if let Some(r) = &retention {
        for g in &r.groups {
            if let Some(row) = by_group.get_mut(&g.group) {
                row["removed_unhandled"] = json!(g.removed);
                row["removed_at_least"] = json!(g.at_least);
            }
        }
    }
    let groups: Vec<Value> = by_group.into_values().collect();
    let leader = match js.get_key_value(conveyor::topology::LEASES_BUCKET).await {
        Ok(store) => store
            .get("scheduler")
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok()),
        Err(_) => None,
    };
    let paused = conveyor::pause::paused(conn).await.unwrap_or_default();
    let scheduled = conveyor::delay::scheduled_count(conn, None).await.ok();
    let dead_letters_removed = retention.as_ref().map(|r| r.dead_letters_removed);
    let report = json!({"streams": streams, "groups": groups, "scheduler_leader": leader,
        "paused": paused, "scheduled": scheduled, "dead_letters_removed": dead_letters_removed});
    if as_json {
        println!("{report}");
        return Ok(());
    }
    println!("{:<10} {:>10} {:>12}", "stream", "messages", "bytes");
    for s in &streams {
        println!(
            "{:<10} {:>10} {:>12}",
            s["stream"].as_str().unwrap_or(""),
            s["messages"],
            s["bytes"]
        );
    }
    println!();
    println!(
        "{:<20} {:>8} {:>11} {:>11} {:>8} {:>12} {:>8}  last active",
        "group", "pending", "ack pending", "redelivered", "waiting", "dead letters", "removed"
    );
    for g in &groups {
        let removed = match (
            g["removed_unhandled"].as_u64(),
            g["removed_at_least"].as_bool(),
        ) {
            (Some(n), Some(true)) => format!(">={n}"),
            (Some(n), _) => n.to_string(),
            (None, _) => "?".into(),
        };
        println!(
            "{:<20} {:>8} {:>11} {:>11} {:>8} {:>12} {:>8}  {}",
            g["group"].as_str().unwrap_or(""),
            g["pending"],
            g["ack_pending"],
            g["redelivered"],
            g["waiting"],
            g["dead_letters"],
            removed,
            match g["paused"].as_bool() {
                Some(true) => format!("{} (paused)", g["last_active"].as_str().unwrap_or("-")),
                _ => g["last_active"].as_str().unwrap_or("-").to_owned(),
            }
        );
    }
    println!();
    match &leader {
        Some(l) => println!(
            "scheduler leader: {} (since {})",
            l["node"].as_str().unwrap_or("?"),
            l["since"].as_str().unwrap_or("?")
        ),
        None => println!("scheduler leader: none"),
    }
    for p in &paused {
        println!("{}", crate::tenants::describe(p));
    }
    if groups
        .iter()
        .any(|g| g["removed_unhandled"].as_u64() > Some(0))
    {
        println!(
            "removed: events EVENTS dropped (max_age, max_bytes) before the group handled them; see README \"Retention limits\""
        );
    }
    if let Some(n) = dead_letters_removed.filter(|n| *n > 0) {
        println!("dead letters removed by DLQ limits (max_age, max_bytes): {n}");
    }
    if let Some(n) = scheduled {
        println!(
            "scheduled: {n} (delayed events, debounced bursts, retries and events waiting for a limit; `conveyor scheduled list`)"
        );
    }
    Ok(())
}
