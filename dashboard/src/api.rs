//! The JSON API under the pages (`/api/...`, described by `/api/openapi.json`): the same
//! operations through the same library functions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::layout::PageError;
use crate::server::App;

const OPENAPI: &str = include_str!("../openapi.json");

pub(crate) fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/overview", get(overview))
        .route("/api/tenants", get(tenants))
        .route("/api/tenants/{tenant}/pause", post(pause))
        .route("/api/tenants/{tenant}/resume", post(resume))
        .route("/api/runs", get(runs))
        .route("/api/runs/{event_id}", get(run))
        .route("/api/runs/{event_id}/cancel", post(cancel))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/dead-letters/groups", get(dead_letter_groups))
        .route("/api/dead-letters/replay", post(replay_matching))
        .route("/api/dead-letters/purge", post(purge))
        .route("/api/dead-letters/{seq}", get(dead_letter))
        .route("/api/dead-letters/{seq}/replay", post(replay))
        .route("/api/schedules", get(schedules))
        .route("/api/schedules/{name}/trigger", post(trigger))
        .route("/api/events", get(events))
        .route("/api/events/{event_type}", get(event))
        .route("/api/events/{event_type}/send", post(send))
}

/// An API failure: `{"error": {"status", "message"}}`.
struct ApiError(StatusCode, String);

impl From<PageError> for ApiError {
    fn from(e: PageError) -> Self {
        Self(e.status, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"status": self.0.as_u16(), "message": self.1}})),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn overview(State(app): State<Arc<App>>) -> ApiResult {
    to_json(
        &conveyor::status::overview(&app.conn)
            .await
            .map_err(unavailable)?,
    )
}

#[derive(Debug, Default, Deserialize)]
struct TenantSearch {
    tenant: Option<String>,
}

async fn tenants(State(app): State<Arc<App>>, Query(q): Query<TenantSearch>) -> ApiResult {
    to_json(&crate::tenants::tenants(&app, q.tenant.as_deref().unwrap_or("")).await?)
}

#[derive(Debug, Default, Deserialize)]
struct PauseBody {
    #[serde(default)]
    reason: String,
    group: Option<String>,
}

async fn pause(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    body: Option<Json<PauseBody>>,
) -> ApiResult {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let t = conveyor::TenantId::parse(&tenant).map_err(bad)?;
    to_json(
        &conveyor::pause::pause(&app.conn, &t, b.group.as_deref(), &b.reason)
            .await
            .map_err(bad)?,
    )
}

#[derive(Debug, Default, Deserialize)]
struct GroupBody {
    group: Option<String>,
}

async fn resume(
    State(app): State<Arc<App>>,
    Path(tenant): Path<String>,
    body: Option<Json<GroupBody>>,
) -> ApiResult {
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let t = conveyor::TenantId::parse(&tenant).map_err(bad)?;
    let n = conveyor::pause::resume(&app.conn, &t, b.group.as_deref())
        .await
        .map_err(bad)?;
    Ok(Json(json!({"tenant": tenant, "resumed": n})))
}

async fn runs(State(app): State<Arc<App>>, Query(p): Query<crate::runs::Params>) -> ApiResult {
    let query = crate::runs::query_of(&p)?;
    to_json(
        &conveyor::history::find(&app.conn, &query, 200)
            .await
            .map_err(unavailable)?,
    )
}

async fn run(State(app): State<Arc<App>>, Path(event_id): Path<String>) -> ApiResult {
    to_json(
        &conveyor::history::runs_of_event(&app.conn, &event_id)
            .await
            .map_err(unavailable)?,
    )
}

#[derive(Debug, Deserialize)]
struct CancelBody {
    tenant: String,
    group: Option<String>,
    #[serde(default)]
    reason: String,
}

async fn cancel(
    State(app): State<Arc<App>>,
    Path(event_id): Path<String>,
    Json(b): Json<CancelBody>,
) -> ApiResult {
    let t = conveyor::TenantId::parse(&b.tenant).map_err(bad)?;
    let c = conveyor::control::cancel(&app.conn, &t, &event_id, b.group.as_deref(), &b.reason)
        .await
        .map_err(bad)?;
    Ok(Json(
        json!({"cancelled": event_id, "tenant": b.tenant, "group": b.group, "cancellation": format!("{c:?}")}),
    ))
}

fn letter_json(s: &conveyor::dlq::StoredLetter) -> Value {
    let l = &s.letter;
    json!({"seq": s.sequence, "group": l.group, "subject": l.original_subject, "kind": l.kind.as_str(),
           "attempts": l.attempts, "error": l.error, "fingerprint": conveyor::dlq::fingerprint(&l.error),
           "failed_at": l.failed_at.to_rfc3339()})
}

async fn dead_letters(
    State(app): State<Arc<App>>,
    Query(p): Query<crate::dead_letters::Params>,
) -> ApiResult {
    let letters = conveyor::dlq::list(&app.conn, &p.filter())
        .await
        .map_err(unavailable)?;
    Ok(Json(Value::Array(
        letters.iter().rev().map(letter_json).collect(),
    )))
}

