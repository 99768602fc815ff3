//! `-- observability`: what metrics and run history cost a group's throughput.

use super::*;

/// Purges the run history, if there is one.
async fn reset_history(conn: &Connection) -> BoxResult<()> {
    if let Ok(stream) = conn
        .jetstream()
        .get_stream(format!("KV_{}", conveyor::history::HISTORY_BUCKET))
        .await
    {
        stream.purge().await?;
    }
    Ok(())
}

pub(super) async fn observability(conn: &Connection) -> BoxResult<()> {
    let (mut off, mut on, mut history, mut raw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let telemetry = Telemetry::new();
    // The order of the variants rotates from round to round, so none always runs first.
    for round in 0..OBSERVABILITY_ROUNDS {
        for variant in (0..4).map(|i| (i + round) % 4) {
            reset(conn).await?;
            reset_history(conn).await?;
            match variant {
                0 => raw.push(raw_consume(conn).await?.per_s),
                1 => off.push(observed_consume(conn, None, false).await?.per_s),
                2 => on.push(observed_consume(conn, Some(&telemetry), false).await?.per_s),
                _ => history.push(observed_consume(conn, Some(&telemetry), true).await?.per_s),
            }
        }
    }
    let (off, on, history, raw) = (median(off), median(on), median(history), median(raw));
    println!(
        "{}",
        json!({"bench": "observability", "events": CONSUME_N, "concurrency": CONCURRENCY,
               "rounds": OBSERVABILITY_ROUNDS,
               "metrics_off_per_s": off.round(), "metrics_on_per_s": on.round(),
               "history_on_per_s": history.round(), "raw_consume_per_s": raw.round(),
               "metrics_cost": round2(1.0 - on / off),
               "history_cost": round2(1.0 - history / on)})
    );
    Ok(())
}
