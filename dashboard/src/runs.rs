//! `/runs`: runs by group, tenant, type, state and time (groups with run history), one event's
//! timeline of attempts with live progress, and cancel.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use conveyor::history::{RunQuery, RunRecord, RunState};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{PageError, PageResult, done, encode, shell, shell_with, time};
use crate::server::App;

/// Rows of the runs list.
const LIMIT: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    event_id: Option<String>,
    group: Option<String>,
    tenant: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    state: Option<String>,
    /// Only runs changed in the last this many minutes.
    minutes: Option<i64>,
    notice: Option<String>,
}

fn some(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

pub(crate) fn state_of(text: &str) -> Option<RunState> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

pub(crate) fn query_of(p: &Params) -> Result<RunQuery, PageError> {
    let state = match some(&p.state) {
        Some(s) => {
            Some(state_of(&s).ok_or_else(|| PageError::bad(format!("unknown state {s:?}")))?)
        }
        None => None,
    };
    Ok(RunQuery {
        group: some(&p.group),
        tenant: some(&p.tenant),
        event_type: some(&p.event_type),
        state,
        since: p
            .minutes
            .filter(|m| *m > 0)
            .map(|m| chrono::Utc::now() - chrono::TimeDelta::minutes(m)),
    })
}

pub(crate) async fn page(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
) -> Result<Response, PageError> {
    if let Some(id) = some(&p.event_id) {
        return Ok(Redirect::to(&format!("/runs/{}", encode(&id))).into_response());
    }
    let query = query_of(&p)?;
    let runs = match conveyor::history::find(&app.conn, &query, LIMIT).await {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == conveyor::history::HistoryErrorKind::NoHistory => Err(e.to_string()),
        Err(e) => return Err(PageError::unavailable(e)),
    };
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let states = [
        "queued",
        "running",
        "succeeded",
        "retrying",
        "dead_lettered",
        "cancelled",
        "handed_back",
    ];
    let body = html! {
        form.filters method="get" action="/runs" {
            label { "Event id" input type="search" name="event_id" placeholder="find one event"; }
            button.secondary type="submit" { "Open" }
        }
        form.filters method="get" action="/runs" {
            label { "Group" input type="text" name="group" value=(v(&p.group)); }
            label { "Tenant" input type="text" name="tenant" value=(v(&p.tenant)); }
            label { "Type" input type="text" name="type" value=(v(&p.event_type)); }
            label { "State" select name="state" {
                option value="" { "any" }
                @for s in states { option value=(s) selected[p.state.as_deref() == Some(s)] { (s) } }
            } }
            label { "Changed in the last (min)" input type="number" name="minutes" min="1" value=[p.minutes]; }
            button.secondary type="submit" { "Filter" }
        }
        @match &runs {
            Err(why) => { p.muted { (why) } }
            Ok(runs) => {
                table {
                    thead { tr { th { "Event" } th { "Group" } th { "Tenant" } th { "Type" } th { "State" } th.num { "Attempt" } th.num { "Duration" } th { "Updated" } th { "Error" } } }
                    tbody {
                        @for r in runs { (row(r)) }
                        @if runs.is_empty() { tr { td colspan="9" .muted { "No run matches." } } }
                    }
                }
                p.muted { "The latest attempt of each event, newest first (at most " (LIMIT) "). Runs are recorded by groups with run history on." }
            }
        }
    };
    Ok(shell("Runs", "/runs", p.notice.as_deref(), body).into_response())
}

fn row(r: &RunRecord) -> Markup {
    html! {
        tr {
            td { a href={ "/runs/" (encode(&r.event_id)) } { (r.event_id) } }
            td { (r.group) } td { (r.tenant) } td { (r.event_type) }
            td { span class={ "state " (r.state.as_str()) } { (r.state.as_str()) } }
            td.num { (r.attempt) "/" (r.max_attempts) }
            td.num { @if let Some(ms) = r.duration_ms { (ms) " ms" } }
            td.muted { (r.updated_at().map(time).unwrap_or_default()) }
            td.error { (r.error.as_deref().unwrap_or("")) }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunParams {
    notice: Option<String>,
}

pub(crate) async fn run_page(
    State(app): State<Arc<App>>,
    Path(event_id): Path<String>,
    Query(p): Query<RunParams>,
) -> PageResult {
    let runs = match conveyor::history::runs_of_event(&app.conn, &event_id).await {
        Ok(r) => r,
        Err(e) if e.kind() == conveyor::history::HistoryErrorKind::NoHistory => Vec::new(),
        Err(e) => return Err(PageError::unavailable(e)),
    };
    let running = runs.iter().any(|r| {
        matches!(
            r.state,
            RunState::Running | RunState::Queued | RunState::Retrying
        )
    });
    let tenant = runs.first().map(|r| r.tenant.clone());
    let body = html! {
        @if runs.is_empty() {
            p.muted { "No recorded run of " code { (event_id) } " (only groups with run history record runs)." }
        }
        @for r in &runs {
            h2 { (r.group) ", attempt " (r.attempt) " of " (r.max_attempts) " " span class={ "state " (r.state.as_str()) } { (r.state.as_str()) } }
            p.muted {
                (r.event_type) " for " (r.tenant)
                @if let Some(ms) = r.duration_ms { " · ran " (ms) " ms" }
                @if let Some(t) = r.retry_at { " · next attempt at " (time(t)) }
                @if r.sla_breached { " · " span.error { "slower than expected" } }
                @if let Some(tr) = &r.trace_id { " · trace " code { (tr) } }
            }
            @if let Some(progress) = &r.progress {
                div {
                    progress max="100" value=(progress.percent.min(100)) { (progress.percent) "%" }
                    " " span.muted { (progress.percent) "% " (progress.message) }
                }
            }
            ol.timeline {
                @for t in &r.transitions {
                    li {
                        span class={ "state " (t.state.as_str()) } { (t.state.as_str()) } " " span.muted { (time(t.at)) }
                        @if let Some(e) = &t.error { div.error { (e) } }
                    }
                }
            }
        }
        @if let Some(tenant) = &tenant {
            @if !app.read_only && running {
                h2 { "Cancel" }
                form.stack method="post" action={ "/runs/" (encode(&event_id)) "/cancel" } {
                    input type="hidden" name="tenant" value=(tenant);
                    label { "Group (empty: every group)" input type="text" name="group"; }
                    label { "Reason" input type="text" name="reason"; }
                    button.danger type="submit" { "Cancel this event" }
                }
            }
        }
    };
    // A run in progress refreshes itself: its progress and state are live.
    Ok(shell_with(
        &format!("Run {event_id}"),
        "/runs",
        p.notice.as_deref(),
        running.then_some(2),
        body,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CancelForm {
    tenant: String,
    group: Option<String>,
    #[serde(default)]
    reason: String,
}

pub(crate) async fn cancel_form(
    State(app): State<Arc<App>>,
    Path(event_id): Path<String>,
    Form(f): Form<CancelForm>,
) -> Result<Redirect, PageError> {
    let tenant = conveyor::TenantId::parse(&f.tenant).map_err(|e| PageError::bad(e.to_string()))?;
    let group = f.group.filter(|g| !g.trim().is_empty());
    conveyor::control::cancel(&app.conn, &tenant, &event_id, group.as_deref(), &f.reason)
        .await
        .map_err(|e| PageError::bad(e.to_string()))?;
    Ok(done(
        &format!("/runs/{}", encode(&event_id)),
        "cancelled: a running handler is told to stop, a queued or delayed one will not run",
    ))
}
