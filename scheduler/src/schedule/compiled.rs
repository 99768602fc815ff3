//! A validated schedule: its ticks in its zone, across daylight-saving changes.

use std::fmt;

use chrono::{DateTime, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use conveyor::TenantId;

use super::Schedule;

/// A validated schedule, ready to compute ticks.
#[derive(Clone)]
pub struct CompiledSchedule {
    /// The declaration it came from.
    pub spec: Schedule,
    pub(super) cron: cron::Schedule,
    pub(super) tz: Tz,
    pub(super) tenants: Vec<TenantId>,
    pub(super) fixed_hour: bool,
}

impl fmt::Debug for CompiledSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchedule")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl CompiledSchedule {
    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The listed tenants (empty when the registry is used).
    pub fn tenants(&self) -> &[TenantId] {
        &self.tenants
    }

    /// The first tick strictly after `after`.
    ///
    /// DST: ticks are wall-clock times in the schedule's zone. On the spring-forward day a wall
    /// time that does not exist (02:30 when clocks jump from 02:00 to 03:00) is skipped that
    /// day. On the fall-back day a wall time that happens twice fires once, at its first
    /// occurrence, when the expression names fixed hours; with `*` (or `*/n`) in the hour field
    /// each real hour fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The cron iterator walks wall-clock time: started inside a repeated hour it would not
        // see that hour's second occurrence. Near an offset change, start before it and keep
        // the first tick after `after`.
        let margin = chrono::Duration::hours(2);
        let offset = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        let near_change =
            offset(after - margin) != offset(after) || offset(after) != offset(after + margin);
        let start = if near_change { after - margin } else { after };
        self.cron
            .after(&start.with_timezone(&self.tz))
            .filter(|t| t.with_timezone(&Utc) > after)
            .find(|t| !self.second_occurrence(t))
            .map(|t| t.with_timezone(&Utc))
    }

    /// Ticks in `(after, until]`, oldest first, at most `limit` of the most recent.
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> (Vec<DateTime<Utc>>, usize) {
        let mut ticks = std::collections::VecDeque::new();
        let mut dropped = 0;
        let mut cursor = after;
        while let Some(t) = self.next_after(cursor) {
            if t > until {
                break;
            }
            ticks.push_back(t);
            if ticks.len() > limit {
                ticks.pop_front();
                dropped += 1;
            }
            cursor = t;
        }
        (ticks.into_iter().collect(), dropped)
    }

    /// True for the later of two instants sharing one wall-clock time (fall-back day) when the
    /// expression has fixed hours.
    fn second_occurrence(&self, t: &DateTime<Tz>) -> bool {
        if !self.fixed_hour {
            return false;
        }
        match self.tz.from_local_datetime(&t.naive_local()) {
            LocalResult::Ambiguous(first, _) => first != *t,
            _ => false,
        }
    }
}
