//! A bot's WebSocket, whichever side opened it: the bot (`GET /v1/calls/{call_id}/ws` on the
//! control listener, axum) or xttsd (dialling a configured bot, tokio-tungstenite). Both
//! carry the same messages; this module pumps them between the socket and the session.

use std::fmt::Display;

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::protocol::Event;
use super::session::{self, Inbound, Links, Outbound, Start};
use super::SharedBots;

/// How long the last events may take to leave once the session has ended.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Messages still unread from the bot before its socket is no longer read.
const INBOUND_QUEUE: usize = 64;

/// The two WebSocket libraries' message types, as the pump needs them.
pub trait WireMessage: Sized + Send + 'static {
    fn text(text: String) -> Self;
    fn binary(data: Bytes) -> Self;
    fn close(code: u16, reason: String) -> Self;
    /// What the session must hear of a received message (None: a ping or pong).
    fn inbound(self) -> Option<Inbound>;
}

impl WireMessage for axum::extract::ws::Message {
    fn text(text: String) -> Self {
        Self::Text(text.into())
    }

    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn close(code: u16, reason: String) -> Self {
        Self::Close(Some(axum::extract::ws::CloseFrame {
            code,
            reason: reason.into(),
        }))
    }

    fn inbound(self) -> Option<Inbound> {
        match self {
            Self::Text(text) => Some(Inbound::Text(text.to_string())),
            Self::Binary(data) => Some(Inbound::Binary(data.len())),
            Self::Close(_) => Some(Inbound::Closed),
            Self::Ping(_) | Self::Pong(_) => None,
        }
    }
}

impl WireMessage for tokio_tungstenite::tungstenite::Message {
    fn text(text: String) -> Self {
        Self::Text(text.into())
    }

    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn close(code: u16, reason: String) -> Self {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        Self::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }

    fn inbound(self) -> Option<Inbound> {
        match self {
            Self::Text(text) => Some(Inbound::Text(text.to_string())),
            Self::Binary(data) => Some(Inbound::Binary(data.len())),
            Self::Close(_) => Some(Inbound::Closed),
            Self::Ping(_) | Self::Pong(_) | Self::Frame(_) => None,
        }
    }
}

/// Runs a bot's session over `socket` until the call or the socket ends.
pub async fn serve<S, M, E>(socket: S, bots: SharedBots, start: Start)
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Send + 'static,
    <S as Sink<M>>::Error: Display,
    M: WireMessage,
    E: Display + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(session::OUTBOUND_QUEUE);
    let (audio_tx, mut audio_rx) = mpsc::channel::<Bytes>(bots.config.audio_buffer_frames);
    let call_id = start.call_id;
    let reader = tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            let inbound = match message {
                Ok(message) => match message.inbound() {
                    Some(inbound) => inbound,
                    None => continue,
                },
                Err(e) => {
                    tracing::debug!(call = %call_id, error = %e, "voicebot socket read failed");
                    Inbound::Closed
                }
            };
            let closed = matches!(inbound, Inbound::Closed);
            if in_tx.send(inbound).await.is_err() || closed {
                return;
            }
        }
        let _ = in_tx.send(Inbound::Closed).await;
    });
    let writer = tokio::spawn(async move {
        loop {
            // Control first: an event never waits behind caller audio.
            let message = tokio::select! {
                biased;
                out = out_rx.recv() => match out {
                    Some(Outbound::Event(event)) => M::text(event_json(&event)),
                    Some(Outbound::Close(code, reason)) => {
                        let _ = sink.send(M::close(code, reason)).await;
                        break;
                    }
                    None => {
                        let _ = sink.send(M::close(1000, "session ended".into())).await;
                        break;
                    }
                },
                Some(frame) = audio_rx.recv() => M::binary(frame),
            };
            if let Err(e) = sink.send(message).await {
                tracing::debug!(call = %call_id, error = %e, "voicebot socket write failed");
                break;
            }
        }
        let _ = sink.close().await;
    });
    session::run(
        bots,
        start,
        Links {
            inbound: in_rx,
            outbound: out_tx,
            audio: audio_tx,
        },
    )
    .await;
    // The session dropped its sender: the writer sends what is left, then closes; a bot that
    // does not read gets a few seconds for that.
    let abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_GRACE, writer).await.is_err() {
        abort.abort();
    }
    reader.abort();
}

fn event_json(event: &Event) -> String {
    serde_json::to_string(event)
        .unwrap_or_else(|e| format!(r#"{{"type":"error","code":"bad_message","message":"{e}","fatal":false}}"#))
}
