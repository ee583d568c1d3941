//! Signals: the first SIGTERM or SIGINT cancels the one token passed down from `main` (the
//! consume loop stops taking jobs and drains); a second one forces the exit.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit code of a forced exit on the second signal (128 + SIGINT, as shells report it).
const FORCED_EXIT_CODE: i32 = 130;

/// Spawns the signal listener. Fails only when the signal handlers cannot be installed.
pub fn spawn_signal_listener(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested: draining in-flight jobs");
        token.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without waiting for the drain");
        // No destructor runs after exit: stop the agents here, or they outlive the worker.
        crate::agent::process::kill_all_agent_groups();
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(())
}
