//! Finding runs: the latest attempt of each event matching a group, tenant, type, state and
//! time, newest first (the dashboard's Runs page).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{HistoryError, RunRecord, RunState, read};
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

/// The latest attempt of every event matching `query`, newest first, at most `limit`.
///
/// The group and tenant narrow what is read from the bucket; the other fields are checked on
/// each record.
pub async fn find(
    conn: &Connection,
    query: &RunQuery,
    limit: usize,
) -> Result<Vec<RunRecord>, HistoryError> {
    let token = |v: &Option<String>| match v.as_deref() {
        Some(v) if crate::subject::escape_token(v) == v && !v.is_empty() => v.to_owned(),
        _ => "*".to_owned(),
    };
    let filter = format!("{}.{}.*.*", token(&query.group), token(&query.tenant));
    let mut latest: std::collections::HashMap<(String, String, String), RunRecord> =
        std::collections::HashMap::new();
    for run in read(conn, &filter).await? {
        let key = (run.group.clone(), run.tenant.clone(), run.event_id.clone());
        match latest.get(&key) {
            Some(seen) if seen.attempt >= run.attempt => {}
            _ => {
                latest.insert(key, run);
            }
        }
    }
    let mut runs: Vec<RunRecord> = latest
        .into_values()
        .filter(|r| {
            query.group.as_ref().is_none_or(|g| *g == r.group)
                && query.tenant.as_ref().is_none_or(|t| *t == r.tenant)
                && query.event_type.as_ref().is_none_or(|t| *t == r.event_type)
                && query.state.is_none_or(|s| s == r.state)
                && query
                    .since
                    .is_none_or(|since| r.updated_at().is_some_and(|u| u >= since))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.updated_at()));
    runs.truncate(limit);
    Ok(runs)
}
