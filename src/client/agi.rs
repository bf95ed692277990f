//! The FastAGI side of `xttsd call`: plays Asterisk's part of `AGI(agi://HOST:PORT/say?...)`.
//! It sends the preamble in Asterisk's order and answers each command as Asterisk does:
//! `ANSWER`, `VERBOSE`, `SET/GET VARIABLE`, `NOOP`, `HANGUP`, `STREAM FILE` and
//! `CONTROL STREAM FILE` (reads the spool file and plays it in real time), and
//! `EXEC AudioSocket` (runs the AudioSocket leg). Anything else gets 510; after a hangup,
//! commands that need a live channel get 511.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::sleep_until;
use tokio_util::codec::{FramedRead, LinesCodec};
use uuid::Uuid;

use super::audiosocket::{run_leg, LegEnd, LegOptions};
use super::report::{is_voiced, Arrival, PacingReport};
use crate::agi::codec::{quote_arg, split_args, MAX_COMMAND_LEN};
use crate::audio::{frame_samples, g711, resample_all, shaping::to_i16, wav, FRAME_MS};

const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);
/// Audio is recorded at the narrowband rate a call carries.
const RATE: u32 = 8000;
/// A digit is pressed this far into playback.
const DTMF_AFTER: Duration = Duration::from_millis(500);
/// Commands Asterisk still runs on a hung-up channel.
const DEAD_OK: [&str; 5] = ["EXEC", "GET VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP"];

/// What the call does, from the command line.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// `agi://HOST[:PORT][/script?query]`.
    pub url: String,
    pub text: String,
    pub dtmf: String,
    pub hangup_after: Option<Duration>,
}

/// What the call heard and was told.
#[derive(Debug, Default)]
pub struct CallRecord {
    /// Every command received, as sent.
    pub commands: Vec<String>,
    /// `SET VARIABLE` names and values, in order.
    pub variables: Vec<(String, String)>,
    /// Audio heard, 8 kHz.
    pub audio: Vec<i16>,
    /// Every frame of audio heard, timed from the start of the call.
    pub arrivals: Vec<Arrival>,
    /// From sending the preamble to the server closing the connection.
    pub duration: Duration,
}

impl CallRecord {
    /// Pacing figures of everything heard, spool files and AudioSocket alike.
    pub fn pacing(&self) -> PacingReport {
        PacingReport::from_arrivals(&self.arrivals, self.duration)
    }

    /// Records a frame heard at 8 kHz.
    fn hear(&mut self, at: Duration, frame: &[i16]) {
        self.arrivals.push(Arrival {
            at,
            bytes: frame.len() * 2,
            rate: RATE,
            voiced: is_voiced(frame),
        });
        self.audio.extend_from_slice(frame);
    }
}

pub async fn run(args: super::Args) -> Result<()> {
    let opts = CallOptions {
        url: args.url.clone(),
        text: args.text.clone().unwrap_or_default(),
        dtmf: args.dtmf.clone(),
        hangup_after: args.hangup_after.map(Duration::from_secs_f64),
    };
    let record = tokio::time::timeout(Duration::from_secs_f64(args.timeout), call(&opts))
        .await
        .with_context(|| format!("call still running after {} s", args.timeout))??;
    println!("{}", record.pacing());
    for (name, value) in &record.variables {
        println!("{name}={value}");
    }
    wav::write_wav(&args.out, RATE, &record.audio)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Splits `agi://HOST[:PORT][/script]` into the address to dial and the script.
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("agi://")
        .with_context(|| format!("'{url}' is not an agi:// URL"))?;
    let (hostport, script) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(!hostport.is_empty(), "'{url}' has no host");
    let has_port = hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let addr = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:4573") // FastAGI's default port
    };
    Ok((addr, script.to_string()))
}

