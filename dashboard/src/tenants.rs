//! `/tenants`: every tenant with its stored events, backlog per group, running attempts, last
//! hour, dead letters and parked events, paused or not, with pause and resume.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::Redirect;
use futures::TryStreamExt;
use maud::html;
use serde::{Deserialize, Serialize};

use crate::layout::{PageError, PageResult, done, encode, shell, time};
use crate::server::App;

/// One tenant's line.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TenantRow {
    pub(crate) tenant: String,
    /// Events stored in `EVENTS` for it (handled or not: the stream keeps events for every
    /// group until its limits remove them).
    pub(crate) stored: u64,
    pub(crate) dead_letters: u64,
    /// Its pauses: the group (`None`: every group) and why.
    pub(crate) paused: Vec<conveyor::pause::Pause>,
    /// Its events parked while paused.
    pub(crate) parked: u64,
    /// Handled and failed in the last hour, in groups with run history.
    pub(crate) last_hour: crate::activity::Summary,
    /// Its attempts running now, in handlers that wait (from the run history).
    pub(crate) running: u64,
    /// Its events each group has not been delivered yet (groups without any left out).
    pub(crate) backlog: Vec<GroupBacklog>,
}

/// A tenant's backlog in one group.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupBacklog {
    pub(crate) group: String,
    /// `None`: not counted (too many tenants with a backlog; search to narrow).
    pub(crate) pending: Option<u64>,
}

impl TenantRow {
    /// The backlog summed over the groups, and whether every group was counted.
    fn backlog_total(&self) -> (u64, bool) {
        self.backlog.iter().fold((0, true), |(sum, all), b| {
            (sum + b.pending.unwrap_or(0), all && b.pending.is_some())
        })
    }
}

/// Every tenant known from the stream's subjects, the dead letters, the pauses and the tenant
/// registry, whose name contains `search`.
pub(crate) async fn tenants(app: &App, search: &str) -> Result<Vec<TenantRow>, PageError> {
    let mut rows: BTreeMap<String, TenantRow> = BTreeMap::new();
    fn row<'a>(
        rows: &'a mut BTreeMap<String, TenantRow>,
        search: &str,
        t: &str,
    ) -> Option<&'a mut TenantRow> {
        if !t.contains(search) {
            return None;
        }
        Some(rows.entry(t.to_owned()).or_insert_with(|| TenantRow {
            tenant: t.to_owned(),
            ..TenantRow::default()
        }))
    }
    let js = app.conn.jetstream();
    let stream = js
        .get_stream(conveyor::topology::EVENTS_STREAM)
        .await
        .map_err(PageError::unavailable)?;
    let mut subjects = stream
        .info_with_subjects("events.>")
        .await
        .map_err(PageError::unavailable)?;
    while let Some((subject, count)) = subjects.try_next().await.map_err(PageError::unavailable)? {
        if let Some(tenant) = subject.split('.').nth(1)
            && let Some(r) = row(&mut rows, search, tenant)
        {
            r.stored += count as u64;
        }
    }
    let letters = conveyor::dlq::list(&app.conn, &conveyor::dlq::Filter::default())
        .await
        .map_err(PageError::unavailable)?;
    for l in &letters {
        if let Some((tenant, _)) =
            conveyor::subject::split_event_subject(&l.letter.original_subject)
            && let Some(r) = row(&mut rows, search, tenant)
        {
            r.dead_letters += 1;
        }
    }
    for p in conveyor::pause::paused(&app.conn)
        .await
        .map_err(PageError::unavailable)?
    {
        if let Some(r) = row(&mut rows, search, &p.tenant.clone()) {
            r.paused.push(p);
        }
    }
    if let Ok(registry) = js.get_key_value(conveyor::topology::TENANTS_BUCKET).await
        && let Ok(keys) = registry.keys().await
    {
        let keys: Vec<String> = keys.try_collect().await.unwrap_or_default();
        for k in keys {
            row(&mut rows, search, &k);
        }
    }
    for r in rows.values_mut() {
        r.last_hour = app.activity.tenant(&r.tenant, 60);
        r.running = app.activity.running_of_tenant(&r.tenant);
    }
    let ids: Vec<conveyor::TenantId> = rows
        .keys()
        .filter_map(|t| conveyor::TenantId::parse(t).ok())
        .collect();
    let backlogs = conveyor::status::tenant_backlogs(&app.conn, &ids)
        .await
        .map_err(PageError::unavailable)?;
    for b in backlogs {
        if let Some(r) = rows.get_mut(&b.tenant) {
            r.backlog.push(GroupBacklog {
                group: b.group,
                pending: b.pending,
            });
        }
    }
    for r in rows.values_mut().filter(|r| !r.paused.is_empty()) {
        if let Ok(t) = conveyor::TenantId::parse(&r.tenant) {
            r.parked = conveyor::pause::parked_count(&app.conn, &t)
                .await
                .unwrap_or(0);
        }
    }
    Ok(rows.into_values().collect())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    tenant: Option<String>,
    notice: Option<String>,
}

