//! `conveyor-scheduler run|check|status --config schedules.toml`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    conveyor_scheduler::cli::main().await
}
