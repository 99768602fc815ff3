//! Waiting for the signal that asks a process to stop: SIGTERM (what orchestrators send) or
//! Ctrl-C. Every binary of the project and [`Worker::run`](crate::Worker::run) use it.

use std::future::Future;

/// Starts listening for SIGTERM or Ctrl-C now (so a stop that arrives during startup is not
/// missed) and returns a future that completes when one arrives. Fails only when the SIGTERM
/// handler cannot be installed.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let stop = conveyor::shutdown::signal()?;
/// // ... start serving ...
/// stop.await;
/// # Ok(()) }
/// ```
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
