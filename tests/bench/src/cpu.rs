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

/// Writes `command` to the control fifo of `perf record --control fifo:<path> -D -1`, named
/// by `CONVEYOR_BENCH_PERF_CTL`: a profile then covers the timed windows only (not the filling
/// of the stream before each one).
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("CONVEYOR_BENCH_PERF_CTL") {
        use std::io::Write;
        if let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = fifo.write_all(command.as_bytes());
        }
    }
}

/// Under `valgrind --tool=callgrind --instr-atstart=no` with `CONVEYOR_BENCH_CALLGRIND` set,
/// turns the counting of this process's instructions on or off (through `callgrind_control`,
/// which waits until it is done): `python3 dev.py instructions` counts the timed windows only.
fn callgrind_control(on: bool) {
    if std::env::var_os("CONVEYOR_BENCH_CALLGRIND").is_none() {
        return;
    }
    let _ = std::process::Command::new("callgrind_control")
        .arg(if on { "--instr=on" } else { "--instr=off" })
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

impl Mark {
    /// Starts a timed window (and the profile, see [`perf_control`] and
    /// [`callgrind_control`]).
    pub(super) fn now() -> Self {
        perf_control("enable\n");
        callgrind_control(true);
        Self::read()
    }

    fn read() -> Self {
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
        let end = Self::read();
        callgrind_control(false);
        perf_control("disable\n");
        let elapsed = end.at.duration_since(self.at).as_secs_f64();
        Timed {
            events: n,
            per_s: n as f64 / elapsed,
            client_s: end.client - self.client,
            server_s: end.server - self.server,
            first_s: f64::NAN,
        }
    }

    /// When this mark was taken.
    pub(super) fn at(self) -> Instant {
        self.at
    }
}

/// One timed run: its rate and the CPU it took.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timed {
    pub(super) events: u64,
    pub(super) per_s: f64,
    pub(super) client_s: f64,
    pub(super) server_s: f64,
    /// Seconds from the start of the window to the first event handled (NaN: not measured).
    pub(super) first_s: f64,
}

impl Timed {
    /// This run, with its first event handled at `first` (a window started at `start`).
    pub(super) fn with_first(mut self, start: Instant, first: Option<Instant>) -> Self {
        self.first_s = first.map_or(f64::NAN, |f| f.duration_since(start).as_secs_f64());
        self
    }
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
