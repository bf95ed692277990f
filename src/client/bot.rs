//! The bot side of a voicebot call, for `xttsd call --bot` and `examples/voicebot.rs`: it
//! streams a reply as an LLM would (3-5 character tokens at 40 tokens/s after a short
//! "thinking" pause), prints every event, stops speaking when the caller presses a key, and
//! hangs up once its reply was played.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

use crate::voicebot::protocol::{decode_audio_frame, Event};

#[derive(Debug, Clone)]
pub struct BotOptions {
    /// What to say.
    pub text: String,
    /// Tokens a second, as the text is streamed.
    pub tokens_per_s: f64,
    /// Pause before the first token (an LLM thinking).
    pub think: Duration,
    /// Hang up once the reply was played (or cleared).
    pub hangup_when_done: bool,
    /// Print each event as it arrives.
    pub print: bool,
}

impl Default for BotOptions {
    fn default() -> Self {
        Self {
            text: "Hello! Thanks for calling. I am a voicebot speaking through x t t s, and you can \
                   interrupt me at any time by pressing a key. How can I help you today?"
                .into(),
            tokens_per_s: 40.0,
            think: Duration::from_millis(300),
            hangup_when_done: true,
            print: true,
        }
    }
}

/// What the bot saw.
#[derive(Debug, Default)]
pub struct BotReport {
    pub events: Vec<(Duration, Event)>,
    /// Caller audio frames received.
    pub audio_frames: usize,
}

/// Splits text into LLM-like tokens of 3-5 characters (seeded: the same text splits the same way).
pub fn tokens(text: &str, seed: u64) -> Vec<String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let n = rng.random_range(3..=5).min(chars.len() - at);
        out.push(chars[at..at + n].iter().collect());
        at += n;
    }
    out
}

/// Opens the control API's WebSocket for `call` (`control` is `ws://HOST:PORT`).
pub async fn connect(
    control: &str,
    call: Uuid,
    token: Option<&str>,
) -> Result<WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>> {
    let url = format!("{}/v1/calls/{call}/ws", control.trim_end_matches('/'));
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad URL {url}"))?;
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().context("token")?);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    Ok(ws)
}

/// Runs the bot on an open socket until the call ends.
pub async fn drive<S>(mut ws: WebSocketStream<S>, opts: &BotOptions) -> Result<BotReport>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let mut report = BotReport::default();
    let pieces = tokens(&opts.text, 1);
    let gap = Duration::from_secs_f64(1.0 / opts.tokens_per_s.max(0.1));
    let mut next_piece = 0;
    let mut next_at = start + opts.think;
    let mut stopped = false;
    let mut sent_hangup = false;
    let far = start + Duration::from_secs(86_400);
    loop {
        let streaming = !stopped && next_piece <= pieces.len();
        tokio::select! {
            _ = sleep_until(if streaming { next_at } else { far }), if streaming => {
                let message = if next_piece < pieces.len() {
                    json!({"type": "speak", "utterance_id": "reply", "text": pieces[next_piece]})
                } else {
                    json!({"type": "end", "utterance_id": "reply"})
                };
                ws.send(Message::Text(message.to_string().into())).await?;
                next_piece += 1;
                next_at += gap;
            }
            message = ws.next() => {
                let Some(message) = message else { break };
                match message.context("reading from xttsd")? {
                    Message::Text(text) => {
                        let event: Event = serde_json::from_str(&text).with_context(|| format!("bad event {text}"))?;
                        let at = start.elapsed();
                        if opts.print {
                            println!("{:>7.1} ms  {text}", at.as_secs_f64() * 1000.0);
                        }
                        match &event {
                            Event::Dtmf { .. } if !stopped => {
                                // The caller barged in: stop talking.
                                stopped = true;
                                ws.send(Message::Text(json!({"type": "clear"}).to_string().into())).await?;
                            }
                            Event::SpeechDone { .. } if opts.hangup_when_done && !sent_hangup => {
                                sent_hangup = true;
                                ws.send(Message::Text(json!({"type": "hangup"}).to_string().into())).await?;
                            }
                            _ => {}
                        }
                        report.events.push((at, event));
                    }
                    Message::Binary(data) if decode_audio_frame(&data).is_some() => report.audio_frames += 1,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_the_text_in_small_pieces() {
        let text = "Hello, how are you today? Fine.";
        let t = tokens(text, 3);
        assert_eq!(t.concat(), text);
        assert!(t[..t.len() - 1].iter().all(|p| (3..=5).contains(&p.chars().count())));
    }
}