async fn dead_letter_groups(
    State(app): State<Arc<App>>,
    Query(p): Query<crate::dead_letters::Params>,
) -> ApiResult {
    let letters = conveyor::dlq::list(&app.conn, &p.filter())
        .await
        .map_err(unavailable)?;
    to_json(&crate::dead_letters::grouped(&letters))
}

async fn dead_letter(State(app): State<Arc<App>>, Path(seq): Path<u64>) -> ApiResult {
    let (stored, headers) = conveyor::dlq::get(&app.conn, seq)
        .await
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    let mut out = letter_json(&stored);
    let headers: HashMap<String, Vec<String>> = headers
        .iter()
        .map(|(k, vs)| {
            (
                k.to_string(),
                vs.iter().map(|v| v.as_str().to_owned()).collect(),
            )
        })
        .collect();
    out["headers"] = json!(headers);
    out["body"] = match serde_json::from_slice::<Value>(&stored.letter.body) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(&stored.letter.body).into_owned()),
    };
    Ok(Json(out))
}

async fn replay(State(app): State<Arc<App>>, Path(seq): Path<u64>) -> ApiResult {
    let (stored, _) = conveyor::dlq::get(&app.conn, seq)
        .await
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    let new_seq = conveyor::dlq::replay(&app.conn, &stored)
        .await
        .map_err(bad)?;
    Ok(Json(
        json!({"replayed": seq, "group": stored.letter.group, "events_sequence": new_seq}),
    ))
}

async fn replay_matching(
    State(app): State<Arc<App>>,
    Json(f): Json<conveyor::dlq::Filter>,
) -> ApiResult {
    let n = conveyor::dlq::replay_matching(&app.conn, &f)
        .await
        .map_err(bad)?;
    Ok(Json(json!({"replayed": n})))
}

#[derive(Debug, Deserialize)]
struct PurgeBody {
    #[serde(flatten)]
    filter: conveyor::dlq::Filter,
    /// Must be true: a purge deletes for good.
    #[serde(default)]
    confirm: bool,
}

async fn purge(State(app): State<Arc<App>>, Json(b): Json<PurgeBody>) -> ApiResult {
    let chosen = conveyor::dlq::list(&app.conn, &b.filter)
        .await
        .map_err(unavailable)?;
    if !b.confirm {
        return Err(bad(format!(
            "{} dead letters match; send \"confirm\": true to delete them",
            chosen.len()
        )));
    }
    let n = conveyor::dlq::purge(
        &app.conn,
        chosen.iter().map(|s| s.sequence).collect::<Vec<u64>>(),
    )
    .await
    .map_err(bad)?;
    Ok(Json(json!({"purged": n})))
}

async fn schedules(State(app): State<Arc<App>>) -> ApiResult {
    let status = conveyor_scheduler::status::read(&app.conn, &app.schedules)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let rows: Vec<Value> = status
        .schedules
        .iter()
        .zip(&app.schedules)
        .map(|(s, spec)| {
            json!({"name": s.name, "cron": s.cron, "timezone": s.timezone, "event_type": s.event_type,
                   "tenants": spec.tenants, "tenant_registry": spec.tenant_registry,
                   "next_local": s.next.as_ref().map(|n| n.0.clone()), "next_utc": s.next.as_ref().map(|n| n.1.to_rfc3339()),
                   "last_fired": s.last_fired.map(|t| t.to_rfc3339())})
        })
        .collect();
    Ok(Json(
        json!({"leader": status.leader.map(|l| json!({"node": l.node, "since": l.since.to_rfc3339()})), "schedules": rows}),
    ))
}

#[derive(Debug, Deserialize)]
struct TriggerBody {
    tenant: String,
}

async fn trigger(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Json(b): Json<TriggerBody>,
) -> ApiResult {
    let p = crate::schedules::trigger(&app, &name, &b.tenant).await?;
    Ok(Json(
        json!({"schedule": name, "tenant": b.tenant, "id": p.id, "sequence": p.stream_sequence}),
    ))
}

async fn events() -> ApiResult {
    let rows: Vec<Value> = conveyor_schemas::catalog()
        .iter()
        .map(|e| json!({"type": e.event_type(), "domain": e.domain(), "description": e.description()}))
        .collect();
    Ok(Json(Value::Array(rows)))
}

async fn event(Path(event_type): Path<String>) -> ApiResult {
    let e = conveyor_schemas::find(&event_type).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no event type {event_type:?}"),
        )
    })?;
    Ok(Json(
        json!({"type": e.event_type(), "domain": e.domain(), "description": e.description(), "schema": e.schema(), "example": e.example()}),
    ))
}

#[derive(Debug, Deserialize)]
struct SendBody {
    tenant: String,
    data: Value,
}

async fn send(
    State(app): State<Arc<App>>,
    Path(event_type): Path<String>,
    Json(b): Json<SendBody>,
) -> ApiResult {
    let t = conveyor::TenantId::parse(&b.tenant).map_err(bad)?;
    match crate::events::send(&app, &event_type, &t, &b.data).await {
        Ok(p) => Ok(Json(
            json!({"id": p.id, "sequence": p.stream_sequence, "subject": p.subject}),
        )),
        Err(crate::events::SendError::Invalid(why)) => Err(bad(why)),
        Err(crate::events::SendError::Failed(e)) => Err(e.into()),
    }
}
