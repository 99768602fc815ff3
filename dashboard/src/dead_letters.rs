//! `/dead-letters`: grouped by group, type, error kind and error fingerprint, filtered in the
//! URL; one letter's headers and body; replay of one or of every matching letter (to the group
//! that failed); purge with a confirmation.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::Redirect;
use conveyor::dlq::{Filter, StoredLetter, fingerprint};
use maud::html;
use serde::{Deserialize, Serialize};

use crate::layout::{PageError, PageResult, done, encode, hidden, shell, time};
use crate::server::App;

/// Letters listed one by one (the groups count them all).
const LIST: usize = 100;

/// The filter of the page and its forms.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct Params {
    group: Option<String>,
    tenant: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    kind: Option<String>,
    fingerprint: Option<String>,
    notice: Option<String>,
    /// The purge form's confirmation.
    confirm: Option<String>,
}

impl Params {
    pub(crate) fn filter(&self) -> Filter {
        let f = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Filter {
            group: f(&self.group),
            tenant: f(&self.tenant),
            event_type: f(&self.event_type),
            kind: f(&self.kind),
            fingerprint: f(&self.fingerprint),
        }
    }

    fn query(&self) -> String {
        let f = self.filter();
        [
            ("group", f.group),
            ("tenant", f.tenant),
            ("type", f.event_type),
            ("kind", f.kind),
            ("fingerprint", f.fingerprint),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(&v))))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// Letters that failed the same way: same group, type, kind and error fingerprint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LetterGroup {
    pub(crate) group: String,
    pub(crate) event_type: String,
    pub(crate) kind: String,
    pub(crate) fingerprint: String,
    /// The newest letter's error text.
    pub(crate) example_error: String,
    pub(crate) count: u64,
    pub(crate) tenants: Vec<String>,
    pub(crate) last_failed_at: chrono::DateTime<chrono::Utc>,
}

pub(crate) fn grouped(letters: &[StoredLetter]) -> Vec<LetterGroup> {
    let mut groups: BTreeMap<(String, String, String, String), LetterGroup> = BTreeMap::new();
    for s in letters {
        let l = &s.letter;
        let (tenant, ty) =
            conveyor::subject::split_event_subject(&l.original_subject).unwrap_or(("", ""));
        let fp = fingerprint(&l.error);
        let key = (
            l.group.clone(),
            ty.to_owned(),
            l.kind.as_str().to_owned(),
            fp.clone(),
        );
        let g = groups.entry(key).or_insert_with(|| LetterGroup {
            group: l.group.clone(),
            event_type: ty.to_owned(),
            kind: l.kind.as_str().to_owned(),
            fingerprint: fp,
            example_error: l.error.clone(),
            count: 0,
            tenants: Vec::new(),
            last_failed_at: l.failed_at,
        });
        g.count += 1;
        if l.failed_at >= g.last_failed_at {
            g.last_failed_at = l.failed_at;
            g.example_error.clone_from(&l.error);
        }
        if !g.tenants.iter().any(|t| t == tenant) {
            g.tenants.push(tenant.to_owned());
        }
    }
    let mut out: Vec<LetterGroup> = groups.into_values().collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_failed_at.cmp(&a.last_failed_at))
    });
    out
}

