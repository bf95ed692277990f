//! Outbound bots: xttsd opens the WebSocket to a bot named in `[voicebot.bots]`, so the bot
//! never has to learn call UUIDs. A call reaches a bot through the dialplan
//! (`AGI(agi://HOST:PORT/voicebot?bot=NAME&lang=xx)`: the AGI session dials the bot, then
//! hands the channel to AudioSocket) or, for plain AudioSocket calls, `voicebot.audiosocket_bot`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use super::session::Start;
use crate::agi::codec::{Command, Preamble, Script};
use crate::agi::session::{Conn, Outcome, Stop};
use crate::calls::FailReason;
use crate::serve::SharedServices;

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

/// Connects to bot `name` for the call in `start` and runs its session in the background;
/// returns once the session controls the call, or why it could not.
pub async fn dial(services: &SharedServices, name: &str, mut start: Start) -> Result<(), String> {
    let cfg = &services.config.voicebot;
    let Some(bot) = cfg.bots.get(name) else {
        let known: Vec<&str> = cfg.bots.keys().map(String::as_str).collect();
        return Err(format!(
            "no bot named '{name}' in [voicebot.bots] (known: {})",
            known.join(", ")
        ));
    };
    let url = bot.url.replace("{call_id}", &start.call_id.to_string());
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bot '{name}': bad url {url}: {e}"))?;
    if !bot.token.is_empty() {
        let value = HeaderValue::from_str(&format!("Bearer {}", bot.token))
            .map_err(|_| format!("bot '{name}': the token is not a valid header value"))?;
        request.headers_mut().insert("Authorization", value);
    }
    let limit = Duration::from_millis(cfg.connect_timeout_ms);
    let socket = match tokio::time::timeout(limit, tokio_tungstenite::connect_async(request)).await {
        Err(_) => return Err(format!("bot '{name}' at {url} did not answer within {limit:?}")),
        Ok(Err(e)) => return Err(format!("bot '{name}' at {url} is unreachable: {e}")),
        Ok(Ok((socket, _response))) => socket,
    };
    let (registered, took) = oneshot::channel();
    start.registered = Some(registered);
    let call_id = start.call_id;
    let services = services.clone();
    tokio::spawn(async move {
        tracing::info!(call = %call_id, "voicebot dialled");
        super::socket::serve(socket, services, start).await;
        tracing::info!(call = %call_id, "voicebot session ended");
    });
    match took.await {
        Ok(true) => Ok(()),
        Ok(false) => Err("another bot already controls this call".into()),
        Err(_) => Err("the bot's session ended before it started".into()),
    }
}

/// `AGI(agi://…/voicebot?bot=NAME&lang=xx)`: answers the channel, dials the bot with the
/// call's caller ID, DNID and uniqueid, and hands the channel to AudioSocket until the call
/// or the bot ends it. A bot that cannot be reached fails the request (`XTTS_STATUS=FAILED`).
pub async fn agi(conn: &mut Conn, services: &SharedServices, preamble: &Preamble) -> Result<Outcome, Stop> {
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
    dial(services, bot, start)
        .await
        .map_err(|why| Stop::Failed(FailReason::Bot, why))?;
    let address = &services.config.agi.audiosocket_address;
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
            end_unattached(services, call_id);
            return Err(stop);
        }
    };
    if reply.result_code() != Some(0) {
        end_unattached(services, call_id);
        return Err(Stop::Failed(
            FailReason::Asterisk,
            format!("AudioSocket to {address} failed ({reply:?})"),
        ));
    }
    Ok(Outcome::ended("SUCCESS", None, began.elapsed().as_millis() as u64))
}

/// The channel never reached AudioSocket: the bot's session ends as a hangup.
fn end_unattached(services: &SharedServices, call_id: Uuid) {
    if let Some(controller) = services.calls.controller(&call_id) {
        controller.ended(true);
    }
}

/// An AudioSocket call with nothing queued for it goes to `voicebot.audiosocket_bot`, if set.
/// Returns whether a bot now controls the call.
pub async fn dial_audiosocket_call(services: &SharedServices, call_id: Uuid) -> bool {
    let bot = services.config.voicebot.audiosocket_bot.clone();
    if bot.is_empty() || services.calls.controller(&call_id).is_some() {
        return false;
    }
    match dial(services, &bot, Start::new(call_id)).await {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(call = %call_id, reason = %why, "cannot dial the AudioSocket bot");
            false
        }
    }
}
