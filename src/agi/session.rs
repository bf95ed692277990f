//! One FastAGI connection: read the preamble, check the request, answer the channel, play
//! the speech (streamed over AudioSocket or as spool files) and report the result to the
//! dialplan in `XTTS_STATUS`, `XTTS_DIGIT`, `XTTS_DURATION`, `XTTS_ERROR` and `XTTS_REASON`.
//!
//! Every wait on Asterisk is bounded: a command's reply must come within `agi.reply_timeout_ms`
//! beyond the time the command has reason to take (a file's length, a live AudioSocket call).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use uuid::Uuid;

use super::codec::{AgiCodec, AgiLine, Command, Preamble, PreambleDecoder, Script};
use super::file_mode;
use crate::calls::{check_voice_name, CallRegistry, FailReason, PlayOutcome, SpeakJob};
use crate::engine::{SpeechOptions, SpeechRequest};
use crate::metrics::METRICS;
use crate::serve::SharedServices;

pub use crate::config::AgiMode as Mode;

/// Asterisk writes the whole preamble at once; a peer that does not is not Asterisk.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// After `EXEC AudioSocket` returns, the AudioSocket side's report is at most this late.
const OUTCOME_GRACE: Duration = Duration::from_secs(5);
/// How long Asterisk may take to connect the AudioSocket after `EXEC`.
const CONNECT_GRACE: Duration = Duration::from_secs(10);
/// After a `result=-1`, how long to wait for the `HANGUP` line that tells a caller hangup
/// from a failure.
const HANGUP_WAIT: Duration = Duration::from_millis(500);
/// How often a long command's reason to be busy is checked.
const BUSY_CHECK: Duration = Duration::from_millis(250);
/// Digits Asterisk can report as DTMF.
const DTMF_DIGITS: &str = "0123456789*#ABCD";
/// Query parameters the `say` script understands, besides the [`SpeechOptions`] names.
const PARAMS: [&str; 5] = ["voice", "lang", "mode", "escape", "control"];

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
    /// The failure's code for the dialplan (`XTTS_REASON`); None unless FAILED.
    pub reason: Option<FailReason>,
    /// The engine that spoke (`XTTS_ENGINE`: `xtts` or `builtin`); None when nothing was.
    pub engine: Option<&'static str>,
}

impl Outcome {
    pub fn failed(reason: FailReason, error: impl Into<String>) -> Self {
        Outcome {
            status: "FAILED",
            digit: None,
            played_ms: 0,
            error: error.into(),
            reason: Some(reason),
            engine: None,
        }
    }

    pub fn ended(status: &'static str, digit: Option<char>, played_ms: u64) -> Self {
        Outcome {
            status,
            digit,
            played_ms,
            error: String::new(),
            reason: None,
            engine: None,
        }
    }

    /// The same outcome, naming the engine that spoke.
    pub fn spoken_by(self, engine: Option<&'static str>) -> Self {
        Self { engine, ..self }
    }

    pub fn hangup(played_ms: u64) -> Self {
        Self::ended("HANGUP", None, played_ms)
    }
}

impl From<PlayOutcome> for Outcome {
    fn from(played: PlayOutcome) -> Self {
        let (reason, error) = match played.failure {
            Some((reason, error)) => (Some(reason), error),
            None => (None, String::new()),
        };
        Outcome {
            status: played.status,
            digit: played.digit,
            played_ms: played.played_ms,
            error,
            reason,
            engine: played.engine,
        }
    }
}

/// Why the session stops talking to the channel.
#[derive(Debug)]
pub enum Stop {
    /// `HANGUP`, a 511 reply or the socket closed: the channel is gone.
    HungUp,
    /// The request failed but the channel is usable: report FAILED to the dialplan.
    Failed(FailReason, String),
    /// Asterisk stopped answering: nothing more can be said to it.
    Silent(String),
    /// The connection is unusable (I/O error, garbage from the peer).
    Broken(anyhow::Error),
}

