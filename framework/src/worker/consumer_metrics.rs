//! The groups' consumer counts (backlog, in flight, redelivered), read into their metrics.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::connection::Connection;
use crate::telemetry::GroupMetrics;

/// Reads each group's consumer counts (summed over its partition consumers) into the metrics
/// every `every`, until `shutdown`.
pub(super) async fn poll_consumers(
    conn: Connection,
    groups: Vec<(String, GroupMetrics)>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        for (name, m) in &groups {
            match crate::partition::group_counts(&conn, name).await {
                Ok(c) => {
                    m.pending.set(i64::try_from(c.pending).unwrap_or(i64::MAX));
                    m.ack_pending
                        .set(i64::try_from(c.ack_pending).unwrap_or(i64::MAX));
                    m.redelivered
                        .set(i64::try_from(c.redelivered).unwrap_or(i64::MAX));
                }
                Err(e) => tracing::debug!(group = %name, error = %e, "cannot read consumer info"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
