//! The AudioSocket side of `xttsd call`: one call leg made exactly as Asterisk's
//! `AudioSocket()` application makes it. Connect, send the UUID, send 20 ms slin frames of
//! silence on a steady clock, press DTMF once speech is heard, record what comes back.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use uuid::Uuid;

use super::report::{is_voiced, Arrival, PacingReport};
use crate::audio::{frame_samples, slin_samples, wav, FRAME_MS};
use crate::audiosocket::codec::{encode_message, kind_of_rate, AudioSocketCodec, Message};
use crate::audiosocket::reader::MessageReader;

/// Asterisk gives up connecting after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

#[derive(Debug, Clone)]
pub struct LegOptions {
    /// Digits to press (one DTMF message each) once the first speech frame arrives.
    pub dtmf: String,
    /// Time between two presses.
    pub dtmf_gap: Duration,
    /// Hang up (close the socket) this long after connecting.
    pub hangup_after: Option<Duration>,
    /// Give up this long after connecting.
    pub timeout: Duration,
    /// Rate of the audio we send (8000 = kind 0x10, as the dialplan application sends).
    pub rate: u32,
    /// Send paced silence frames, as Asterisk does for a silent caller on a live channel.
    pub send_audio: bool,
}

impl Default for LegOptions {
    fn default() -> Self {
        Self {
            dtmf: String::new(),
            dtmf_gap: Duration::from_millis(250),
            hangup_after: None,
            timeout: Duration::from_secs(60),
            rate: 8000,
            send_audio: true,
        }
    }
}

/// How the leg ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEnd {
    /// The server sent a hangup message.
    ServerHangup,
    /// The server closed the connection.
    Closed,
    /// We hung up (`hangup_after`).
    CallerHangup,
    TimedOut,
    /// The server sent something invalid, or the connection failed.
    Error(String),
}

#[derive(Debug, Clone)]
pub struct LegReport {
    /// Everything received, at `rate`.
    pub samples: Vec<i16>,
    /// The rate of the first audio received (8000 when none came).
    pub rate: u32,
    pub report: PacingReport,
    pub end: LegEnd,
    /// Every received frame.
    pub arrivals: Vec<Arrival>,
    /// When each DTMF digit was sent, since connecting.
    pub dtmf_sent: Vec<(char, Duration)>,
}

