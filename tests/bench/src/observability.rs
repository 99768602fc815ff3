//! `-- observability`: what metrics and run history cost a group's throughput.

use super::*;

/// Purges the run history, if there is one.
async fn reset_history(conn: &Connection) -> BoxResult<()> {
    if let Ok(stream) = conn
        .jetstream()
        .get_stream(conveyor::history::HISTORY_STREAM)
        .await
    {
        stream.purge().await?;
    }
    Ok(())
}

/// How many messages and bytes the run history holds.
async fn history_stream_size(conn: &Connection) -> BoxResult<(f64, f64)> {
    let mut stream = conn
        .jetstream()
        .get_stream(conveyor::history::HISTORY_STREAM)
        .await?;
    let state = &stream.info().await?.state;
    Ok((state.messages as f64, state.bytes as f64))
}

pub(super) async fn observability(conn: &Connection) -> BoxResult<()> {
    let (mut off, mut on, mut history, mut raw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut history_messages, mut history_bytes) = (Vec::new(), Vec::new());
    let telemetry = Telemetry::new();
    // The order of the variants rotates from round to round, so none always runs first.
    let rounds = super::rounds(OBSERVABILITY_ROUNDS);
    for round in 0..rounds {
        for variant in (0..4).map(|i| (i + round) % 4) {
            reset(conn).await?;
            reset_history(conn).await?;
            match variant {
                0 => raw.push(raw_consume(conn).await?),
                1 => off.push(observed_consume(conn, None, false).await?),
                2 => on.push(observed_consume(conn, Some(&telemetry), false).await?),
                _ => {
                    history.push(observed_consume(conn, Some(&telemetry), true).await?);
                    let (messages, bytes) = history_stream_size(conn).await?;
                    history_messages.push(messages);
                    history_bytes.push(bytes);
                }
            }
        }
    }
    let cpu = |runs: &[cpu::Timed]| {
        let (client, server) = cpu::per_event_us(runs);
        json!({"client_us": client, "server_us": server})
    };
    let cpu_per_event = json!({"metrics_off": cpu(&off), "metrics_on": cpu(&on),
                               "history_on": cpu(&history), "raw": cpu(&raw)});
    let rate = |runs: Vec<cpu::Timed>| median(runs.iter().map(|r| r.per_s).collect());
    let (off, on, history, raw) = (rate(off), rate(on), rate(history), rate(raw));
    println!(
        "{}",
        json!({"bench": "observability", "events": super::consume_events(), "concurrency": CONCURRENCY,
               "rounds": rounds,
               "metrics_off_per_s": off.round(), "metrics_on_per_s": on.round(),
               "history_on_per_s": history.round(), "raw_consume_per_s": raw.round(),
               "metrics_cost": round2(1.0 - on / off),
               "history_cost": round2(1.0 - history / on),
               "cpu_per_event": cpu_per_event,
               "history_records_per_message": round2(
                   super::consume_events() as f64 / median(history_messages)),
               "history_stored_bytes_per_record": round2(
                   median(history_bytes) / super::consume_events() as f64)})
    );
    Ok(())
}