/// The preamble Asterisk 22 sends, in its order, for a PJSIP caller.
pub fn preamble(url: &str, script: &str, args: &[&str]) -> String {
    let mut lines = vec![("agi_network", "yes".to_string())];
    if !script.is_empty() {
        lines.push(("agi_network_script", script.to_string()));
    }
    let fixed = [
        ("agi_request", url),
        ("agi_channel", "PJSIP/xttsd-call-00000001"),
        ("agi_language", "en"),
        ("agi_type", "PJSIP"),
        ("agi_uniqueid", "1700000000.1"),
        ("agi_version", "22.10.1"),
        ("agi_callerid", "unknown"),
        ("agi_calleridname", "unknown"),
        ("agi_callingpres", "67"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "xttsd-call"),
        ("agi_extension", "s"),
        ("agi_priority", "1"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "1"),
    ];
    lines.extend(fixed.iter().map(|(k, v)| (*k, v.to_string())));
    let mut text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    for (i, arg) in args.iter().enumerate() {
        text.push_str(&format!("agi_arg_{}: {arg}\n", i + 1));
    }
    text.push('\n');
    text
}

/// Runs one AGI call to its end (the server closes the connection).
pub async fn call(opts: &CallOptions) -> Result<CallRecord> {
    let (addr, script) = parse_url(&opts.url)?;
    let stream = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let args: Vec<&str> = if opts.text.is_empty() { vec![] } else { vec![&opts.text] };
    write.write_all(preamble(&opts.url, &script, &args).as_bytes()).await?;
    let start = Instant::now();
    let mut channel = Channel {
        lines: FramedRead::new(read, LinesCodec::new_with_max_length(MAX_COMMAND_LEN)),
        out: write,
        start,
        hangup_at: opts.hangup_after.map(|d| start + d),
        dead: false,
        dtmf: opts.dtmf.chars().collect(),
        next: None,
        record: CallRecord::default(),
    };
    channel.serve().await?;
    channel.record.duration = start.elapsed();
    Ok(channel.record)
}

/// Asterisk's channel as seen from the AGI socket.
struct Channel {
    lines: FramedRead<OwnedReadHalf, LinesCodec>,
    out: OwnedWriteHalf,
    start: Instant,
    hangup_at: Option<Instant>,
    dead: bool,
    dtmf: VecDeque<char>,
    /// A command that arrived during playback (it interrupts the playback).
    next: Option<String>,
    record: CallRecord,
}

/// What a read from the socket gave.
enum Input {
    Line(String),
    Closed,
    HangupTime,
}

impl Channel {
    async fn serve(&mut self) -> Result<()> {
        loop {
            let line = match self.next.take() {
                Some(line) => line,
                None => match self.read().await? {
                    Input::Line(line) => line,
                    Input::Closed => return Ok(()),
                    Input::HangupTime => {
                        self.hang_up().await?;
                        continue;
                    }
                },
            };
            self.record.commands.push(line.clone());
            self.handle(&line).await?;
        }
    }

    async fn read(&mut self) -> Result<Input> {
        let deadline = self.hangup_at.filter(|_| !self.dead);
        tokio::select! {
            line = self.lines.next() => match line {
                Some(line) => Ok(Input::Line(line.context("reading a command")?)),
                None => Ok(Input::Closed),
            },
            _ = sleep_until(deadline.unwrap_or_else(far_future).into()), if deadline.is_some() => Ok(Input::HangupTime),
        }
    }

    async fn send(&mut self, line: &str) -> Result<()> {
        self.out
            .write_all(format!("{line}\n").as_bytes())
            .await
            .context("writing to the AGI server")
    }

    async fn hang_up(&mut self) -> Result<()> {
        self.dead = true;
        self.send("HANGUP").await
    }