/// The session's side of the AGI socket.
pub struct Conn {
    framed: Framed<TcpStream, AgiCodec>,
    reply_timeout: Duration,
    /// Asterisk said `HANGUP`: the channel is gone (commands that work on a dead channel,
    /// such as SET VARIABLE, still get their replies).
    hung_up: bool,
}

impl Conn {
    /// Sends a command and waits for its reply, at most the reply timeout. `HANGUP` or 511
    /// end the session's speech at once.
    pub async fn command(&mut self, cmd: Command) -> Result<AgiLine, Stop> {
        self.command_while(cmd, || false).await
    }

    /// Sends a command and waits for its reply as long as `busy()` says Asterisk has reason
    /// to be busy with it, and the reply timeout beyond that.
    pub async fn command_while(&mut self, cmd: Command, mut busy: impl FnMut() -> bool) -> Result<AgiLine, Stop> {
        tracing::debug!(command = cmd.name, args = ?cmd.args, "AGI command");
        self.framed
            .send(&cmd)
            .await
            .map_err(|e| Stop::Broken(anyhow!(e).context(format!("sending {}", cmd.name))))?;
        let reply_timeout = self.reply_timeout;
        let read = read_reply(&mut self.framed, &mut self.hung_up, cmd.name);
        tokio::pin!(read);
        let mut check = tokio::time::interval(BUSY_CHECK);
        let mut idle_since = Instant::now();
        loop {
            tokio::select! {
                reply = &mut read => return reply,
                _ = check.tick() => {
                    if busy() {
                        idle_since = Instant::now();
                    } else if idle_since.elapsed() >= reply_timeout {
                        return Err(Stop::Silent(format!("no reply to {} within {reply_timeout:?}", cmd.name)));
                    }
                }
            }
        }
    }

    /// Waits for something Asterisk sends unasked; only `HANGUP` (or EOF) is expected.
    /// Cancel-safe, so it can race other work in `select!`.
    pub async fn unsolicited(&mut self) -> Stop {
        match next_line(&mut self.framed).await {
            Ok(AgiLine::Hangup) | Ok(AgiLine::DeadChannel(_)) => {
                self.hung_up = true;
                Stop::HungUp
            }
            Ok(other) => Stop::Broken(anyhow!(
                "unexpected line from Asterisk with no command pending: {other:?}"
            )),
            Err(stop) => stop,
        }
    }

    /// After a `result=-1`: whether the `HANGUP` line follows (a caller hangup, not a failure).
    pub async fn hangup_follows(&mut self) -> bool {
        self.hung_up
            || matches!(
                tokio::time::timeout(HANGUP_WAIT, self.unsolicited()).await,
                Ok(Stop::HungUp)
            )
    }

    async fn set_variable(&mut self, name: &str, value: &str) -> Result<(), Stop> {
        self.command(Command::new("SET VARIABLE", [name, value]))
            .await
            .map(drop)
    }

