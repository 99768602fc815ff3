//! Readable lines of what the dev system does: events published, handled, retried,
//! dead-lettered, cancelled, cron ticks.
//!
//! Handler outcomes and ticks come from the worker's and the scheduler's own tracing events
//! (through [`DevLines`], a `tracing` layer); published events and dead letters from NATS.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::Local;
use conveyor::Connection;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Prints one line: time, topic, text.
pub fn say(topic: &str, text: &str) {
    println!("{}  {topic:<9} {text}", Local::now().format("%H:%M:%S%.3f"));
}

#[derive(Debug, Clone, Default)]
struct Fields(BTreeMap<&'static str, String>);

impl Fields {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

/// A `tracing` layer that prints the worker's and the scheduler's outcomes as lines.
#[derive(Debug, Default)]
pub struct DevLines;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for DevLines {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "conveyor.delivery" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut e = Fields::default();
        event.record(&mut e);
        let span = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|s| s.extensions().get::<Fields>().cloned())
        });
        let d = span.unwrap_or_default();
        let who = || {
            format!(
                "{:<8} {:<30} {}",
                d.get("tenant"),
                d.get("event_type"),
                d.get("group")
            )
        };
        let line = match e.get("message") {
            "handled" => Some(("ok", format!("{} (attempt {})", who(), d.get("attempt")))),
            "attempt failed; will retry" => Some((
                "retry",
                format!(
                    "{} attempt {} failed: {}; next in {}",
                    who(),
                    d.get("attempt"),
                    e.get("error"),
                    e.get("retry_in")
                ),
            )),
            "dead-lettered" => Some((
                "DEAD",
                format!(
                    "{} {}: {} -> {}",
                    who(),
                    e.get("kind"),
                    e.get("error"),
                    e.get("dlq_subject")
                ),
            )),
            "cancelled while running" | "cancelled before it started; skipped" => {
                Some(("cancel", format!("{} {}", who(), e.get("message"))))
            }
            "run over its expected duration" => Some((
                "slow",
                format!("{} over its expected {}", who(), e.get("expected")),
            )),
            "tick fired" | "tick fired late" => Some((
                "tick",
                format!(
                    "{:<8} {:<30} scheduled {} (+{} ms)",
                    e.get("tenant"),
                    e.get("schedule"),
                    e.get("tick"),
                    e.get("late_ms")
                ),
            )),
            "leader elected" | "leadership lost" => {
                Some(("scheduler", e.get("message").to_owned()))
            }
            _ => None,
        };
        if let Some((topic, text)) = line {
            say(topic, &text);
        }
    }
}

/// Installs [`DevLines`] (worker outcomes at debug, scheduler ticks at info) and a log layer for
/// errors (`RUST_LOG` overrides it).
pub fn install() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let outcomes = Targets::new()
        .with_target("conveyor::worker", LevelFilter::DEBUG)
        .with_target("conveyor_scheduler", LevelFilter::INFO);
    // Outcomes are lines already; other errors are logged (`RUST_LOG` chooses instead).
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let errors = from_env.is_none().then(|| {
        Targets::new()
            .with_default(LevelFilter::ERROR)
            .with_target("conveyor::worker", LevelFilter::OFF)
            .with_target("conveyor_scheduler", LevelFilter::OFF)
    });
    let _ = tracing_subscriber::registry()
        .with(DevLines.with_filter(outcomes))
        .with(from_env.map(|f| tracing_subscriber::fmt::layer().with_filter(f)))
        .with(errors.map(|f| tracing_subscriber::fmt::layer().with_filter(f)))
        .try_init();
}

/// Prints every published event, dead letter and progress report until `stop`.
pub async fn watch(conn: Connection, stop: CancellationToken) {
    let client = conn.client();
    let (Ok(mut events), Ok(mut dead), Ok(mut progress)) = (
        client.subscribe("events.>").await,
        client.subscribe("dlq.>").await,
        client.subscribe("progress.>").await,
    ) else {
        say(
            "watch",
            "cannot subscribe to events.>, dlq.> and progress.>",
        );
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(m) = events.next() => {
                let Ok(env) = conveyor::envelope::RawEnvelope::parse(&m.payload) else { continue };
                let mut text = format!("{:<8} {:<30} {}", env.tenantid, env.event_type, short(&env.id));
                if let Some(c) = env.causationid.as_deref() {
                    let _ = write!(text, " <- {}", short(c));
                }
                if let Some(lane) = conveyor::envelope::event_lane(m.subject.as_str()) {
                    let _ = write!(text, " [lane {lane}]");
                }
                say("event", &text);
            }
            Some(m) = progress.next() => {
                if let Ok(p) = serde_json::from_slice::<conveyor::control::ProgressUpdate>(&m.payload) {
                    say("progress", &format!("{:<8} {:<30} {} {:>3}% {}", p.tenant, p.event_type, p.group, p.percent, p.message));
                }
            }
            Some(m) = dead.next() => {
                let headers = m.headers.clone().unwrap_or_default();
                if let Ok(d) = conveyor::DeadLetter::from_parts(&headers, m.payload.clone()) {
                    say("dlq", &format!("{} after {} attempts: {} {}", d.group, d.attempts, d.kind, d.error));
                }
            }
        }
    }
}

/// The last 8 characters of an id, keeping the last step of a derived id's suffix:
/// `3aecbad1:fraud.explanation.requested`, `ccc83b67…:video.ai.generated` for a longer chain.
fn short(id: &str) -> String {
    let (base, suffix) = match id.find(':') {
        Some(i) if !id.starts_with("cron:") => (&id[..i], &id[i..]),
        _ => (id, ""),
    };
    let tail = base.get(base.len().saturating_sub(8)..).unwrap_or(base);
    match suffix.rfind(':') {
        Some(last) if last > 0 => format!("{tail}…{}", &suffix[last..]),
        _ => format!("{tail}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn shortens_ids_and_keeps_the_last_step_of_a_chain() {
        assert_eq!(short("0193aa00-7b1c-7000-8000-00003aecbad1"), "3aecbad1");
        assert_eq!(
            short("0193aa00-7b1c-7000-8000-00003aecbad1:fraud.explanation.requested"),
            "3aecbad1:fraud.explanation.requested"
        );
        assert_eq!(
            short("x-ccc83b67:video.transcription.started:video.ai.generated"),
            "ccc83b67…:video.ai.generated"
        );
        assert_eq!(short("cron:daily:acme:1700000000:ab"), "00000:ab");
    }
}