pub(crate) async fn page(State(app): State<Arc<App>>, Query(p): Query<Params>) -> PageResult {
    let filter = p.filter();
    let letters = conveyor::dlq::list(&app.conn, &filter)
        .await
        .map_err(PageError::unavailable)?;
    let groups = grouped(&letters);
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let kinds = [
        "handler",
        "decode",
        "unknown-type",
        "tenant-mismatch",
        "type-mismatch",
        "timeout",
        "panic",
        "max-deliveries",
    ];
    let body = html! {
        form.filters method="get" action="/dead-letters" {
            label { "Group" input type="text" name="group" value=(v(&p.group)); }
            label { "Tenant" input type="text" name="tenant" value=(v(&p.tenant)); }
            label { "Type" input type="text" name="type" value=(v(&p.event_type)); }
            label { "Kind" select name="kind" {
                option value="" { "any" }
                @for k in kinds { option value=(k) selected[p.kind.as_deref() == Some(k)] { (k) } }
            } }
            label { "Fingerprint" input type="text" name="fingerprint" size="9" value=(v(&p.fingerprint)); }
            button.secondary type="submit" { "Filter" }
            a href="/dead-letters" { "clear" }
        }
        h2 { (letters.len()) " dead letters, " (groups.len()) " ways of failing" }
        table {
            thead { tr { th.num { "Letters" } th { "Group" } th { "Type" } th { "Kind" } th { "Fingerprint" } th { "Error (newest)" } th { "Tenants" } th { "Last" } } }
            tbody {
                @for g in &groups {
                    tr {
                        td.num { (g.count) }
                        td { (g.group) } td { (g.event_type) } td { (g.kind) }
                        td { a href={ "/dead-letters?group=" (encode(&g.group)) "&type=" (encode(&g.event_type)) "&kind=" (encode(&g.kind)) "&fingerprint=" (g.fingerprint) } { code { (g.fingerprint) } } }
                        td.error { (g.example_error) }
                        td { (g.tenants.join(", ")) }
                        td.muted { (time(g.last_failed_at)) }
                    }
                }
                @if groups.is_empty() { tr { td colspan="8" .muted { "No dead letter matches." } } }
            }
        }
        @if !letters.is_empty() && !app.read_only {
            div.cards {
                form.stack method="post" action="/dead-letters/replay" {
                    (hidden("group", filter.group.as_deref())) (hidden("tenant", filter.tenant.as_deref()))
                    (hidden("type", filter.event_type.as_deref())) (hidden("kind", filter.kind.as_deref()))
                    (hidden("fingerprint", filter.fingerprint.as_deref()))
                    span { "Replay the " (letters.len()) " letters shown to the groups that failed them." }
                    button type="submit" { "Replay " (letters.len()) }
                }
                form.stack method="post" action="/dead-letters/purge" {
                    (hidden("group", filter.group.as_deref())) (hidden("tenant", filter.tenant.as_deref()))
                    (hidden("type", filter.event_type.as_deref())) (hidden("kind", filter.kind.as_deref()))
                    (hidden("fingerprint", filter.fingerprint.as_deref()))
                    label { span { input type="checkbox" name="confirm" value="yes" required; " delete these " (letters.len()) " letters for good" } }
                    button.danger type="submit" { "Purge " (letters.len()) }
                }
            }
        }
        h2 { "Newest letters" }
        table {
            thead { tr { th.num { "#" } th { "Group" } th { "Subject" } th { "Kind" } th.num { "Attempts" } th { "Failed" } th { "Error" } } }
            tbody {
                @for s in letters.iter().rev().take(LIST) {
                    tr {
                        td.num { a href={ "/dead-letters/" (s.sequence) } { (s.sequence) } }
                        td { (s.letter.group) } td { (s.letter.original_subject) } td { (s.letter.kind.as_str()) }
                        td.num { (s.letter.attempts) } td.muted { (time(s.letter.failed_at)) }
                        td.error { (s.letter.error) }
                    }
                }
            }
        }
    };
    Ok(shell(
        "Dead letters",
        "/dead-letters",
        p.notice.as_deref(),
        body,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LetterParams {
    notice: Option<String>,
}

pub(crate) async fn letter_page(
    State(app): State<Arc<App>>,
    Path(seq): Path<u64>,
    Query(p): Query<LetterParams>,
) -> PageResult {
    let (stored, headers) = conveyor::dlq::get(&app.conn, seq)
        .await
        .map_err(|e| PageError::new(axum::http::StatusCode::NOT_FOUND, e.to_string()))?;
    let l = &stored.letter;
    // The body is tenant input: shown as text, pretty-printed when it is JSON.
    let body_text = serde_json::from_slice::<serde_json::Value>(&l.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&l.body).into_owned());
    let target = stored.replay_subject().ok();
    let body = html! {
        table {
            tbody {
                tr { th { "Group" } td { (l.group) } }
                tr { th { "Original subject" } td { (l.original_subject) " (EVENTS #" (l.stream_sequence) ")" } }
                tr { th { "Kind" } td { (l.kind.as_str()) } }
                tr { th { "Attempts" } td { (l.attempts) } }
                tr { th { "Failed at" } td { (time(l.failed_at)) } }
                tr { th { "Error" } td.error { (l.error) } }
                tr { th { "Fingerprint" } td { a href={ "/dead-letters?fingerprint=" (fingerprint(&l.error)) } { code { (fingerprint(&l.error)) } } } }
                @if let Some(n) = l.body_truncated_from { tr { th { "Body" } td.error { "truncated from " (n) " bytes" } } }
            }
        }
        h2 { "Headers" }
        table {
            tbody {
                @for (name, values) in headers.iter() {
                    @for value in values { tr { th { (name.to_string()) } td { code { (value.as_str()) } } } }
                }
            }
        }
        h2 { "Body" }
        pre { (body_text) }
        @if !app.read_only {
            @if let Some(target) = &target {
                form.stack method="post" action={ "/dead-letters/" (seq) "/replay" } {
                    span { "Re-publish to " code { (target) } " for group " (l.group) "; the letter is removed once it is stored." }
                    button type="submit" { "Replay" }
                }
            }
        }
    };
    Ok(shell(
        &format!("Dead letter #{seq}"),
        "/dead-letters",
        p.notice.as_deref(),
        body,
    ))
}

pub(crate) async fn replay_form(
    State(app): State<Arc<App>>,
    Path(seq): Path<u64>,
) -> Result<Redirect, PageError> {
    let (stored, _) = conveyor::dlq::get(&app.conn, seq)
        .await
        .map_err(|e| PageError::new(axum::http::StatusCode::NOT_FOUND, e.to_string()))?;
    let new_seq = conveyor::dlq::replay(&app.conn, &stored)
        .await
        .map_err(|e| PageError::bad(e.to_string()))?;
    Ok(done(
        "/dead-letters",
        &format!(
            "replayed #{seq} to group {} (EVENTS #{new_seq})",
            stored.letter.group
        ),
    ))
}

pub(crate) async fn replay_matching_form(
    State(app): State<Arc<App>>,
    Form(p): Form<Params>,
) -> Result<Redirect, PageError> {
    let n = conveyor::dlq::replay_matching(&app.conn, &p.filter())
        .await
        .map_err(|e| PageError::bad(e.to_string()))?;
    Ok(done(
        &format!("/dead-letters?{}", p.query()),
        &format!("replayed {n} dead letters"),
    ))
}

pub(crate) async fn purge_form(
    State(app): State<Arc<App>>,
    Form(p): Form<Params>,
) -> Result<Redirect, PageError> {
    if p.confirm.as_deref() != Some("yes") {
        return Err(PageError::bad("tick the confirmation to purge"));
    }
    let chosen = conveyor::dlq::list(&app.conn, &p.filter())
        .await
        .map_err(PageError::unavailable)?;
    let n = conveyor::dlq::purge(
        &app.conn,
        chosen.iter().map(|s| s.sequence).collect::<Vec<u64>>(),
    )
    .await
    .map_err(|e| PageError::bad(e.to_string()))?;
    Ok(done(
        &format!("/dead-letters?{}", p.query()),
        &format!("purged {n} dead letters"),
    ))
}
