//! CPU time per event, of this process (the client) and of the nats-server, read from
//! `/proc/<pid>/stat` (user + system time, in 1/100 s) around each timed window. Throughput
//! swings with the load of a shared machine; the CPU an event costs does much less.

use std::sync::OnceLock;
use std::time::Instant;

/// The benchmark's nats-server process.
pub(super) static SERVER_PID: OnceLock<u32> = OnceLock::new();

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces, in parentheses).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / TICKS_PER_S,
        _ => f64::NAN,
    }
}

/// A point in time, with the CPU both processes had used by then.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    at: Instant,
    client: f64,
    server: f64,
}

impl Mark {
    pub(super) fn now() -> Self {
        let server = SERVER_PID
            .get()
            .map_or(f64::NAN, |pid| cpu_seconds(&pid.to_string()));
        Self {
            at: Instant::now(),
            client: cpu_seconds("self"),
            server,
        }
    }

    /// What `n` events cost from this mark until now.
    pub(super) fn timed(self, n: u64) -> Timed {
        let end = Self::now();
        let elapsed = end.at.duration_since(self.at).as_secs_f64();
        Timed {
            events: n,
            per_s: n as f64 / elapsed,
            client_s: end.client - self.client,
            server_s: end.server - self.server,
        }
    }
}

/// One timed run: its rate and the CPU it took.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timed {
    pub(super) events: u64,
    pub(super) per_s: f64,
    pub(super) client_s: f64,
    pub(super) server_s: f64,
}

/// Client and server CPU per event over `runs`, in microseconds (summed over the runs, so the
/// 10 ms resolution of the counters matters less).
pub(super) fn per_event_us(runs: &[Timed]) -> (f64, f64) {
    let events: u64 = runs.iter().map(|r| r.events).sum();
    let client: f64 = runs.iter().map(|r| r.client_s).sum();
    let server: f64 = runs.iter().map(|r| r.server_s).sum();
    let us = |s: f64| (s * 1e6 / events.max(1) as f64 * 100.0).round() / 100.0;
    (us(client), us(server))
}