    async fn handle(&mut self, line: &str) -> Result<()> {
        let words = split_args(line);
        let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
        let known = [
            "CONTROL STREAM FILE",
            "STREAM FILE",
            "SET VARIABLE",
            "GET VARIABLE",
            "ANSWER",
            "VERBOSE",
            "EXEC",
            "NOOP",
            "HANGUP",
        ];
        let Some(name) = known.iter().find(|k| {
            k.split(' ')
                .eq(upper.iter().map(String::as_str).take(k.split(' ').count()))
        }) else {
            return self.send("510 Invalid or unknown command").await;
        };
        let args = &words[name.split(' ').count()..];
        if self.dead && !DEAD_OK.contains(name) {
            return self
                .send("511 Command Not Permitted on a dead channel or intercept routine")
                .await;
        }
        match (*name, args) {
            ("ANSWER", _) | ("NOOP", _) => self.send("200 result=0").await,
            ("VERBOSE", [message, ..]) => {
                eprintln!("VERBOSE {message}");
                self.send("200 result=1").await
            }
            ("SET VARIABLE", [name, value]) => {
                self.record.variables.push((name.clone(), value.clone()));
                self.send("200 result=1").await
            }
            ("GET VARIABLE", [name]) => {
                let value = self.record.variables.iter().rev().find(|(n, _)| n == name);
                match value.map(|(_, v)| v.clone()) {
                    Some(v) => self.send(&format!("200 result=1 ({v})")).await,
                    None => self.send("200 result=0").await,
                }
            }
            ("HANGUP", _) => {
                self.send("200 result=1").await?;
                self.hang_up().await
            }
            ("EXEC", [app, app_args @ ..]) => self.exec(app, &app_args.join(" ")).await,
            ("STREAM FILE", [file, escape, ..]) => self.stream_file(file, escape, false).await,
            ("CONTROL STREAM FILE", [file, escape, ..]) => self.stream_file(file, escape, true).await,
            _ => {
                self.send("520 Invalid command syntax.  Proper usage not available.")
                    .await
            }
        }
    }

    async fn exec(&mut self, app: &str, app_args: &str) -> Result<()> {
        if !app.eq_ignore_ascii_case("AudioSocket") {
            return self.send("200 result=-2").await;
        }
        let (uuid, addr) = match app_args
            .split_once(',')
            .map(|(u, a)| (Uuid::parse_str(u.trim()), a.trim()))
        {
            Some((Ok(uuid), addr)) if !addr.is_empty() => (uuid, addr.to_string()),
            _ => {
                eprintln!("AudioSocket: bad arguments {}", quote_arg(app_args));
                return self.send("200 result=-1").await;
            }
        };
        // The leg hangs up at the call's hangup time, measured from its own connect.
        let hangup_after = self
            .hangup_at
            .filter(|_| !self.dead)
            .map(|at| at.saturating_duration_since(Instant::now()));
        let opts = LegOptions {
            dtmf: self.dtmf.drain(..).collect(),
            hangup_after,
            ..LegOptions::default()
        };
        let leg_start = self.start.elapsed();
        let leg = match run_leg(&addr, uuid, opts).await {
            Ok(leg) => leg,
            Err(e) => {
                eprintln!("AudioSocket leg failed: {e:#}");
                return self.send("200 result=-1").await;
            }
        };
        let heard = if leg.rate == RATE {
            leg.samples
        } else {
            let wide: Vec<f32> = leg.samples.iter().map(|&s| s as f32 / 32768.0).collect();
            resample_all(&wide, leg.rate, RATE)?.into_iter().map(to_i16).collect()
        };
        // Each received frame, as its share of the 8 kHz audio, timed from the call's start.
        let mut rest = heard.as_slice();
        for arrival in &leg.arrivals {
            let n = (arrival.bytes / 2) * RATE as usize / arrival.rate as usize;
            let (frame, tail) = rest.split_at(n.min(rest.len()));
            self.record.hear(leg_start + arrival.at, frame);
            rest = tail;
        }
        match leg.end {
            // Asterisk's app returns success when the server ends the session.
            LegEnd::ServerHangup | LegEnd::Closed => self.send("200 result=0").await,
            LegEnd::CallerHangup => {
                self.send("200 result=-1").await?;
                self.hang_up().await
            }
            LegEnd::TimedOut | LegEnd::Error(_) => {
                eprintln!("AudioSocket leg ended with {:?}", leg.end);
                self.send("200 result=-1").await
            }
        }
    }

