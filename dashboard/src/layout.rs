//! The page shell (navigation, stylesheet), the error page, and small formatting helpers.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

const STYLE: &str = include_str!("../assets/style.css");

/// The pages of the navigation: path and label.
const NAV: [(&str, &str); 6] = [
    ("/", "Overview"),
    ("/tenants", "Tenants"),
    ("/runs", "Runs"),
    ("/dead-letters", "Dead letters"),
    ("/schedules", "Schedules"),
    ("/events", "Events"),
];

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

/// A whole page: `active` is the navigation path it belongs to; `notice` a line shown on top
/// (what the last action did).
pub(crate) fn shell(title: &str, active: &str, notice: Option<&str>, body: Markup) -> Html<String> {
    shell_with(title, active, notice, None, body)
}

/// A page that reloads itself every `refresh` seconds (a running job's live progress).
pub(crate) fn shell_with(
    title: &str,
    active: &str,
    notice: Option<&str>,
    refresh: Option<u32>,
    body: Markup,
) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) " · Conveyor" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                header {
                    a.brand href="/" { "Conveyor" }
                    nav {
                        @for (path, label) in NAV {
                            a href=(path) class=[(path == active).then_some("active")] { (label) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(n) = notice { p.notice role="status" { (n) } }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A failed page or action, shown as a page with its status.
#[derive(Debug)]
pub(crate) struct PageError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = shell(
            "Something went wrong",
            "",
            None,
            html! { p.error { (self.message) } p { a href="/" { "Back to the overview" } } },
        );
        (self.status, body).into_response()
    }
}

pub(crate) type PageResult = Result<Html<String>, PageError>;

/// After an action: back to `to` with `notice` shown on top.
pub(crate) fn done(to: &str, notice: &str) -> Redirect {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}notice={}", encode(notice)))
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-12-01 10:00:03 UTC`.
pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `3 s ago`, `5 min ago`, from a consumer's `last_active` text (`2026-12-01 21:50:28.18 UTC`);
/// the text itself when it does not parse.
pub(crate) fn ago(text: &str) -> String {
    let parsed = chrono::NaiveDateTime::parse_from_str(
        text.trim_end_matches(" UTC"),
        "%Y-%m-%d %H:%M:%S%.f",
    );
    let Ok(t) = parsed else {
        return text.to_owned();
    };
    let secs = (chrono::Utc::now().naive_utc() - t).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// `1.2 MB`.
pub(crate) fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// `7d`, `3h`, `none` for 0.
pub(crate) fn age(secs: u64) -> String {
    match secs {
        0 => "none".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{s}s"),
    }
}

/// A hidden field with a value, in forms that carry a filter.
pub(crate) fn hidden(name: &str, value: Option<&str>) -> Markup {
    html! { @if let Some(v) = value { input type="hidden" name=(name) value=(v); } }
}
