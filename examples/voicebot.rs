//! A small voicebot: streams a reply into a call at an LLM's pace, stops when the caller
//! presses a key, prints every event xttsd sends, and hangs up when its reply was played.
//!
//! Two ways to reach a call (README: "Voicebots"):
//!
//! * `cargo run --release --example voicebot -- connect ws://127.0.0.1:9093 CALL_UUID`
//!   opens the call's WebSocket on xttsd's control API (the dialplan ran
//!   `AudioSocket(CALL_UUID,127.0.0.1:9092)`).
//! * `cargo run --release --example voicebot -- listen 127.0.0.1:8765` waits for xttsd to dial
//!   it, configured as `[voicebot.bots.demo] url = "ws://127.0.0.1:8765/{call_id}"` and
//!   reached from the dialplan with `AGI(agi://127.0.0.1:4573/voicebot?bot=demo&lang=en)`.
//!
//! Optional last argument: the text to say.

use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;
use xttsd::client::bot::{connect, drive, BotOptions};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = BotOptions::default();
    match args.first().map(String::as_str) {
        Some("connect") if args.len() >= 3 => {
            if let Some(text) = args.get(3) {
                opts.text = text.clone();
            }
            let call = uuid::Uuid::parse_str(&args[2]).context("CALL_UUID")?;
            let token = std::env::var("XTTSD_TOKEN").ok();
            let ws = connect(&args[1], call, token.as_deref()).await?;
            drive(ws, &opts).await?;
        }
        Some("listen") if args.len() >= 2 => {
            if let Some(text) = args.get(2) {
                opts.text = text.clone();
            }
            let listener = TcpListener::bind(&args[1])
                .await
                .with_context(|| format!("cannot listen on {}", args[1]))?;
            println!("waiting for xttsd on {}", args[1]);
            loop {
                let (stream, peer) = listener.accept().await?;
                let opts = opts.clone();
                tokio::spawn(async move {
                    match tokio_tungstenite::accept_async(stream).await {
                        Ok(ws) => {
                            println!("call from {peer}");
                            if let Err(e) = drive(ws, &opts).await {
                                eprintln!("call from {peer}: {e:#}");
                            }
                        }
                        Err(e) => eprintln!("{peer}: not a WebSocket: {e}"),
                    }
                });
            }
        }
        _ => bail!("usage: voicebot connect ws://HOST:PORT CALL_UUID [TEXT]\n       voicebot listen HOST:PORT [TEXT]"),
    }
    Ok(())
}
