//! `conveyor groups`: pause and resume a whole group.

use std::time::Duration;

use clap::Subcommand;
use conveyor::Connection;
use conveyor::pause;

use crate::Fail;

/// Pause and resume whole groups.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// Pause a group: its events stay in EVENTS and are not delivered until it is resumed (or
    /// the pause ends); the workers stay bound. Kept by the server across restarts.
    Pause {
        /// The group.
        group: String,
        /// How long (e.g. 30m, 2h; default: until resumed).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Resume a paused group: its events are delivered again, in order.
    Resume {
        /// The group.
        group: String,
    },
}

pub(crate) async fn run(conn: &Connection, cmd: GroupsCommand) -> Result<(), Fail> {
    match cmd {
        GroupsCommand::Pause { group, duration } => {
            let until = match duration {
                Some(d) => Some(
                    chrono::Utc::now()
                        + chrono::Duration::from_std(d).map_err(|e| format!("--for: {e}"))?,
                ),
                None => None,
            };
            let until = pause::pause_group(conn, &group, until)
                .await
                .map_err(|e| e.to_string())?;
            match duration {
                Some(_) => println!("group {group} paused until {}", until.to_rfc3339()),
                None => println!("group {group} paused until resumed"),
            }
            Ok(())
        }
        GroupsCommand::Resume { group } => {
            pause::resume_group(conn, &group)
                .await
                .map_err(|e| e.to_string())?;
            println!("group {group} resumed");
            Ok(())
        }
    }
}
