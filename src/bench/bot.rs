//! `xttsd bench --bot`: N concurrent voicebot calls. Each call's bot opens its WebSocket on the
//! in-process control API, a leg plays Asterisk on the AudioSocket server, and once the call is
//! attached the bot "thinks" for 300 ms and streams its reply as an LLM would (3-5 character
//! tokens at 40 tokens/s). 1.5 s into the speech it barges in (`clear`) and hangs up.
//! Per N: time from the first token to the first voiced frame at the socket, from `clear` to the
//! last voiced frame at the socket, frames late (silence inside speech) and segment sizes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::{percentile, SENTENCES};
use crate::client::audiosocket::{run_leg, LegOptions, LegReport};
use crate::client::bot::{connect, tokens};
use crate::serve::Services;
use crate::voicebot::protocol::Event;
use crate::voicebot::session::SEGMENTS;

const THINK: Duration = Duration::from_millis(300);
const TOKEN_GAP: Duration = Duration::from_millis(25);
/// The bot barges in this long after its speech started.
const CLEAR_AFTER: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Serialize)]
pub struct BotRound {
    pub calls: usize,
    /// First token sent to first voiced frame at the socket.
    pub ttfa_p50_ms: f64,
    pub ttfa_p95_ms: f64,
    pub ttfa_p99_ms: f64,
    /// `clear` sent to the last voiced frame at the socket (0: none came after it), over the
    /// calls still speaking when their bot barged in (`clears` of them).
    pub clears: usize,
    pub clear_p50_ms: f64,
    pub clear_p95_ms: f64,
    pub clear_p99_ms: f64,
    /// Silent frames between the first voiced frame and the clear, all calls together.
    pub frames_late: usize,
    /// Mean characters of first and later segments released to the engine, and the longest.
    pub first_segment_chars: f64,
    pub later_segment_chars: f64,
    pub max_segment_chars: u64,
    pub failed_calls: usize,
}

struct CallFigures {
    ttfa_ms: f64,
    /// None when the speech ended before the bot barged in.
    clear_ms: Option<f64>,
    late: usize,
}

pub async fn run(services: Arc<Services>, rounds: &[usize], args: &super::Args) -> Result<()> {
    let audiosocket = TcpListener::bind("127.0.0.1:0").await.context("binding loopback")?;
    let control = TcpListener::bind("127.0.0.1:0").await.context("binding loopback")?;
    let audiosocket_addr = audiosocket.local_addr()?.to_string();
    let control_url = format!("ws://{}", control.local_addr()?);
    tokio::spawn(crate::audiosocket::serve(audiosocket, services.audiosocket()));
    tokio::spawn(crate::control::serve(
        control,
        services.control(),
        services.speech_api(),
    ));
    let mut results = Vec::new();
    for &n in rounds {
        let round = run_round(&control_url, &audiosocket_addr, n).await;
        eprintln!("{n} bot calls done");
        results.push(round);
    }
    println!("{}", table(&results));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json!({ "bot_rounds": results }))?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

async fn run_round(control: &str, audiosocket: &str, n: usize) -> BotRound {
    let snapshot = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let before = (
        snapshot(&SEGMENTS.first),
        snapshot(&SEGMENTS.first_chars),
        snapshot(&SEGMENTS.later),
        snapshot(&SEGMENTS.later_chars),
    );
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let (control, audiosocket) = (control.to_string(), audiosocket.to_string());
        calls.spawn(async move { one_call(&control, &audiosocket, i).await });
    }
    let mut figures = Vec::new();
    let mut failed = 0;
    while let Some(done) = calls.join_next().await {
        match done {
            Ok(Ok(f)) => figures.push(f),
            Ok(Err(e)) => {
                tracing::warn!("bot call failed: {e:#}");
                failed += 1;
            }
            Err(e) => {
                tracing::warn!("bot call failed: {e}");
                failed += 1;
            }
        }
    }
    let mut ttfa: Vec<f64> = figures.iter().map(|f| f.ttfa_ms).collect();
    let mut clear: Vec<f64> = figures.iter().filter_map(|f| f.clear_ms).collect();
    ttfa.sort_by(f64::total_cmp);
    clear.sort_by(f64::total_cmp);
    let mean = |count: u64, chars: u64| {
        if count > 0 {
            chars as f64 / count as f64
        } else {
            f64::NAN
        }
    };
    BotRound {
        calls: n,
        ttfa_p50_ms: percentile(&ttfa, 50.0),
        ttfa_p95_ms: percentile(&ttfa, 95.0),
        ttfa_p99_ms: percentile(&ttfa, 99.0),
        clears: clear.len(),
        clear_p50_ms: percentile(&clear, 50.0),
        clear_p95_ms: percentile(&clear, 95.0),
        clear_p99_ms: percentile(&clear, 99.0),
        frames_late: figures.iter().map(|f| f.late).sum(),
        first_segment_chars: mean(
            snapshot(&SEGMENTS.first) - before.0,
            snapshot(&SEGMENTS.first_chars) - before.1,
        ),
        later_segment_chars: mean(
            snapshot(&SEGMENTS.later) - before.2,
            snapshot(&SEGMENTS.later_chars) - before.3,
        ),
        max_segment_chars: snapshot(&SEGMENTS.max_chars),
        failed_calls: failed,
    }
}