pub(crate) async fn page(State(app): State<Arc<App>>, Query(p): Query<Params>) -> PageResult {
    let search = p.tenant.as_deref().unwrap_or("");
    let rows = tenants(&app, search).await?;
    let body = html! {
        form.filters method="get" action="/tenants" {
            label { "Tenant" input type="search" name="tenant" value=(search) placeholder="id contains"; }
            button.secondary type="submit" { "Search" }
        }
        table {
            thead { tr { th { "Tenant" } th.num { "Events stored" } th.num { "Backlog" } th.num { "Running" } th.num { "Handled (1 h)" } th.num { "Failed (1 h)" } th.num { "Dead letters" } th { "State" } th.num { "Parked" } th { "" } } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.tenant) }
                        td.num { (r.stored) }
                        td.num {
                            @let (total, all) = r.backlog_total();
                            (total) @if !all { "+" }
                            @for b in &r.backlog {
                                br; span.muted { (b.group) " " @match b.pending { Some(n) => (n), None => "?" } }
                            }
                        }
                        td.num { a href={ "/runs?tenant=" (encode(&r.tenant)) "&state=running" } { (r.running) } }
                        td.num { (r.last_hour.handled) }
                        td.num { a href={ "/runs?tenant=" (encode(&r.tenant)) "&state=retrying" } { (r.last_hour.failed) } }
                        td.num { a href={ "/dead-letters?tenant=" (encode(&r.tenant)) } { (r.dead_letters) } }
                        td {
                            @if r.paused.is_empty() { span.state.succeeded { "running" } }
                            @for pause in &r.paused {
                                span.state.paused { "paused for " (pause.group.as_deref().unwrap_or("every group")) }
                                " " span.muted { "since " (time(pause.paused_at)) @if !pause.reason.is_empty() { ": " (pause.reason) } }
                                br;
                            }
                        }
                        td.num { (r.parked) }
                        td {
                            @if app.read_only { span.muted { "read-only" } }
                            @else if r.paused.is_empty() {
                                form.inline method="post" action={ "/tenants/" (encode(&r.tenant)) "/pause" } {
                                    input type="text" name="reason" placeholder="reason" size="14";
                                    " " button.danger type="submit" { "Pause" }
                                }
                            } @else {
                                form.inline method="post" action={ "/tenants/" (encode(&r.tenant)) "/resume" } {
                                    button type="submit" { "Resume" }
                                }
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="10" .muted { "No tenant found." } } }
            }
        }
        p.muted { "Backlog: the tenant's events each group has not been delivered yet (counted by the server, for up to " (conveyor::status::MAX_BACKLOG_LOOKUPS) " tenant and group pairs; \"?\": not counted, search to narrow)." }
        p.muted { "A paused tenant's events are kept (in PARKED) and run when it is resumed, oldest first; other tenants are not affected." }
    };
    Ok(shell("Tenants", "/tenants", p.notice.as_deref(), body))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PauseForm {
    #[serde(default)]
    reason: String,
    group: Option<String>,
}

fn tenant_id(t: &str) -> Result<conveyor::TenantId, PageError> {
    conveyor::TenantId::parse(t).map_err(|e| PageError::bad(e.to_string()))
}

pub(crate) async fn pause_form(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    Form(f): Form<PauseForm>,
) -> Result<Redirect, PageError> {
    let t = tenant_id(&tenant)?;
    let group = f.group.filter(|g| !g.is_empty());
    conveyor::pause::pause(&app.conn, &t, group.as_deref(), &f.reason)
        .await
        .map_err(PageError::unavailable)?;
    Ok(done("/tenants", &format!("{tenant} paused")))
}

pub(crate) async fn resume_form(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
) -> Result<Redirect, PageError> {
    let t = tenant_id(&tenant)?;
    let n = conveyor::pause::resume(&app.conn, &t, None)
        .await
        .map_err(PageError::unavailable)?;
    Ok(done(
        "/tenants",
        &format!("{tenant} resumed: {n} parked events run again"),
    ))
}