/// Makes one call leg to an AudioSocket server at `addr` (HOST:PORT).
pub async fn run_leg(addr: &str, uuid: Uuid, opts: LegOptions) -> Result<LegReport> {
    anyhow::ensure!(
        kind_of_rate(opts.rate).is_some(),
        "no AudioSocket kind for {} Hz",
        opts.rate
    );
    for d in opts.dtmf.chars() {
        anyhow::ensure!(
            matches!(d, '0'..='9' | '*' | '#' | 'A'..='D'),
            "'{d}' is not a DTMF digit (0-9, *, #, A-D)"
        );
    }
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("{addr}: no connection within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("{addr}: cannot connect"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let start = Instant::now();
    let (rd, wr) = stream.into_split();
    let codec = AudioSocketCodec::new(u16::MAX as usize);
    let mut reader = MessageReader::new(rd, codec.clone(), Duration::from_secs(1));

    let (press_tx, press_rx) = mpsc::unbounded_channel::<()>();
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(char, Duration)>();
    let mut writer = tokio::spawn(send_loop(wr, codec, uuid, opts.clone(), start, press_rx, sent_tx));

    let hangup_at = opts.hangup_after.map(|d| start + d);
    let give_up_at = start + opts.timeout;
    let mut arrivals = Vec::new();
    let mut samples = Vec::new();
    let mut rate = None;
    let mut pressed = false;
    // A finished JoinHandle must not be polled again.
    let mut writer_done = false;
    let mut writer_error = None;
    let end = loop {
        tokio::select! {
            message = reader.next() => match message {
                Ok(Some(Message::Audio { rate: r, pcm })) => {
                    let at = start.elapsed();
                    let frame = slin_samples(&pcm)?;
                    let voiced = is_voiced(&frame);
                    arrivals.push(Arrival { at, bytes: pcm.len(), rate: r, voiced });
                    rate.get_or_insert(r);
                    samples.extend(frame);
                    if voiced && !pressed {
                        pressed = true;
                        let _ = press_tx.send(());
                    }
                }
                Ok(Some(Message::Hangup)) => break LegEnd::ServerHangup,
                Ok(Some(other)) => break LegEnd::Error(format!("server sent {other:?}, which Asterisk rejects")),
                Ok(None) => break LegEnd::Closed,
                Err(e) => break LegEnd::Error(writer_error.take().unwrap_or_else(|| e.to_string())),
            },
            _ = sleep_until(hangup_at.unwrap_or(give_up_at)), if hangup_at.is_some_and(|h| h < give_up_at) => {
                break LegEnd::CallerHangup;
            }
            _ = sleep_until(give_up_at) => break LegEnd::TimedOut,
            result = &mut writer, if !writer_done => {
                writer_done = true;
                // The sender only stops on a write error: the server is gone. What it sent
                // before closing (the last frames, a hangup) is still read.
                let why = match result {
                    Ok(Err(e)) => format!("{e:#}"),
                    Ok(Ok(())) => "sender stopped".into(),
                    Err(e) => e.to_string(),
                };
                writer_error = Some(why);
            }
        }
    };
    let duration = start.elapsed();
    if !writer_done {
        writer.abort();
        let _ = (&mut writer).await; // drops the write half: the socket closes like a hangup
    }
    drop(reader);
    let mut dtmf_sent = Vec::new();
    while let Ok(sent) = sent_rx.try_recv() {
        dtmf_sent.push(sent);
    }
    Ok(LegReport {
        samples,
        rate: rate.unwrap_or(8000),
        report: PacingReport::from_arrivals(&arrivals, duration),
        end,
        arrivals,
        dtmf_sent,
    })
}

/// Sends the UUID, then silence every 20 ms (absolute deadlines) and the DTMF digits once
/// `press` fires.
async fn send_loop(
    mut wr: OwnedWriteHalf,
    mut codec: AudioSocketCodec,
    uuid: Uuid,
    opts: LegOptions,
    start: Instant,
    mut press: mpsc::UnboundedReceiver<()>,
    sent: mpsc::UnboundedSender<(char, Duration)>,
) -> Result<()> {
    send(&mut wr, &mut codec, Message::Uuid(uuid)).await?;
    let silence = bytes::Bytes::from(vec![0u8; frame_samples(opts.rate) * 2]);
    let mut frames = 0u32;
    let mut digits: Vec<char> = opts.dtmf.chars().rev().collect();
    let mut next_digit: Option<Instant> = None;
    let far = start + Duration::from_secs(86_400);
    loop {
        let next_frame = if opts.send_audio { start + FRAME * frames } else { far };
        tokio::select! {
            _ = sleep_until(next_frame) => {
                send(&mut wr, &mut codec, Message::Audio { rate: opts.rate, pcm: silence.clone() }).await?;
                frames += 1;
            }
            Some(()) = press.recv() => {
                next_digit = Some(Instant::now());
            }
            _ = sleep_until(next_digit.unwrap_or(far)), if next_digit.is_some() && !digits.is_empty() => {
                let digit = digits.pop().expect("guarded");
                send(&mut wr, &mut codec, Message::Dtmf(digit)).await?;
                let _ = sent.send((digit, start.elapsed()));
                next_digit = Some(Instant::now() + opts.dtmf_gap);
            }
        }
    }
}

/// Writes one whole message in a single write, as Asterisk does.
async fn send(wr: &mut OwnedWriteHalf, codec: &mut AudioSocketCodec, message: Message) -> Result<()> {
    let buf = encode_message(codec, message).context("encoding a message")?;
    wr.write_all(&buf).await.context("writing to the server")
}

/// Parses `audiosocket://HOST:PORT`.
fn parse_url(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("audiosocket://")
        .with_context(|| format!("'{url}' does not start with audiosocket://"))?;
    let hostport = rest.trim_end_matches('/');
    anyhow::ensure!(
        hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
        "'{url}': expected audiosocket://HOST:PORT"
    );
    Ok(hostport.to_string())
}

pub async fn run(args: super::Args) -> Result<()> {
    let addr = parse_url(&args.url)?;
    let uuid = match &args.uuid {
        Some(text) => Uuid::parse_str(text).with_context(|| format!("--uuid '{text}' is not a UUID"))?,
        None => Uuid::new_v4(),
    };
    anyhow::ensure!(args.timeout > 0.0, "--timeout must be positive");
    let hangup_after = match args.hangup_after {
        Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--hangup-after must be a non-negative number of seconds, not {s}"),
        None => None,
    };
    let opts = LegOptions {
        dtmf: args.dtmf.clone(),
        hangup_after,
        timeout: Duration::from_secs_f64(args.timeout),
        ..LegOptions::default()
    };
    println!("calling {addr} as {uuid}");
    let leg = run_leg(&addr, uuid, opts).await?;
    wav::write_wav(&args.out, leg.rate, &leg.samples)?;
    println!("ended:                 {:?}", leg.end);
    for (digit, at) in &leg.dtmf_sent {
        println!("pressed {digit} at:          {:.1} ms", at.as_secs_f64() * 1000.0);
    }
    println!("{}", leg.report);
    println!(
        "recorded:              {} ({} Hz, {:.2} s)",
        args.out.display(),
        leg.rate,
        leg.samples.len() as f64 / leg.rate as f64
    );
    if let LegEnd::Error(why) = &leg.end {
        anyhow::bail!("call failed: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("audiosocket://127.0.0.1:9092").unwrap(), "127.0.0.1:9092");
        assert_eq!(parse_url("audiosocket://[::1]:9092/").unwrap(), "[::1]:9092");
        assert!(parse_url("agi://127.0.0.1:9092").is_err());
        assert!(parse_url("audiosocket://127.0.0.1").is_err());
        assert!(parse_url("audiosocket://:9092").is_err());
    }
}