fn text(message: &Value) -> Message {
    Message::Text(message.to_string().into())
}

async fn one_call(control: &str, audiosocket: &str, i: usize) -> Result<CallFigures> {
    let call = Uuid::new_v4();
    let mut ws = connect(control, call, None).await?;
    let reply = [0, 1, 2].map(|k| SENTENCES[(i + k) % SENTENCES.len()]).join(" ");
    let pieces = tokens(&reply, i as u64);
    let leg_start = Instant::now();
    let audiosocket = audiosocket.to_string();
    let leg = tokio::spawn(async move {
        let opts = LegOptions {
            timeout: Duration::from_secs(120),
            ..LegOptions::default()
        };
        run_leg(&audiosocket, call, opts).await
    });
    let give_up = Instant::now() + Duration::from_secs(90);
    let far = give_up + Duration::from_secs(3600);
    let mut first_token_at = None;
    let mut next_token: Option<Instant> = None;
    let mut sent = 0;
    let mut clear_at: Option<Instant> = None;
    let mut clear_due: Option<Instant> = None;
    let mut hangup_due: Option<Instant> = None;
    loop {
        tokio::select! {
            message = ws.next() => {
                let Some(message) = message else { break };
                let Message::Text(body) = message.context("reading the bot socket")? else { continue };
                let event: Event = serde_json::from_str(&body)?;
                match event {
                    Event::CallAttached { .. } | Event::SessionStarted { attached: true, .. } if next_token.is_none() => {
                        next_token = Some(Instant::now() + THINK);
                    }
                    Event::SpeechStarted { .. } => clear_due = Some(Instant::now() + CLEAR_AFTER),
                    Event::Cleared { .. } => hangup_due = Some(Instant::now() + Duration::from_millis(300)),
                    Event::SpeechDone { .. } if clear_at.is_none() => {
                        hangup_due = Some(Instant::now());
                    }
                    Event::Hangup { .. } => break,
                    _ => {}
                }
            }
            _ = sleep_until(next_token.unwrap_or(far)), if next_token.is_some() && sent <= pieces.len() => {
                let message = if sent < pieces.len() {
                    json!({"type": "speak", "utterance_id": "reply", "text": pieces[sent]})
                } else {
                    json!({"type": "end", "utterance_id": "reply"})
                };
                first_token_at.get_or_insert_with(Instant::now);
                ws.send(text(&message)).await?;
                sent += 1;
                next_token = next_token.map(|t| t + TOKEN_GAP);
            }
            _ = sleep_until(clear_due.unwrap_or(far)), if clear_due.is_some() && clear_at.is_none() => {
                clear_at = Some(Instant::now());
                ws.send(text(&json!({"type": "clear"}))).await?;
            }
            _ = sleep_until(hangup_due.unwrap_or(far)), if hangup_due.is_some() => {
                hangup_due = None;
                ws.send(text(&json!({"type": "hangup"}))).await?;
            }
            _ = sleep_until(give_up) => anyhow::bail!("call {i} did not end within 90 s"),
        }
    }
    let leg: LegReport = timeout(Duration::from_secs(10), leg)
        .await
        .context("leg did not end")???;
    let first_token_at = first_token_at.context("no token was sent")?;
    let voiced: Vec<Instant> = leg
        .arrivals
        .iter()
        .filter(|a| a.voiced)
        .map(|a| leg_start + a.at)
        .collect();
    let first_voiced = *voiced.first().context("no speech reached the socket")?;
    let clear_ms = clear_at.map(|clear| {
        voiced
            .iter()
            .rfind(|&&t| t > clear)
            .map_or(0.0, |&t| (t - clear).as_secs_f64() * 1e3)
    });
    let speech_end = clear_at.unwrap_or(*voiced.last().expect("non-empty"));
    let late = leg
        .arrivals
        .iter()
        .filter(|a| {
            let t = leg_start + a.at;
            !a.voiced && t > first_voiced && t < speech_end
        })
        .count();
    Ok(CallFigures {
        ttfa_ms: (first_voiced - first_token_at).as_secs_f64() * 1e3,
        clear_ms,
        late,
    })
}

fn table(rounds: &[BotRound]) -> String {
    let mut out = format!(
        "{:>5} {:>9} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>7} {:>7} {:>6} {:>5}\n",
        "calls",
        "ttfa50ms",
        "ttfa95ms",
        "ttfa99ms",
        "clears",
        "clr50ms",
        "clr95ms",
        "clr99ms",
        "late",
        "seg1ch",
        "segNch",
        "segMx",
        "fail"
    );
    for r in rounds {
        out.push_str(&format!(
            "{:>5} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>7.1} {:>7.1} {:>6} {:>5}\n",
            r.calls,
            r.ttfa_p50_ms,
            r.ttfa_p95_ms,
            r.ttfa_p99_ms,
            r.clears,
            r.clear_p50_ms,
            r.clear_p95_ms,
            r.clear_p99_ms,
            r.frames_late,
            r.first_segment_chars,
            r.later_segment_chars,
            r.max_segment_chars,
            r.failed_calls
        ));
    }
    out
}
