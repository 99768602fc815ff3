//! `/events`: the catalog, each type's JSON Schema and example, and "send a test event": a
//! form generated from the schema, checked against it before it is published for a tenant.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::layout::{PageError, PageResult, done, encode, shell};
use crate::server::App;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    domain: Option<String>,
    notice: Option<String>,
}

pub(crate) async fn page(Query(p): Query<Params>) -> PageResult {
    let domain = p.domain.as_deref().filter(|d| !d.is_empty());
    let mut domains: Vec<&str> = conveyor_schemas::catalog()
        .iter()
        .map(|e| e.domain())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let body = html! {
        form.filters method="get" action="/events" {
            label { "Domain" select name="domain" {
                option value="" { "every domain" }
                @for d in &domains { option value=(d) selected[domain == Some(*d)] { (d) } }
            } }
            button.secondary type="submit" { "Filter" }
        }
        table {
            thead { tr { th { "Type" } th { "Domain" } th { "Subject" } th { "Description" } } }
            tbody {
                @for e in conveyor_schemas::catalog().iter().filter(|e| domain.is_none_or(|d| d == e.domain())) {
                    tr {
                        td { a href={ "/events/" (e.event_type()) } { (e.event_type()) } }
                        td { (e.domain()) }
                        td { code { "events.<tenant>." (e.event_type()) } }
                        td { (e.description()) }
                    }
                }
            }
        }
    };
    Ok(shell("Events", "/events", p.notice.as_deref(), body))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TypeParams {
    notice: Option<String>,
}

fn entry(event_type: &str) -> Result<&'static conveyor_schemas::Entry, PageError> {
    conveyor_schemas::find(event_type).ok_or_else(|| {
        PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no event type {event_type:?} in the catalog"),
        )
    })
}

pub(crate) async fn type_page(
    State(app): State<Arc<App>>,
    Path(event_type): Path<String>,
    Query(p): Query<TypeParams>,
) -> PageResult {
    let e = entry(&event_type)?;
    Ok(render(&app, e, &e.example(), "", None, p.notice.as_deref()))
}

fn render(
    app: &App,
    e: &conveyor_schemas::Entry,
    values: &serde_json::Value,
    tenant: &str,
    problems: Option<&str>,
    notice: Option<&str>,
) -> axum::response::Html<String> {
    let schema = e.schema();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let body = html! {
        p { (e.description()) " · domain " (e.domain()) " · published on " code { "events.<tenant>." (e.event_type()) } }
        h2 { "Send a test event" }
        @if app.read_only { p.muted { "read-only: nothing can be sent from this dashboard" } }
        @else {
            @if let Some(problems) = problems { p.error role="alert" { (problems) } }
            form.stack method="post" action={ "/events/" (e.event_type()) "/send" } {
                label { "Tenant *" input type="text" name="tenant" value=(tenant) required placeholder="acme"; }
                (crate::form::fields(&schema, values))
                button type="submit" { "Check and publish" }
            }
        }
        h2 { "Example" }
        pre { (pretty(&e.example())) }
        h2 { "JSON Schema" }
        pre { (pretty(&schema)) }
    };
    shell(e.event_type(), "/events", notice, body)
}

pub(crate) async fn send_form(
    State(app): State<Arc<App>>,
    Path(event_type): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let e = entry(&event_type)?;
    let schema = e.schema();
    let tenant = form
        .get("tenant")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let data = match crate::form::read(&schema, &form) {
        Ok(d) => d,
        Err(why) => {
            return Ok((
                axum::http::StatusCode::BAD_REQUEST,
                render(&app, e, &e.example(), &tenant, Some(&why), None),
            )
                .into_response());
        }
    };
    let refuse = |why: String| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            render(&app, e, &data, &tenant, Some(&why), None),
        )
            .into_response()
    };
    let tenant_id = match conveyor::TenantId::parse(&tenant) {
        Ok(t) => t,
        Err(err) => return Ok(refuse(format!("tenant: {err}"))),
    };
    match send(&app, e.event_type(), &tenant_id, &data).await {
        Ok(p) => Ok(done(
            &format!("/events/{}", encode(e.event_type())),
            &format!(
                "published {} for {tenant} (EVENTS #{})",
                p.id, p.stream_sequence
            ),
        )
        .into_response()),
        Err(SendError::Invalid(why)) => Ok(refuse(why)),
        Err(SendError::Failed(e)) => Err(e),
    }
}

/// Why a test event was not sent.
pub(crate) enum SendError {
    /// The data breaks the schema: what, by path.
    Invalid(String),
    Failed(PageError),
}

/// Checks `data` against the type's schema, then publishes it for `tenant`.
pub(crate) async fn send(
    app: &App,
    event_type: &str,
    tenant: &conveyor::TenantId,
    data: &serde_json::Value,
) -> Result<conveyor::Published, SendError> {
    conveyor_schemas::validate(event_type, data).map_err(|e| SendError::Invalid(e.to_string()))?;
    conveyor::Publisher::new(&app.conn)
        .with_source("conveyor-dashboard")
        .publish_untyped(
            tenant.clone(),
            event_type,
            data,
            conveyor::EventOptions::default(),
        )
        .await
        .map_err(|e| SendError::Failed(PageError::unavailable(e)))
}
