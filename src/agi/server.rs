//! The FastAGI listener: one task per connection, bounded by `agi.max_connections` and
//! stopped by the drain (see [`crate::listener`]).

use anyhow::Result;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::SharedAgiContext;
use super::{file_mode, session};
use crate::metrics::METRICS;

/// Accepts FastAGI connections until the drain begins.
pub async fn serve(listener: TcpListener, ctx: SharedAgiContext) -> Result<()> {
    // Files a crash left behind would never be deleted otherwise.
    let spool = ctx.config.spool_dir.clone();
    match tokio::task::spawn_blocking(move || file_mode::sweep_spool(&spool)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => tracing::info!(files = n, "removed stale spool files"),
    }
    let gate = ctx.gate.clone();
    let shutdown = ctx.shutdown.clone();
    crate::listener::serve(listener, gate, shutdown, move |stream, peer| {
        let span = tracing::info_span!(
            "agi",
            %peer,
            channel = tracing::field::Empty,
            uniqueid = tracing::field::Empty,
            uuid = tracing::field::Empty
        );
        let ctx = ctx.clone();
        async move {
            let _active = METRICS.active("agi");
            if let Err(e) = session::run(stream, ctx).await {
                tracing::warn!(error = %format!("{e:#}"), "FastAGI session ended with an error");
            }
        }
        .instrument(span)
    })
    .await;
    Ok(())
}
