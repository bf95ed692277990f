//! The session's side of the AGI conversation: commands and their replies with bounded
//! waits, and how a request ended (for the dialplan) or why the conversation stopped.

use std::time::Duration;

use anyhow::anyhow;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::codec::{AgiCodec, AgiLine, Command};
use crate::calls::{FailReason, PlayOutcome};

/// After a `result=-1`, how long to wait for the `HANGUP` line that tells a caller hangup
/// from a failure.
const HANGUP_WAIT: Duration = Duration::from_millis(500);
/// How often a long command's reason to be busy is checked.
const BUSY_CHECK: Duration = Duration::from_millis(250);

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
    /// The conversation after the preamble (read by `preamble`'s codec).
    pub fn new<C>(preamble: Framed<TcpStream, C>, reply_timeout: Duration) -> Self {
        Conn {
            framed: preamble.map_codec(|_| AgiCodec::default()),
            reply_timeout,
            hung_up: false,
        }
    }

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

    pub async fn set_variable(&mut self, name: &str, value: &str) -> Result<(), Stop> {
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

    pub async fn verbose(&mut self, message: &str) -> Result<(), Stop> {
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
pub(super) fn one_line(message: &str) -> String {
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
