//! `/`: every group's backlog, in-flight, worker processes and dead letters, the worker
//! processes, the streams' size and limits, the scheduler's leader, and charts of the last hour.

use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;

use crate::charts::sparkline;
use crate::layout::{PageError, PageResult, age, bytes, shell, time};
use crate::server::App;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    /// Only groups whose name contains this.
    group: Option<String>,
    notice: Option<String>,
}

pub(crate) async fn page(
    State(app): State<std::sync::Arc<App>>,
    Query(p): Query<Params>,
) -> PageResult {
    let o = conveyor::status::overview(&app.conn)
        .await
        .map_err(PageError::unavailable)?;
    let samples = app.samples.all();
    let wanted = p.group.as_deref().unwrap_or("");
    let groups: Vec<_> = o
        .groups
        .iter()
        .filter(|g| g.group.contains(wanted))
        .collect();
    let dead_series: Vec<_> = samples
        .iter()
        .map(|s| (s.at, s.dead_letters as f64))
        .collect();
    let events = o.streams.iter().find(|s| s.stream == "EVENTS");
    let dlq = o.streams.iter().find(|s| s.stream == "DLQ");
    let body = html! {
        div.cards {
            div.card { div.muted { "Events stored" } div.value { (events.map_or(0, |s| s.messages)) } }
            div.card {
                div.muted { "Dead letters" }
                div.value { a href="/dead-letters" { (dlq.map_or(0, |s| s.messages)) } }
                (sparkline("dead letters", &dead_series))
            }
            div.card { div.muted { "Waiting in schedules" } div.value { (o.scheduled.map_or("?".to_owned(), |n| n.to_string())) } }
            div.card {
                div.muted { "Scheduler leader" }
                @match &o.scheduler_leader {
                    Some(l) => { div.value { (l.node) } div.muted { "since " (l.since.map_or("?".into(), time)) } }
                    None => { div.value.error { "none" } }
                }
            }
        }
        h2 { "Groups" }
        form.filters method="get" action="/" {
            label { "Group" input type="search" name="group" value=(wanted) placeholder="name contains"; }
            button.secondary type="submit" { "Filter" }
        }
        table {
            thead { tr {
                th { "Group" } th.num { "Backlog" } th.num { "In flight" } th.num { "Redelivered" }
                th.num title="worker processes bound to every partition consumer of the group, of those running it" { "Processes" } th.num { "Dead letters" }
                th.num { "Removed unhandled" } th.num { "Handled/min" } th.num { "Failed/min" }
                th.num { "p50 / p95" } th { "Last active" }
            } }
            tbody {
                @for g in &groups {
                    @let recent = app.activity.group(&g.group, 5);
                    @let timed = app.activity.group(&g.group, 15);
                    tr {
                        td { (g.group) @if g.paused { " " span.state.paused { "paused" } } }
                        td.num { (g.pending) }
                        td.num { (g.ack_pending) }
                        td.num { (g.redelivered) }
                        td.num title={ (g.waiting) " waiting pulls on " (g.consumers) " consumers" } {
                            @match (g.bound_processes, g.processes) {
                                (Some(b), Some(n)) if b == n => { (n) }
                                (Some(b), Some(n)) => { (b) " of " (n) " bound" }
                                _ => { span.muted { "?" } }
                            }
                        }
                        td.num { a href={ "/dead-letters?group=" (crate::layout::encode(&g.group)) } { (g.dead_letters) } }
                        td.num {
                            @match (g.removed, g.removed_at_least) {
                                (Some(n), Some(true)) => { "≥" (n) }
                                (Some(n), _) => { (n) }
                                (None, _) => { span.muted { "?" } }
                            }
                        }
                        @if recent.handled + recent.failed + timed.handled + timed.failed == 0 {
                            td.num.muted colspan="3" title="no run recorded in the last 15 minutes (run history off, or idle)" { "-" }
                        } @else {
                            td.num { (recent.handled_per_min) }
                            td.num { (recent.failed_per_min) }
                            td.num { (timed.p50_ms.map_or("-".into(), |v| format!("{v} ms"))) " / " (timed.p95_ms.map_or("-".into(), |v| format!("{v} ms"))) }
                        }
                        td.muted title=[g.last_active.as_deref()] { (g.last_active.as_deref().map_or("-".to_owned(), crate::layout::ago)) }

                    }
                }
                @if groups.is_empty() { tr { td colspan="11" .muted { "No group has consumers yet: start a worker." } } }
            }
        }
        p.muted {
            "Handled and failed per minute are averaged over the last 5 minutes, run times over the last 15, from the run history ("
            code { "Group::history" } ")"
            @if !app.activity.following() { ": no group records history yet" }
            "."
        }
        h2 { "Worker processes" }
        table {
            thead { tr { th { "Group" } th { "Host" } th.num { "Pid" } th.num { "Slots" } th { "Bound" } th { "Started" } th { "Version" } } }
            tbody {
                @for w in o.workers.iter().filter(|w| w.group.contains(wanted)) {
                    tr {
                        td { (w.group) } td { (w.host) } td.num { (w.pid) } td.num { (w.concurrency) }
                        td { @if w.bound { span.state.succeeded { "bound" } } @else { span.state.paused { "binding" } } }
                        td.muted { (time(w.started_at)) } td.muted { (w.version) }
                    }
                }
                @if o.workers.is_empty() { tr { td colspan="7" .muted { "No worker process announced itself in the last 30 s." } } }
            }
        }
        h2 { "Last hour" }
        div.cards {
            @for g in &groups {
                @let backlog: Vec<_> = samples.iter().map(|s| (s.at, s.groups.get(&g.group).map_or(0.0, |(p, _)| *p as f64))).collect();
                div.card {
                    strong { (g.group) }
                    div.muted { "backlog" }
                    (sparkline(&format!("{} backlog", g.group), &backlog))
                    div.muted { "handled per minute" }
                    (sparkline(&format!("{} handled per minute", g.group), &app.activity.handled_series(&g.group)))
                }
            }
        }
        h2 { "Streams" }
        table {
            thead { tr { th { "Stream" } th.num { "Messages" } th.num { "Size" } th.num { "Age limit" } th.num { "Size limit" } } }
            tbody {
                @for s in &o.streams {
                    tr {
                        td { (s.stream) } td.num { (s.messages) } td.num { (bytes(s.bytes)) }
                        td.num { (age(s.max_age_secs)) }
                        td.num { @if s.max_bytes < 0 { "none" } @else { (bytes(s.max_bytes as u64)) } }
                    }
                }
            }
        }
        @if let Some(n) = o.dead_letters_removed.filter(|n| *n > 0) {
            p.error { (n) " dead letters were removed by the DLQ stream's limits." }
        }
    };
    Ok(shell("Overview", "/", p.notice.as_deref(), body))
}
