//! What a run of the bench covers, from the environment: its events and rounds, and which
//! side (Conveyor, raw async-nats) runs.

use conveyor::Connection;

use super::{BoxResult, CONSUME_N, reset};

/// The events of a consume run: `CONVEYOR_BENCH_EVENTS`, else [`CONSUME_N`].
pub(super) fn consume_events() -> usize {
    std::env::var("CONVEYOR_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CONSUME_N)
}

/// The rounds of a bench whose default is `default`: `CONVEYOR_BENCH_ROUNDS` when set.
pub(super) fn rounds(default: usize) -> usize {
    std::env::var("CONVEYOR_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Whether the side `name` (`conveyor` or `raw`) runs: `CONVEYOR_BENCH_SIDE` set to one of
/// them runs only that one (to profile a side on its own); unset, both run.
fn runs_side(name: &str) -> bool {
    std::env::var("CONVEYOR_BENCH_SIDE").map_or(true, |side| side == name)
}

/// `rounds` alternating runs of `raw` and `conveyor` (those `CONVEYOR_BENCH_SIDE` selects),
/// each on a reset stream: (Conveyor's results, raw's).
pub(super) async fn alternate<T>(
    conn: &Connection,
    rounds: usize,
    raw: impl AsyncFn(&Connection) -> BoxResult<T>,
    conveyor: impl AsyncFn(&Connection) -> BoxResult<T>,
) -> BoxResult<(Vec<T>, Vec<T>)> {
    let (mut c, mut r) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        if runs_side("raw") {
            reset(conn).await?;
            r.push(raw(conn).await?);
        }
        if runs_side("conveyor") {
            reset(conn).await?;
            c.push(conveyor(conn).await?);
        }
    }
    Ok((c, r))
}
