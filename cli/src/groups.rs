//! `conveyor groups`: pause and resume a whole group; list and drop the event types its
//! consumers filter.

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
    /// List the event types the group's consumers filter (every version's, during a rolling
    /// deploy).
    Types {
        /// The group.
        group: String,
    },
    /// Stop delivering an event type to the group: takes it out of the group's consumers. For a
    /// type no version of the group handles any more (a process that still handles it adds it
    /// back when it next starts); its pending events are then not delivered to the group.
    DropType {
        /// The group.
        group: String,
        /// The event type.
        event_type: String,
        /// Confirm; without it nothing changes.
        #[arg(long)]
        yes: bool,
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
        GroupsCommand::Types { group } => {
            for t in conveyor::filters::event_types(conn, &group)
                .await
                .map_err(|e| e.to_string())?
            {
                println!("{t}");
            }
            Ok(())
        }
        GroupsCommand::DropType {
            group,
            event_type,
            yes,
        } => {
            if !yes {
                return Err(format!(
                    "this stops delivering {event_type} to group {group}, and its pending events of that type are not delivered to it; add --yes to drop it"
                ));
            }
            let dropped = conveyor::filters::drop_event_type(conn, &group, &event_type)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "dropped {event_type} from {} consumers of group {group}; {} pending events of the type will not be delivered to it",
                dropped.consumers, dropped.pending_skipped
            );
            Ok(())
        }
    }
}
