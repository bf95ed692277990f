//! The `voicebot` AGI script: `AGI(agi://HOST:PORT/voicebot?bot=NAME&lang=xx)` dials the bot
//! named in `[voicebot.bots]`, then hands the channel to AudioSocket, where the bot's session
//! meets the call.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::codec::{Command, Preamble, Script};
use super::session::{Conn, Outcome, Stop};
use super::AgiContext;
use crate::calls::FailReason;
use crate::voicebot::dial::dial;
use crate::voicebot::session::Start;

/// Query parameters of the `voicebot` AGI script.
const PARAMS: [&str; 3] = ["bot", "lang", "voice"];
/// Preamble variables passed to the bot in `session.started.vars`, by their name there.
const CALL_VARS: [(&str, &str); 6] = [
    ("agi_callerid", "caller_id"),
    ("agi_calleridname", "caller_name"),
    ("agi_dnid", "dnid"),
    ("agi_uniqueid", "uniqueid"),
    ("agi_channel", "channel"),
    ("agi_extension", "extension"),
];

/// `AGI(agi://…/voicebot?bot=NAME&lang=xx)`: answers the channel, dials the bot with the
/// call's caller ID, DNID and uniqueid, and hands the channel to AudioSocket until the call
/// or the bot ends it. A bot that cannot be reached fails the request (`XTTS_STATUS=FAILED`).
pub async fn run(conn: &mut Conn, ctx: &AgiContext, preamble: &Preamble) -> Result<Outcome, Stop> {
    let script = Script::parse(&preamble.network_script)
        .map_err(|e| Stop::Failed(FailReason::Invalid, format!("bad agi_network_script: {e}")))?;
    if let Some((key, _)) = script.params.iter().find(|(k, _)| !PARAMS.contains(&k.as_str())) {
        return Err(Stop::Failed(
            FailReason::Invalid,
            format!(
                "unknown parameter '{key}' in the voicebot AGI URL (known: {})",
                PARAMS.join(", ")
            ),
        ));
    }
    let Some(bot) = script.param("bot").filter(|b| !b.is_empty()) else {
        return Err(Stop::Failed(
            FailReason::Invalid,
            "voicebot needs ?bot=NAME (one of [voicebot.bots])".into(),
        ));
    };
    let call_id = Uuid::new_v4();
    let mut vars = BTreeMap::new();
    for (agi_name, name) in CALL_VARS {
        if let Some(value) = preamble.vars.get(agi_name) {
            vars.insert(name.to_string(), value.clone());
        }
    }
    for (i, arg) in preamble.args.iter().enumerate() {
        vars.insert(format!("arg_{}", i + 1), arg.clone());
    }
    let start = Start {
        call_id,
        vars,
        voice: script.param("voice").map(String::from),
        lang: script.param("lang").map(String::from),
        registered: None,
    };
    let answer = conn.command(Command::new("ANSWER", Vec::<String>::new())).await?;
    if answer.result_code() != Some(0) {
        return Err(Stop::Failed(FailReason::Asterisk, format!("ANSWER failed: {answer:?}")));
    }
    dial(&ctx.bots, bot, start)
        .await
        .map_err(|why| Stop::Failed(FailReason::Bot, why))?;
    let address = &ctx.config.audiosocket_address;
    let began = std::time::Instant::now();
    let reply = conn
        .command(Command::new(
            "EXEC",
            ["AudioSocket".to_string(), format!("{call_id},{address}")],
        ))
        .await;
    let reply = match reply {
        Ok(reply) => reply,
        Err(stop) => {
            end_unattached(ctx, call_id);
            return Err(stop);
        }
    };
    if reply.result_code() != Some(0) {
        end_unattached(ctx, call_id);
        return Err(Stop::Failed(
            FailReason::Asterisk,
            format!("AudioSocket to {address} failed ({reply:?})"),
        ));
    }
    Ok(Outcome::ended("SUCCESS", None, began.elapsed().as_millis() as u64))
}

/// The channel never reached AudioSocket: the bot's session ends as a hangup.
fn end_unattached(ctx: &AgiContext, call_id: Uuid) {
    if let Some(controller) = ctx.calls.controller(&call_id) {
        controller.ended(true);
    }
}
