//! `/schedules`: every schedule with its cron, zone, tenants, next fire time (in its zone and
//! UTC) and last tick, and "trigger now" for one tenant.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::Redirect;
use maud::html;
use serde::Deserialize;

use crate::layout::{PageError, PageResult, done, encode, shell, time};
use crate::server::App;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    notice: Option<String>,
}

pub(crate) async fn page(State(app): State<Arc<App>>, Query(p): Query<Params>) -> PageResult {
    let status = conveyor_scheduler::status::read(&app.conn, &app.schedules)
        .await
        .map_err(|e| PageError::unavailable(e.to_string()))?;
    let body = html! {
        p {
            "Leader: "
            @match &status.leader {
                Some(l) => { strong { (l.node) } span.muted { " since " (time(l.since)) } }
                None => { span.error { "none: no scheduler holds the lease, no tick fires" } }
            }
        }
        table {
            thead { tr { th { "Schedule" } th { "Cron" } th { "Zone" } th { "Event" } th { "Tenants" } th { "Next fire" } th { "Last tick" } th { "Trigger now" } } }
            tbody {
                @for (s, spec) in status.schedules.iter().zip(&app.schedules) {
                    tr {
                        td { (s.name) } td { code { (s.cron) } } td { (s.timezone) } td { (s.event_type) }
                        td { @if spec.tenant_registry { span.muted { "every tenant of the registry" } } @else { (spec.tenants.join(", ")) } }
                        td { @match &s.next { Some((local, utc)) => { (local) br; span.muted { (time(*utc)) } } None => { "-" } } }
                        td.muted { (s.last_fired.map_or("never".to_owned(), time)) }
                        td {
                            @if app.read_only { span.muted { "read-only" } }
                            @else {
                                form.inline method="post" action={ "/schedules/" (encode(&s.name)) "/trigger" } {
                                    @if spec.tenants.is_empty() {
                                        input type="text" name="tenant" placeholder="tenant" size="10" required;
                                    } @else {
                                        select name="tenant" { @for t in &spec.tenants { option value=(t) { (t) } } }
                                    }
                                    " " button type="submit" { "Trigger" }
                                }
                            }
                        }
                    }
                }
                @if app.schedules.is_empty() { tr { td colspan="8" .muted { "No schedules given (conveyor dashboard --schedules <file>, the scheduler's file)." } } }
            }
        }
    };
    Ok(shell("Schedules", "/schedules", p.notice.as_deref(), body))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TriggerForm {
    tenant: String,
}

pub(crate) async fn trigger_form(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Form(f): Form<TriggerForm>,
) -> Result<Redirect, PageError> {
    let published = trigger(&app, &name, &f.tenant).await?;
    Ok(done(
        "/schedules",
        &format!(
            "triggered {name} for {}: event {} (EVENTS #{})",
            f.tenant, published.id, published.stream_sequence
        ),
    ))
}

/// Publishes one tick of schedule `name` for `tenant` now.
pub(crate) async fn trigger(
    app: &App,
    name: &str,
    tenant: &str,
) -> Result<conveyor::Published, PageError> {
    let schedule = app
        .schedules
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            PageError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no schedule {name:?}"),
            )
        })?;
    let tenant =
        conveyor::TenantId::parse(tenant.trim()).map_err(|e| PageError::bad(e.to_string()))?;
    conveyor_scheduler::trigger_now(&app.conn, schedule, &tenant)
        .await
        .map_err(|e| PageError::unavailable(e.to_string()))
}
