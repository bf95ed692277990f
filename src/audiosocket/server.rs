//! The AudioSocket listener: Asterisk connects, one task per call.

use std::time::Duration;

use anyhow::Result;
use tokio::net::TcpListener;
use tracing::Instrument;

use super::session::{self, SessionEnd};
use crate::serve::SharedServices;

/// Accepts calls until the listener fails for good; each call runs in its own task, so a
/// broken call never disturbs the others.
pub async fn serve(listener: TcpListener, services: SharedServices) -> Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "AudioSocket listening");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Usually out of file descriptors: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let span = tracing::info_span!("audiosocket", %peer, uuid = tracing::field::Empty);
        let services = services.clone();
        tokio::spawn(
            async move {
                let report = session::run(stream, services).await;
                let stats = &report.stats;
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
            .instrument(span),
        );
    }
}
