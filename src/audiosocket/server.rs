//! The AudioSocket listener: Asterisk connects, one task per call, bounded by
//! `audiosocket.max_connections` and stopped by the drain (see [`crate::listener`]).

use anyhow::Result;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::session::{self, SessionEnd};
use super::SharedAudioSocketContext;
use crate::metrics::METRICS;

/// Accepts calls until the drain begins; each call runs in its own tracked task, so a broken
/// call never disturbs the others and the drain waits for every one.
pub async fn serve(listener: TcpListener, ctx: SharedAudioSocketContext) -> Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "AudioSocket listening");
    }
    let gate = ctx.gate.clone();
    let shutdown = ctx.shutdown.clone();
    crate::listener::serve(listener, gate, shutdown, move |stream, peer| {
        let span = tracing::info_span!("audiosocket", %peer, uuid = tracing::field::Empty);
        let ctx = ctx.clone();
        async move {
            let _active = METRICS.active("audiosocket");
            let report = session::run(stream, ctx).await;
            let stats = &report.stats;
            METRICS.call_ended("audiosocket", report.end.label());
            match &report.end {
                SessionEnd::ProtocolError(why) | SessionEnd::NoUuid(why) => {
                    tracing::warn!(reason = %why, frames = stats.frames, "call closed")
                }
                end => tracing::info!(
                    ?end,
                    frames = stats.frames,
                    speech_frames = stats.speech_frames,
                    underruns = stats.underruns,
                    clock_resets = stats.clock_resets,
                    "call ended"
                ),
            }
        }
        .instrument(span)
    })
    .await;
    Ok(())
}
