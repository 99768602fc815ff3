//! `conveyor dlq`: list, show, replay and purge dead letters.

use clap::{Args, Subcommand};
use conveyor::topology::DLQ_STREAM;
use conveyor::{Connection, DeadLetter};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::Fail;

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct Filter {
    /// Only this group.
    #[arg(long)]
    group: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this event type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only this error kind (handler, decode, unknown-type, tenant-mismatch, type-mismatch, timeout, panic, max-deliveries).
    #[arg(long)]
    kind: Option<String>,
}

impl Filter {
    fn selection(&self) -> conveyor::dlq::Filter {
        conveyor::dlq::Filter {
            group: self.group.clone(),
            tenant: self.tenant.clone(),
            event_type: self.event_type.clone(),
            kind: self.kind.clone(),
            fingerprint: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Rows per page.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter: headers and body.
    Show {
        /// Its sequence in the DLQ stream.
        seq: u64,
    },
    /// Re-publish dead letters to their original subjects; each is removed from the DLQ only
    /// after the re-publish is acknowledged.
    Replay {
        /// One dead letter, by DLQ sequence.
        seq: Option<u64>,
        /// Every dead letter matching the filter (or all, without one).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: Filter,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete dead letters matching the filter (all without one).
    Purge {
        #[command(flatten)]
        filter: Filter,
        /// Confirm; without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// The dead letters matching `filter` with their DLQ sequences, oldest first, without bodies.
async fn chosen(conn: &Connection, filter: &Filter) -> Result<Vec<(u64, DeadLetter)>, Fail> {
    let letters = conveyor::dlq::list(conn, &filter.selection())
        .await
        .map_err(|e| dlq_error(&e))?;
    Ok(letters
        .into_iter()
        .map(|s| (s.sequence, s.letter))
        .collect())
}

/// The message `seq` of the `DLQ` stream.
pub(crate) async fn dlq_message(
    conn: &Connection,
    seq: u64,
) -> Result<async_nats::jetstream::message::StreamMessage, Fail> {
    let stream = conn
        .jetstream()
        .get_stream(DLQ_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .direct_get(seq)
        .await
        .map_err(|_| format!("no dead letter #{seq}; see `conveyor dlq list`"))
}

pub(crate) fn dlq_error(e: &conveyor::DeadLetterError) -> String {
    match e.kind() {
        conveyor::DeadLetterErrorKind::Read => {
            format!("{e}; run `conveyor setup` if DLQ is missing")
        }
        _ => e.to_string(),
    }
}

pub(crate) fn row(seq: u64, d: &DeadLetter) -> Value {
    json!({
        "seq": seq, "group": d.group, "subject": d.original_subject, "kind": d.kind.as_str(),
        "attempts": d.attempts, "error": d.error, "failed_at": d.failed_at.to_rfc3339(),
    })
}

pub(crate) async fn dlq(conn: &Connection, cmd: DlqCommand) -> Result<(), Fail> {
    match cmd {
        DlqCommand::List {
            filter,
            limit,
            page,
            json,
        } => {
            let mut rows = chosen(conn, &filter).await?;
            rows.reverse();
            let total = rows.len();
            let start = limit.saturating_mul(page.max(1) - 1);
            let shown: Vec<_> = rows.into_iter().skip(start).take(limit).collect();
            if json {
                for (seq, d) in &shown {
                    println!("{}", row(*seq, d));
                }
                return Ok(());
            }
            println!(
                "{:>6}  {:<16} {:<40} {:<15} {:>8}  error",
                "seq", "group", "subject", "kind", "attempts"
            );
            for (seq, d) in &shown {
                println!(
                    "{seq:>6}  {:<16} {:<40} {:<15} {:>8}  {}",
                    d.group,
                    d.original_subject,
                    d.kind.as_str(),
                    d.attempts,
                    d.error
                );
            }
            println!("{} of {total} dead letters (page {page})", shown.len());
            Ok(())
        }
        DlqCommand::Show { seq } => {
            let m = dlq_message(conn, seq).await?;
            println!("DLQ #{seq} on {}", m.subject);
            for (name, values) in m.headers.iter() {
                for v in values {
                    println!("{name}: {v}");
                }
            }
            println!();
            println!("{}", String::from_utf8_lossy(&m.payload));
            Ok(())
        }
        DlqCommand::Replay {
            seq,
            all,
            filter,
            dry_run,
        } => {
            if seq.is_some() == all {
                return Err("give one DLQ sequence, or --all (with optional filters)".into());
            }
            let mut replayed = 0usize;
            let mut matched = 0usize;
            let mut replay_one = async |stored: conveyor::dlq::StoredLetter| -> Result<(), Fail> {
                matched += 1;
                let target = stored.replay_subject().map_err(|e| e.to_string())?;
                if dry_run {
                    println!(
                        "would replay #{} to {target} for group {}",
                        stored.sequence, stored.letter.group
                    );
                    return Ok(());
                }
                conveyor::dlq::replay(conn, &stored)
                    .await
                    .map_err(|e| e.to_string())?;
                replayed += 1;
                if replayed.is_multiple_of(1000) {
                    eprint!("\rreplayed {replayed}");
                }
                Ok(())
            };
            match seq {
                Some(s) => {
                    let m = dlq_message(conn, s).await?;
                    let letter = DeadLetter::from_parts(&m.headers, m.payload.clone())
                        .map_err(|e| format!("DLQ #{s} is not a dead letter: {e}"))?;
                    replay_one(conveyor::dlq::StoredLetter {
                        sequence: s,
                        subject: m.subject.to_string(),
                        letter,
                    })
                    .await?;
                }
                None => {
                    let selection = filter.selection();
                    // Streamed: each letter is replayed as it is read, none kept in memory.
                    let mut letters = std::pin::pin!(conveyor::dlq::letters(conn, true));
                    while let Some(stored) = letters.next().await {
                        let stored = stored.map_err(|e| dlq_error(&e))?;
                        if selection.matches(&stored.letter) {
                            replay_one(stored).await?;
                        }
                    }
                }
            }
            if replayed >= 1000 {
                eprintln!();
            }
            if dry_run {
                println!("dry run: {matched} dead letters would be replayed");
            } else {
                println!("replayed {replayed} dead letters");
            }
            Ok(())
        }
        DlqCommand::Purge { filter, yes } => {
            let chosen = chosen(conn, &filter).await?;
            if !yes {
                return Err(format!(
                    "{} dead letters match; add --yes to delete them",
                    chosen.len()
                ));
            }
            let deleted = conveyor::dlq::purge(conn, chosen.iter().map(|(s, _)| *s))
                .await
                .map_err(|e| dlq_error(&e))?;
            println!("purged {deleted} dead letters");
            Ok(())
        }
    }
}
