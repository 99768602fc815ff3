//! The `conveyor-scheduler` command line, built into this package so tests can run it as a
//! process (and SIGKILL it).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    conveyor_scheduler::cli::main().await
}
