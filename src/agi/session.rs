//! One FastAGI connection: read the preamble, check the request, answer the channel, play
//! the speech (streamed over AudioSocket or as spool files) and report the result to the
//! dialplan in `XTTS_STATUS`, `XTTS_DIGIT`, `XTTS_DURATION` and `XTTS_ERROR`.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::Framed;
use uuid::Uuid;

use super::codec::{AgiCodec, AgiLine, Command, Preamble, PreambleDecoder, Script};
use super::file_mode;
use super::transcode::FileFormat;
use crate::calls::{CallRegistry, SpeakJob};
use crate::engine::{SpeechOptions, SpeechRequest};
use crate::serve::SharedServices;

/// Asterisk writes the whole preamble at once; a peer that does not is not Asterisk.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// After `EXEC AudioSocket` returns, the AudioSocket side's report is at most this late.
const OUTCOME_GRACE: Duration = Duration::from_secs(5);
/// Digits Asterisk can report as DTMF.
const DTMF_DIGITS: &str = "0123456789*#ABCD";
/// Query parameters the `say` script understands, besides the [`SpeechOptions`] names.
const PARAMS: [&str; 5] = ["voice", "lang", "mode", "escape", "control"];

/// How the speech reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `EXEC AudioSocket` back to this daemon: audio streams as it is synthesised.
    Stream,
    /// One spool file per sentence, played with `STREAM FILE`.
    File,
}

/// What a `say` request asks for, checked before anything is sent to the channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub request: SpeechRequest,
    pub mode: Mode,
    /// DTMF digits that stop playback.
    pub escape_digits: String,
    /// File mode: `CONTROL STREAM FILE` instead of `STREAM FILE`.
    pub control: bool,
}

/// How the request ended, as the dialplan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `SUCCESS`, `INTERRUPTED`, `HANGUP` or `FAILED`.
    pub status: &'static str,
    pub digit: Option<char>,
    pub played_ms: u64,
    /// Why it failed; empty otherwise.
    pub error: String,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome {
            status: "FAILED",
            digit: None,
            played_ms: 0,
            error: error.into(),
        }
    }
}

/// Why the session stops talking to the channel.
#[derive(Debug)]
pub enum Stop {
    /// `HANGUP`, a 511 reply or the socket closed: the channel is gone, just close.
    HungUp,
    /// The request failed but the channel is usable: report FAILED to the dialplan.
    Failed(String),
    /// The connection is unusable (I/O error, garbage from the peer).
    Broken(anyhow::Error),
}

/// The session's side of the AGI socket.
pub struct Conn {
    framed: Framed<TcpStream, AgiCodec>,
}

impl Conn {
    /// Sends a command and waits for its reply. `HANGUP` or 511 end the session at once
    /// (Asterisk keeps the AGI alive until we close, so there is no point in reading on).
    pub async fn command(&mut self, cmd: Command) -> Result<AgiLine, Stop> {
        tracing::debug!(command = cmd.name, args = ?cmd.args, "AGI command");
        self.framed
            .send(&cmd)
            .await
            .map_err(|e| Stop::Broken(anyhow!(e).context(format!("sending {}", cmd.name))))?;
        match self.next_line().await? {
            reply @ AgiLine::Reply { .. } => Ok(reply),
            AgiLine::Hangup | AgiLine::DeadChannel(_) => Err(Stop::HungUp),
            AgiLine::InvalidCommand(msg) => Err(Stop::Failed(format!("Asterisk refused {}: 510 {msg}", cmd.name))),
            AgiLine::Usage(usage) => Err(Stop::Failed(format!(
                "Asterisk rejected the syntax of {} (520): {}",
                cmd.name,
                usage.lines().next().unwrap_or("").trim()
            ))),
        }
    }

    /// Waits for something Asterisk sends unasked; only `HANGUP` (or EOF) is expected.
    /// Cancel-safe, so it can race other work in `select!`.
    pub async fn unsolicited(&mut self) -> Stop {
        match self.next_line().await {
            Ok(AgiLine::Hangup) | Ok(AgiLine::DeadChannel(_)) => Stop::HungUp,
            Ok(other) => Stop::Broken(anyhow!(
                "unexpected line from Asterisk with no command pending: {other:?}"
            )),
            Err(stop) => stop,
        }
    }

    async fn next_line(&mut self) -> Result<AgiLine, Stop> {
        match self.framed.next().await {
            Some(Ok(line)) => Ok(line),
            Some(Err(e)) => Err(Stop::Broken(anyhow!(e).context("reading from Asterisk"))),
            None => Err(Stop::HungUp),
        }
    }

