//! The FastAGI listener: one task per connection.

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use super::session;
use crate::serve::SharedServices;

/// Accepts FastAGI connections until the listener fails.
pub async fn serve(listener: TcpListener, services: SharedServices) -> Result<()> {
    loop {
        let (stream, peer) = listener.accept().await.context("FastAGI accept failed")?;
        let _ = stream.set_nodelay(true);
        let services = services.clone();
        tokio::spawn(async move {
            if let Err(e) = session::run(stream, services).await {
                tracing::warn!(%peer, error = %format!("{e:#}"), "FastAGI session ended with an error");
            }
        });
    }
}
