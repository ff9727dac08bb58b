//! `--wait`: how long every command waits for its databases to accept connections.
//!
//! Deploy pipelines start dbkeeper next to a database that is still booting. Rather than thread a
//! setting through every constructor, this is one process-wide value set once by the CLI at
//! start-up and read by the connect functions of both engines.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

static WAIT: OnceLock<Duration> = OnceLock::new();

/// Sets the wait for this process; later calls are ignored.
pub fn set_wait_for_servers(wait: Duration) {
    let _ = WAIT.set(wait);
}

pub fn wait_for_servers() -> Duration {
    WAIT.get().copied().unwrap_or(Duration::ZERO)
}

/// Retries `connect` on connection errors until the `--wait` budget is spent, then returns the
/// last error. Other errors (bad URL, authentication) are returned at once: waiting cannot fix them.
pub async fn retry_connect<T, F, Fut>(what: &str, mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + wait_for_servers();
    let mut delay = Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e @ Error::Connect { .. }) if Instant::now() < deadline => {
                tracing::info!("waiting for {what} to accept connections: {e}");
                tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}