    async fn set_variable(&mut self, name: &str, value: &str) -> Result<(), Stop> {
        self.command(Command::new("SET VARIABLE", [name, value]))
            .await
            .map(drop)
    }

    async fn verbose(&mut self, message: &str) -> Result<(), Stop> {
        self.command(Command::new(
            "VERBOSE",
            [format!("xttsd: {}", one_line(message)), "1".into()],
        ))
        .await
        .map(drop)
    }
}

/// A message fit for one command argument: no line breaks, and short enough for Asterisk's
/// 8 KiB command line.
fn one_line(message: &str) -> String {
    const MAX_CHARS: usize = 400;
    let mut clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_CHARS)
        .collect();
    if message.chars().count() > MAX_CHARS {
        clean.push_str("...");
    }
    clean
}

/// Serves one FastAGI connection to its end.
pub async fn run(stream: TcpStream, services: SharedServices) -> Result<()> {
    let mut framed = Framed::new(stream, PreambleDecoder);
    let preamble = match tokio::time::timeout(PREAMBLE_TIMEOUT, framed.next()).await {
        Err(_) => anyhow::bail!("no complete AGI preamble within {PREAMBLE_TIMEOUT:?}"),
        Ok(None) => anyhow::bail!("connection closed before the AGI preamble ended"),
        Ok(Some(preamble)) => preamble.context("bad AGI preamble")?,
    };
    tracing::info!(
        channel = %preamble.channel,
        uniqueid = %preamble.uniqueid,
        script = %preamble.network_script,
        "AGI request"
    );
    let mut conn = Conn {
        framed: framed.map_codec(|_| AgiCodec),
    };
    let is_voicebot = Script::parse(&preamble.network_script).is_ok_and(|s| s.name == "voicebot");
    let outcome = match plan(&preamble, &services) {
        _ if is_voicebot => match crate::voicebot::dial::agi(&mut conn, &services, &preamble).await {
            Ok(outcome) => outcome,
            Err(Stop::Failed(reason)) => Outcome::failed(reason),
            Err(Stop::HungUp) => return Ok(()),
            Err(Stop::Broken(e)) => return Err(e),
        },
        Err(reason) => Outcome::failed(format!("{reason:#}")),
        Ok(plan) => match speak(&mut conn, &services, &plan).await {
            Ok(outcome) => outcome,
            Err(Stop::Failed(reason)) => Outcome::failed(reason),
            Err(Stop::HungUp) => {
                tracing::info!(channel = %preamble.channel, "channel hung up");
                return Ok(());
            }
            Err(Stop::Broken(e)) => return Err(e),
        },
    };
    tracing::info!(channel = %preamble.channel, status = outcome.status, ms = outcome.played_ms, error = %outcome.error, "AGI request done");
    match report(&mut conn, &outcome).await {
        Ok(()) | Err(Stop::HungUp) => Ok(()),
        Err(Stop::Failed(reason)) => anyhow::bail!("reporting the result: {reason}"),
        Err(Stop::Broken(e)) => Err(e),
    }
    // Dropping `conn` closes the socket, which ends the AGI in Asterisk.
}

