//! One FastAGI connection: read the preamble, check the request, answer the channel, play
//! the speech (streamed over AudioSocket or as spool files) and report the result to the
//! dialplan in `XTTS_STATUS`, `XTTS_DIGIT`, `XTTS_DURATION`, `XTTS_ERROR` and `XTTS_REASON`.
//!
//! Every wait on Asterisk is bounded: a command's reply must come within `agi.reply_timeout_ms`
//! beyond the time the command has reason to take (a file's length, a live AudioSocket call).

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use uuid::Uuid;

pub use super::conn::{Conn, Outcome, Stop};
pub use super::plan::{plan, Mode, Plan};

use super::codec::{Command, PreambleDecoder, Script};
use super::conn::one_line;
use super::file_mode;
use super::SharedAgiContext;
use crate::calls::{CallRegistry, FailReason, PlayOutcome, SpeakJob};
use crate::metrics::METRICS;

/// Asterisk writes the whole preamble at once; a peer that does not is not Asterisk.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// After `EXEC AudioSocket` returns, the AudioSocket side's report is at most this late.
const OUTCOME_GRACE: Duration = Duration::from_secs(5);
/// How long Asterisk may take to connect the AudioSocket after `EXEC`.
const CONNECT_GRACE: Duration = Duration::from_secs(10);

/// Serves one FastAGI connection to its end.
pub async fn run(stream: TcpStream, ctx: SharedAgiContext) -> Result<()> {
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
    let mut conn = Conn::new(framed, Duration::from_millis(ctx.config.reply_timeout_ms));
    let is_voicebot = Script::parse(&preamble.network_script).is_ok_and(|s| s.name == "voicebot");
    let outcome = if ctx.shutdown.is_draining() {
        Outcome::failed(FailReason::Shutdown, "shutdown")
    } else if is_voicebot {
        match super::voicebot::run(&mut conn, &ctx, &preamble).await {
            Ok(outcome) => outcome,
            Err(Stop::Failed(reason, error)) => Outcome::failed(reason, error),
            Err(Stop::HungUp) => Outcome::hangup(0),
            Err(Stop::Silent(why)) => anyhow::bail!("Asterisk stopped answering: {why}"),
            Err(Stop::Broken(e)) => return Err(e),
        }
    } else {
        match plan(&preamble, &ctx) {
            Err(reason) => {
                METRICS.failed(FailReason::Invalid);
                Outcome::failed(FailReason::Invalid, format!("{reason:#}"))
            }
            Ok(plan) => match speak(&mut conn, &ctx, &plan).await {
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
async fn speak(conn: &mut Conn, ctx: &SharedAgiContext, plan: &Plan) -> Result<Outcome, Stop> {
    let answer = conn.command(Command::new("ANSWER", Vec::<String>::new())).await?;
    if answer.result_code() != Some(0) {
        return Err(Stop::Failed(FailReason::Asterisk, format!("ANSWER failed: {answer:?}")));
    }
    match plan.mode {
        Mode::Stream => stream(conn, ctx, plan).await,
        Mode::File => file_mode::play(conn, ctx, plan).await,
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
async fn stream(conn: &mut Conn, ctx: &SharedAgiContext, plan: &Plan) -> Result<Outcome, Stop> {
    let uuid = Uuid::new_v4();
    tracing::Span::current().record("uuid", tracing::field::display(uuid));
    let (done, mut outcome) = oneshot::channel();
    let calls = ctx.calls.clone();
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
    let address = &ctx.config.audiosocket_address;
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
