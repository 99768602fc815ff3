//! `conveyor status`: streams, groups, their worker processes, dead letters, the scheduler
//! leader, paused tenants.

use conveyor::Connection;

use crate::Fail;

pub(crate) async fn status(conn: &Connection, as_json: bool) -> Result<(), Fail> {
    let overview = conveyor::status::overview(conn)
        .await
        .map_err(|e| e.to_string())?;
    let report = serde_json::to_value(&overview).map_err(|e| e.to_string())?;
    let streams = report["streams"].as_array().cloned().unwrap_or_default();
    let groups = report["groups"].as_array().cloned().unwrap_or_default();
    let leader = overview.scheduler_leader.clone();
    let paused = overview.paused.clone();
    let scheduled = overview.scheduled;
    let dead_letters_removed = overview.dead_letters_removed;
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
        "{:<20} {:>8} {:>11} {:>11} {:>9} {:>12} {:>8}  last active",
        "group", "pending", "ack pending", "redelivered", "processes", "dead letters", "removed"
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
        // Bound processes, and how many more are still binding.
        let processes = match (g["bound_processes"].as_u64(), g["processes"].as_u64()) {
            (Some(b), Some(n)) if b < n => format!("{b}+{}", n - b),
            (_, Some(n)) => n.to_string(),
            _ => "?".into(),
        };
        println!(
            "{:<20} {:>8} {:>11} {:>11} {:>9} {:>12} {:>8}  {}",
            g["group"].as_str().unwrap_or(""),
            g["pending"],
            g["ack_pending"],
            g["redelivered"],
            processes,
            g["dead_letters"],
            removed,
            match g["paused"].as_bool() {
                Some(true) => format!("{} (paused)", g["last_active"].as_str().unwrap_or("-")),
                _ => g["last_active"].as_str().unwrap_or("-").to_owned(),
            }
        );
    }
    println!();
    for w in &overview.workers {
        println!(
            "worker {} on {} (pid {}, {} slots, {}, since {})",
            w.group,
            w.host,
            w.pid,
            w.concurrency,
            if w.bound { "bound" } else { "binding" },
            w.started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    match &leader {
        Some(l) => println!(
            "scheduler leader: {} (since {})",
            l.node,
            l.since.map_or("?".to_owned(), |t| t.to_rfc3339())
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