/// Checks the script, its query and the text, and asks the engine whether it can say it.
pub fn plan(preamble: &Preamble, services: &SharedServices) -> Result<Plan> {
    let script = Script::parse(&preamble.network_script).context("bad agi_network_script")?;
    anyhow::ensure!(
        script.name == "say",
        "unknown AGI script '{}': use agi://HOST:PORT/say?voice=NAME&lang=xx",
        script.name
    );
    let mut options = SpeechOptions::default();
    for (key, value) in &script.params {
        if SpeechOptions::NAMES.contains(&key.as_str()) {
            options.set(key, value).context("bad AGI URL parameter")?;
        } else if !PARAMS.contains(&key.as_str()) {
            anyhow::bail!(
                "unknown parameter '{key}' in the AGI URL (known: {}, {})",
                PARAMS.join(", "),
                SpeechOptions::NAMES.join(", ")
            );
        }
    }
    let cfg = &services.config;
    let mode = match script.param("mode").unwrap_or(&cfg.agi.mode) {
        "stream" => Mode::Stream,
        "file" => Mode::File,
        other => anyhow::bail!("mode must be stream or file, not '{other}'"),
    };
    let escape_digits = script.param("escape").unwrap_or("").to_string();
    if let Some(bad) = escape_digits.chars().find(|c| !DTMF_DIGITS.contains(*c)) {
        anyhow::bail!("escape digit '{bad}' is not a DTMF digit ({DTMF_DIGITS})");
    }
    let control = match script.param("control").unwrap_or("0") {
        "0" => false,
        "1" => true,
        other => anyhow::bail!("control must be 0 or 1, not '{other}'"),
    };
    // Asterisk splits AGI()'s arguments on commas, so text with commas arrives in pieces:
    // join them back with the comma and one space.
    let pieces: Vec<&str> = preamble
        .args
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .collect();
    let text = pieces.join(", ");
    anyhow::ensure!(!text.is_empty(), "no text to say: pass it as the AGI() arguments");
    let request = SpeechRequest {
        text,
        lang: non_empty(script.param("lang"))
            .unwrap_or(&cfg.engine.default_language)
            .to_string(),
        voice: non_empty(script.param("voice"))
            .unwrap_or(&cfg.engine.default_voice)
            .to_string(),
        options,
    };
    services.engine.validate(&request)?;
    Ok(Plan {
        request,
        mode,
        escape_digits,
        control,
    })
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

async fn speak(conn: &mut Conn, services: &SharedServices, plan: &Plan) -> Result<Outcome, Stop> {
    let answer = conn.command(Command::new("ANSWER", Vec::<String>::new())).await?;
    if answer.result_code() != Some(0) {
        return Err(Stop::Failed(format!("ANSWER failed: {answer:?}")));
    }
    match plan.mode {
        Mode::Stream => stream(conn, services, plan).await,
        Mode::File => {
            let format =
                FileFormat::parse(&services.config.agi.file_format).map_err(|e| Stop::Failed(e.to_string()))?;
            file_mode::play(conn, services, plan, format).await
        }
    }
}

/// A request parked for an AudioSocket call; removed again when the stream attempt ends,
/// so a call that never connects leaves nothing behind (on success it was taken already).
struct Parked {
    calls: CallRegistry,
    uuid: Uuid,
}

impl Drop for Parked {
    fn drop(&mut self) {
        if self.calls.cancel(&self.uuid) > 0 {
            tracing::info!(uuid = %self.uuid, "AudioSocket never fetched the speech; dropped it");
        }
    }
}

/// Parks the request under a fresh UUID and lets Asterisk fetch it over AudioSocket.
async fn stream(conn: &mut Conn, services: &SharedServices, plan: &Plan) -> Result<Outcome, Stop> {
    let uuid = Uuid::new_v4();
    let (done, outcome) = oneshot::channel();
    let _parked = Parked {
        calls: services.calls.clone(),
        uuid,
    };
    services.calls.enqueue(
        uuid,
        SpeakJob {
            request: plan.request.clone(),
            escape_digits: plan.escape_digits.clone(),
            hangup_after: true,
            done: Some(done),
        },
    );
    let address = &services.config.agi.audiosocket_address;
    let reply = conn
        .command(Command::new(
            "EXEC",
            ["AudioSocket".to_string(), format!("{uuid},{address}")],
        ))
        .await?;
    match reply.result_code() {
        Some(0) => {}
        Some(-2) => {
            return Err(Stop::Failed(
                "Asterisk has no AudioSocket application (app_audiosocket)".into(),
            ))
        }
        _ => {
            return Err(Stop::Failed(format!(
                "AudioSocket to {address} failed ({reply:?}); is the address reachable from Asterisk?"
            )))
        }
    }
    match tokio::time::timeout(OUTCOME_GRACE, outcome).await {
        Ok(Ok(played)) => Ok(Outcome {
            status: played.status,
            digit: played.digit,
            played_ms: played.played_ms,
            error: String::new(),
        }),
        Ok(Err(_)) => Err(Stop::Failed(
            "the AudioSocket session ended without playing the speech".into(),
        )),
        Err(_) => Err(Stop::Failed(format!(
            "no AudioSocket session for {uuid} reported back; did Asterisk connect to {address}?"
        ))),
    }
}

/// Sets the result variables, and logs a failure's reason on the Asterisk console.
async fn report(conn: &mut Conn, outcome: &Outcome) -> Result<(), Stop> {
    if !outcome.error.is_empty() {
        conn.verbose(&outcome.error).await?;
    }
    let digit = outcome.digit.map(String::from).unwrap_or_default();
    conn.set_variable("XTTS_STATUS", outcome.status).await?;
    conn.set_variable("XTTS_DIGIT", &digit).await?;
    conn.set_variable("XTTS_DURATION", &outcome.played_ms.to_string())
        .await?;
    conn.set_variable("XTTS_ERROR", &one_line(&outcome.error)).await?;
    Ok(())
}
