//! Finding runs: the latest attempt of each event matching a group, tenant, type, state and
//! time, newest first (the dashboard's Runs page).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::read::{Scan, newest_runs};
use super::{HistoryError, RunRecord, RunState};
use crate::connection::Connection;

/// Which runs: every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// The group.
    pub group: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
    /// The event type.
    pub event_type: Option<String>,
    /// The latest attempt's state.
    pub state: Option<RunState>,
    /// Changed at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// How many bytes of run records [`find`] reads at most, newest first, as stored (compressed,
/// about 86 bytes a record): about 190 000 records.
pub const FIND_MAX_BYTES: usize = 16 * 1024 * 1024;

impl RunQuery {
    /// True when `r`, the latest attempt of its event, is one of the runs asked for.
    fn matches_latest(&self, r: &RunRecord) -> bool {
        self.state.is_none_or(|s| s == r.state)
            && self
                .since
                .is_none_or(|since| r.updated_at().is_some_and(|u| u >= since))
    }
}

/// The latest attempt of every event matching `query`, newest first, at most `limit`.
///
/// The history is read back from its newest records until `limit` runs are found, the
/// query's `since` is passed, or [`FIND_MAX_BYTES`] were read; the group narrows what is read
/// from the stream, the other fields are checked on each record.
pub async fn find(
    conn: &Connection,
    query: &RunQuery,
    limit: usize,
) -> Result<Vec<RunRecord>, HistoryError> {
    let scan = Scan {
        group: query
            .group
            .as_deref()
            .filter(|g| !g.is_empty() && crate::subject::escape_token(g) == *g),
        event_id: None,
        since: query.since,
    };
    let keep = |r: &RunRecord| {
        query.group.as_ref().is_none_or(|g| *g == r.group)
            && query.tenant.as_ref().is_none_or(|t| *t == r.tenant)
            && query.event_type.as_ref().is_none_or(|t| *t == r.event_type)
    };
    newest_runs(conn, scan, keep, |r| query.matches_latest(r), limit).await
}
