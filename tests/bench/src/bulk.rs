//! `-- bulk`: one `publish_many` call of 1 000 000 events against raw async-nats publishing the
//! same wire messages with the same ack window, each in a process of its own (started from this
//! binary), so each peak RSS is that variant's alone.

use std::time::Instant;

use conveyor::{Connection, Publisher};
use serde_json::json;

use super::{BoxResult, IN_FLIGHT, peak_rss_mb, raw_publish_n, round2, tick};

/// Events of the bulk publish.
const BULK_N: u64 = 1_000_000;

/// The argument that runs one variant in this process: `bulk-run <conveyor|raw> <url>`.
pub(super) const CHILD: &str = "bulk-run";

pub(super) async fn bulk(url: &str) -> BoxResult<()> {
    let exe = std::env::current_exe()?;
    let mut figures = serde_json::Map::new();
    for variant in ["conveyor", "raw"] {
        let out = std::process::Command::new(&exe)
            .args([CHILD, variant, url])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "{variant} run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        figures.insert(format!("{variant}_per_s"), v["per_s"].clone());
        figures.insert(format!("{variant}_peak_rss_mb"), v["peak_rss_mb"].clone());
    }
    let mut line = json!({"bench": "bulk_publish", "events": BULK_N, "in_flight": IN_FLIGHT});
    if let Some(obj) = line.as_object_mut() {
        obj.extend(figures);
    }
    println!("{line}");
    Ok(())
}

/// Runs one variant and prints its rate and peak RSS.
pub(super) async fn child() -> BoxResult<()> {
    let mut args = std::env::args().skip(2);
    let (Some(variant), Some(url)) = (args.next(), args.next()) else {
        return Err("usage: bulk-run <conveyor|raw> <url>".into());
    };
    let conn = Connection::connect(&url).await?;
    let per_s = match variant.as_str() {
        "conveyor" => {
            let publisher = Publisher::new(&conn).with_max_in_flight(IN_FLIGHT);
            let start = Instant::now();
            let summary = publisher
                .publish_many((0..BULK_N).map(|i| ("acme", tick(i, 0))))
                .await
                .into_result()?;
            if summary.stored != BULK_N {
                return Err(format!("stored {} of {BULK_N}", summary.stored).into());
            }
            BULK_N as f64 / start.elapsed().as_secs_f64()
        }
        _ => raw_publish_n(&conn, BULK_N).await?.per_s,
    };
    println!(
        "{}",
        json!({"per_s": per_s.round(), "peak_rss_mb": peak_rss_mb().map(round2)})
    );
    Ok(())
}