    /// Plays a spool file in real time, as Asterisk would; a digit in `escape` stops it, so
    /// does the next command or the hangup time.
    async fn stream_file(&mut self, file: &str, escape: &str, control: bool) -> Result<()> {
        let Some((samples, file_rate)) = read_audio_file(Path::new(file))? else {
            return self.send("200 result=-1 endpos=0").await;
        };
        let endpos = |played: usize| {
            let file_samples = played * file_rate as usize / RATE as usize;
            if control {
                file_samples * 1000 / file_rate as usize // milliseconds
            } else {
                file_samples
            }
        };
        let begin = Instant::now();
        let mut played = 0;
        for (n, frame) in samples.chunks(frame_samples(RATE)).enumerate() {
            let due = begin + FRAME * n as u32;
            tokio::select! {
                line = self.lines.next() => {
                    // A new command stops playback; the stopped one gets no reply.
                    match line {
                        Some(line) => self.next = Some(line.context("reading a command")?),
                        None => return Ok(()),
                    }
                    return Ok(());
                }
                _ = sleep_until(self.hangup_at.filter(|_| !self.dead).unwrap_or_else(far_future).into()) => {
                    self.hang_up().await?;
                    return self.send(&format!("200 result=-1 endpos={}", endpos(played))).await;
                }
                _ = sleep_until(due.into()) => {}
            }
            if begin.elapsed() >= DTMF_AFTER {
                if let Some(digit) = self.dtmf.pop_front() {
                    eprintln!("pressed {digit}");
                    if escape.contains(digit) {
                        return self
                            .send(&format!("200 result={} endpos={}", digit as u32, endpos(played)))
                            .await;
                    }
                }
            }
            let at = self.start.elapsed();
            self.record.hear(at, frame);
            played += frame.len();
        }
        self.send(&format!("200 result=0 endpos={}", endpos(played))).await
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Reads `<file>.ulaw` or `<file>.sln16` as 8 kHz samples, with the file's own rate;
/// None when neither exists.
fn read_audio_file(stem: &Path) -> Result<Option<(Vec<i16>, u32)>> {
    let with_ext = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
    let ulaw = with_ext("ulaw");
    if ulaw.exists() {
        let bytes = std::fs::read(&ulaw).with_context(|| format!("cannot read {}", ulaw.display()))?;
        return Ok(Some((g711::ulaw_decode_all(&bytes), 8000)));
    }
    let sln16 = with_ext("sln16");
    if sln16.exists() {
        let bytes = std::fs::read(&sln16).with_context(|| format!("cannot read {}", sln16.display()))?;
        let wide: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
            .collect();
        let samples = resample_all(&wide, 16000, RATE)?.into_iter().map(to_i16).collect();
        return Ok(Some((samples, 16000)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_script() {
        assert_eq!(
            parse_url("agi://127.0.0.1:4573/say?voice=a&lang=de").unwrap(),
            ("127.0.0.1:4573".into(), "say?voice=a&lang=de".into())
        );
        assert_eq!(parse_url("agi://pbx/say").unwrap(), ("pbx:4573".into(), "say".into()));
        assert_eq!(parse_url("agi://[::1]:5000").unwrap(), ("[::1]:5000".into(), "".into()));
        assert!(parse_url("http://x/say").is_err());
        assert!(parse_url("agi:///say").is_err());
    }

    #[test]
    fn preamble_follows_asterisks_order_and_parses_back() {
        let text = preamble("agi://h:1/say?lang=de", "say?lang=de", &["Hello, world"]);
        let names: Vec<&str> = text.lines().filter_map(|l| l.split(": ").next()).collect();
        assert_eq!(
            names[..4],
            ["agi_network", "agi_network_script", "agi_request", "agi_channel"]
        );
        assert!(text.contains("agi_accountcode: \n"));
        assert!(text.ends_with("agi_arg_1: Hello, world\n\n"));
        let p = crate::agi::codec::Preamble::parse(&text).unwrap();
        assert_eq!(p.network_script, "say?lang=de");
        assert_eq!(p.args, vec!["Hello, world"]);
        // Without a path Asterisk leaves out agi_network_script.
        assert!(!preamble("agi://h", "", &[]).contains("agi_network_script"));
    }
}