    /// A channel variable's value (`GET VARIABLE`); None when unset.
    pub async fn get_variable(&mut self, name: &str) -> Result<Option<String>, Stop> {
        match self.command(Command::new("GET VARIABLE", [name])).await? {
            AgiLine::Reply { result, data, .. } if result == "1" => Ok(data),
            _ => Ok(None),
        }
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

async fn next_line(framed: &mut Framed<TcpStream, AgiCodec>) -> Result<AgiLine, Stop> {
    match framed.next().await {
        Some(Ok(line)) => Ok(line),
        Some(Err(e)) => Err(Stop::Broken(anyhow!(e).context("reading from Asterisk"))),
        None => Err(Stop::HungUp),
    }
}

/// The reply to the command `name` just sent. A `HANGUP` line before it is noted in
/// `hung_up`; the command's own reply still follows (511, or 200 for the commands a dead
/// channel allows).
async fn read_reply(framed: &mut Framed<TcpStream, AgiCodec>, hung_up: &mut bool, name: &str) -> Result<AgiLine, Stop> {
    let mut line = next_line(framed).await?;
    while line == AgiLine::Hangup {
        *hung_up = true;
        line = next_line(framed).await?;
    }
    match line {
        reply @ AgiLine::Reply { .. } => Ok(reply),
        AgiLine::Hangup | AgiLine::DeadChannel(_) => Err(Stop::HungUp),
        AgiLine::InvalidCommand(msg) => Err(Stop::Failed(
            FailReason::Asterisk,
            format!("Asterisk refused {name}: 510 {msg}"),
        )),
        AgiLine::Usage(usage) => Err(Stop::Failed(
            FailReason::Asterisk,
            format!(
                "Asterisk rejected the syntax of {name} (520): {}",
                usage.lines().next().unwrap_or("").trim()
            ),
        )),
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
    let mut framed = Framed::new(stream, PreambleDecoder::default());
    let preamble = match tokio::time::timeout(PREAMBLE_TIMEOUT, framed.next()).await {
        Err(_) => anyhow::bail!("no complete AGI preamble within {PREAMBLE_TIMEOUT:?}"),
        Ok(None) => anyhow::bail!("connection closed before the AGI preamble ended"),
        Ok(Some(preamble)) => preamble.context("bad AGI preamble")?,
    };
    let span = tracing::Span::current();
    span.record("channel", preamble.channel.as_str());
    span.record("uniqueid", preamble.uniqueid.as_str());
    tracing::info!(script = %preamble.network_script, "AGI request");
    let mut conn = Conn {
        framed: framed.map_codec(|_| AgiCodec::default()),
        reply_timeout: Duration::from_millis(services.config.agi.reply_timeout_ms),
        hung_up: false,
    };
    let is_voicebot = Script::parse(&preamble.network_script).is_ok_and(|s| s.name == "voicebot");
    let outcome = if services.shutdown.is_draining() {
        Outcome::failed(FailReason::Shutdown, "shutdown")
    } else if is_voicebot {
        match crate::voicebot::dial::agi(&mut conn, &services, &preamble).await {
            Ok(outcome) => outcome,
            Err(Stop::Failed(reason, error)) => Outcome::failed(reason, error),
            Err(Stop::HungUp) => Outcome::hangup(0),
            Err(Stop::Silent(why)) => anyhow::bail!("Asterisk stopped answering: {why}"),
            Err(Stop::Broken(e)) => return Err(e),
        }
    } else {
        match plan(&preamble, &services) {
            Err(reason) => {
                METRICS.failed(FailReason::Invalid);
                Outcome::failed(FailReason::Invalid, format!("{reason:#}"))
            }
            Ok(plan) => match speak(&mut conn, &services, &plan).await {
                Ok(outcome) => outcome,
                Err(Stop::Failed(reason, error)) => Outcome::failed(reason, error),
                Err(Stop::HungUp) => Outcome::hangup(0),
                Err(Stop::Silent(why)) => {
                    METRICS.call_ended("agi", "SILENT");
                    anyhow::bail!("Asterisk stopped answering: {why}");
                }
                Err(Stop::Broken(e)) => return Err(e),
            },
        }
    };
    METRICS.call_ended("agi", outcome.status);
    tracing::info!(
        status = outcome.status,
        reason = outcome.reason.map(FailReason::as_str).unwrap_or(""),
        ms = outcome.played_ms,
        error = %outcome.error,
        "AGI request done"
    );
    match report(&mut conn, &outcome).await {
        Ok(()) | Err(Stop::HungUp) => Ok(()),
        // The channel is gone: the variables were for its `h` extension, if Asterisk still listens.
        Err(_) if outcome.status == "HANGUP" => Ok(()),
        Err(Stop::Failed(_, reason)) => anyhow::bail!("reporting the result: {reason}"),
        Err(Stop::Silent(why)) => anyhow::bail!("reporting the result: {why}"),
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
    let mode = match script.param("mode") {
        None => cfg.agi.mode,
        Some("stream") => Mode::Stream,
        Some("file") => Mode::File,
        Some(other) => anyhow::bail!("mode must be stream or file, not '{other}'"),
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
    let chars = text.chars().count();
    let limit = cfg.limits.max_text_chars;
    anyhow::ensure!(
        chars <= limit,
        "text is {chars} characters long; at most {limit} may be said at once (limits.max_text_chars)"
    );
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
    check_voice_name(&request.voice)?;
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
        return Err(Stop::Failed(FailReason::Asterisk, format!("ANSWER failed: {answer:?}")));
    }
    match plan.mode {
        Mode::Stream => stream(conn, services, plan).await,
        Mode::File => file_mode::play(conn, services, plan).await,
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
    tracing::Span::current().record("uuid", tracing::field::display(uuid));
    let (done, mut outcome) = oneshot::channel();
    let calls = services.calls.clone();
    let _parked = Parked {
        calls: calls.clone(),
        uuid,
    };
    calls
        .enqueue(
            uuid,
            SpeakJob {
                request: plan.request.clone(),
                escape_digits: plan.escape_digits.clone(),
                hangup_after: true,
                done: Some(done),
            },
        )
        .map_err(|e| Stop::Failed(FailReason::Busy, e.to_string()))?;
    let address = &services.config.agi.audiosocket_address;
    let exec = Command::new("EXEC", ["AudioSocket".to_string(), format!("{uuid},{address}")]);
    let asked = Instant::now();
    // Asterisk is busy with EXEC while the call it connected is live (however long the
    // speech), or while it may still be connecting.
    let reply = conn
        .command_while(exec, || {
            calls.is_live(&uuid) || (calls.is_pending(&uuid) && asked.elapsed() < CONNECT_GRACE)
        })
        .await;
    let attached = !calls.is_pending(&uuid);
    let reply = match reply {
        Ok(reply) => reply,
        Err(Stop::HungUp) => return Ok(Outcome::hangup(played_before_hangup(&mut outcome, attached).await)),
        Err(other) => return Err(other),
    };
    match reply.result_code() {
        Some(0) => {}
        Some(-2) => {
            return Err(Stop::Failed(
                FailReason::Asterisk,
                "Asterisk has no AudioSocket application (app_audiosocket)".into(),
            ))
        }
        _ => {
            // -1: the caller hung up, or Asterisk could not connect. The AudioSocket side
            // saw a hangup, or Asterisk follows with `HANGUP`.
            if attached {
                if let Ok(Ok(played)) = tokio::time::timeout(OUTCOME_GRACE, &mut outcome).await {
                    if played.status == "HANGUP" {
                        return Ok(Outcome::hangup(played.played_ms));
                    }
                }
            }
            if conn.hangup_follows().await {
                return Ok(Outcome::hangup(0));
            }
            return Err(Stop::Failed(
                FailReason::Asterisk,
                format!("AudioSocket to {address} failed ({reply:?}); is the address reachable from Asterisk?"),
            ));
        }
    }
    match tokio::time::timeout(OUTCOME_GRACE, outcome).await {
        Ok(Ok(played)) => Ok(played.into()),
        Ok(Err(_)) => Err(Stop::Failed(
            FailReason::Engine,
            "the AudioSocket session ended without playing the speech".into(),
        )),
        Err(_) => Err(Stop::Failed(
            FailReason::Timeout,
            format!("no AudioSocket session for {uuid} reported back; did Asterisk connect to {address}?"),
        )),
    }
}

/// What the AudioSocket side had played when the channel hung up.
async fn played_before_hangup(outcome: &mut oneshot::Receiver<PlayOutcome>, attached: bool) -> u64 {
    if !attached {
        return 0;
    }
    match tokio::time::timeout(OUTCOME_GRACE, outcome).await {
        Ok(Ok(played)) => played.played_ms,
        _ => 0,
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
    let reason = outcome.reason.map(FailReason::as_str).unwrap_or("");
    conn.set_variable("XTTS_REASON", reason).await?;
    conn.set_variable("XTTS_ENGINE", outcome.engine.unwrap_or_default())
        .await?;
    Ok(())
}
