//! The overview's charts: the dashboard samples the overview every few seconds, keeps the last
//! hour in memory, and draws each series as a small SVG on the server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::Connection;
use maud::{Markup, PreEscaped, html};
use tokio_util::sync::CancellationToken;

/// How much history the charts keep.
const WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// One sample of the overview.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: DateTime<Utc>,
    /// Per group: events waiting (pending) and in flight (ack pending).
    pub(crate) groups: BTreeMap<String, (u64, u64)>,
    /// Dead letters stored.
    pub(crate) dead_letters: u64,
}

/// The samples of the last hour, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(Arc<Mutex<VecDeque<Sample>>>);

impl Samples {
    pub(crate) fn push(&self, sample: Sample) {
        if let Ok(mut s) = self.0.lock() {
            let oldest = sample.at - WINDOW;
            while s.front().is_some_and(|f| f.at < oldest) {
                s.pop_front();
            }
            s.push_back(sample);
        }
    }

    pub(crate) fn all(&self) -> Vec<Sample> {
        self.0
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Samples the overview every `every` until `stop`.
pub(crate) async fn sample(
    conn: Connection,
    samples: Samples,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        // Consumer state and the DLQ's size only: a sample every few seconds must not scan
        // the dead letters as the full overview does.
        let dead_letters = match conn
            .jetstream()
            .get_stream(conveyor::topology::DLQ_STREAM)
            .await
        {
            Ok(mut dlq) => dlq.info().await.map(|i| i.state.messages).ok(),
            Err(_) => None,
        };
        if let (Ok(groups), Some(dead_letters)) =
            (conveyor::status::backlogs(&conn).await, dead_letters)
        {
            samples.push(Sample {
                at: Utc::now(),
                groups: groups
                    .iter()
                    .map(|g| (g.group.clone(), (g.pending, g.ack_pending)))
                    .collect(),
                dead_letters,
            });
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// A sparkline of `points` (time, value) over the last hour: 200 × 40 pixels.
pub(crate) fn sparkline(label: &str, points: &[(DateTime<Utc>, f64)]) -> Markup {
    let (w, h) = (200.0, 40.0);
    let now = Utc::now();
    let start = now - WINDOW;
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1.0);
    let x = |t: DateTime<Utc>| {
        ((t - start).num_milliseconds() as f64 / WINDOW.num_milliseconds() as f64).clamp(0.0, 1.0)
            * w
    };
    let y = |v: f64| h - 2.0 - (v / max) * (h - 4.0);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, (t, v))| {
            format!(
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(*t),
                y(*v)
            )
        })
        .collect();
    let svg = format!(
        r##"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{label}: last hour, peak {max}"><rect width="{w}" height="{h}" fill="#f8f9fb"/><path d="{path}" fill="none" stroke="#2f5bea" stroke-width="1.5"/></svg>"##,
        label = maud::html!((label)).into_string(),
        max = max as u64,
    );
    html! { (PreEscaped(svg)) }
}
