//! Deleting dead letters on purpose, counted so that `conveyor status` does not report them as
//! letters the `DLQ` limits removed (see [`crate::retention`]).

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::stream::DeleteMessageErrorKind;

use super::{DeadLetterError, DeadLetterErrorKind};
use crate::connection::Connection;
use crate::error::Error;
use crate::topology::DLQ_STREAM;

/// Deletes the dead letters at `sequences` from the `DLQ` stream and returns how many were
/// deleted. A letter already gone is skipped; the first other failure stops the purge (the
/// letters deleted before it stay deleted and counted).
///
/// ```no_run
/// # async fn run(conn: conveyor::Connection) -> Result<(), conveyor::DeadLetterError> {
/// use futures::StreamExt;
/// let mut chosen = Vec::new();
/// let mut letters = std::pin::pin!(conveyor::dlq::letters(&conn, false));
/// while let Some(stored) = letters.next().await {
///     let stored = stored?;
///     if stored.letter.group == "billing" {
///         chosen.push(stored.sequence);
///     }
/// }
/// let deleted = conveyor::dlq::purge(&conn, chosen).await?;
/// println!("purged {deleted} dead letters");
/// # Ok(()) }
/// ```
pub async fn purge(
    conn: &Connection,
    sequences: impl IntoIterator<Item = u64>,
) -> Result<u64, DeadLetterError> {
    let stream = conn
        .jetstream()
        .get_stream_no_info(DLQ_STREAM)
        .await
        .map_err(|e| {
            Error::with_source(DeadLetterErrorKind::Read, "cannot open the DLQ stream", e)
        })?;
    let mut deleted = 0;
    let mut failed = None;
    for seq in sequences {
        match stream.delete_message(seq).await {
            Ok(_) => deleted += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    DeleteMessageErrorKind::JetStream(ref j)
                        if j.error_code() == ErrorCode::NO_MESSAGE_FOUND
                ) => {}
            Err(e) => {
                failed = Some(Error::with_source(
                    DeadLetterErrorKind::Delete,
                    format!("could not delete dead letter #{seq}"),
                    e,
                ));
                break;
            }
        }
    }
    count_deleted(conn, deleted).await;
    match failed {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

/// Counts `n` letters deleted on purpose; a count that cannot be stored is logged (the letters
/// are then reported as removed by the limits).
pub(super) async fn count_deleted(conn: &Connection, n: u64) {
    if let Err(e) = crate::retention::count_deleted_letters(conn, n).await {
        tracing::warn!(error = %e, deleted = n, "deleted dead letters not counted");
    }
}
