//! Who may look and who may act: the token (when one is set), same-origin checks on every
//! action, the read-only mode, and headers that keep pages from being framed or run scripts
//! from elsewhere.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// The cookie a `?token=` visit sets.
const COOKIE: &str = "conveyor_dashboard";

/// The token and mode every request is checked against.
#[derive(Clone)]
pub(crate) struct Guard {
    token: Option<Arc<str>>,
    read_only: bool,
}

impl Guard {
    pub(crate) fn new(token: Option<String>, read_only: bool) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()).map(Into::into),
            read_only,
        }
    }
}

/// Compares in constant time, so the token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn refused(status: StatusCode, message: &str) -> Response {
    let mut r = (status, message.to_owned()).into_response();
    secure(&mut r);
    r
}

fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

pub(crate) async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if let Some(token) = &guard.token {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_owned)
            })
            .next();
        let query = request.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("token=").map(str::to_owned))
        });
        let authorized = bearer.is_some_and(|b| same(b, token))
            || cookie.as_deref().is_some_and(|c| same(c, token));
        if !authorized {
            if request.method() == Method::GET
                && let Some(q) = query
                && same(&q, token)
            {
                // The token leaves the address bar at once; the cookie carries it from here.
                let mut r = Redirect::to(request.uri().path()).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
                )) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                secure(&mut r);
                return r;
            }
            return refused(
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its token: open it once as /?token=<token>, or send Authorization: Bearer <token>",
            );
        }
    }
    let acting = !matches!(*request.method(), Method::GET | Method::HEAD);
    if acting {
        if guard.read_only {
            return refused(
                StatusCode::FORBIDDEN,
                "this dashboard is read-only (--read-only): nothing can be changed from it",
            );
        }
        if !same_origin(&request) {
            return refused(
                StatusCode::FORBIDDEN,
                "cross-site request refused: actions are accepted from the dashboard's own pages only",
            );
        }
    }
    let mut response = next.run(request).await;
    secure(&mut response);
    response
}

/// True unless the browser says the request comes from another site: an `Origin` naming
/// another host, or `Sec-Fetch-Site` other than `same-origin` / `none`. Clients that are no
/// browsers (curl, scripts) send neither.
fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        return host.is_some_and(|h| h == origin_host);
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}
