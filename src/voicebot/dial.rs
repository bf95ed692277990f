//! Outbound bots: xttsd opens the WebSocket to a bot named in `[voicebot.bots]`, so the bot
//! never has to learn call UUIDs. A call reaches a bot through the dialplan
//! (`AGI(agi://HOST:PORT/voicebot?bot=NAME&lang=xx)`, see [`crate::agi::voicebot`]) or, for
//! plain AudioSocket calls, `voicebot.audiosocket_bot`.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use super::session::Start;
use super::SharedBots;

/// Connects to bot `name` for the call in `start` and runs its session in the background;
/// returns once the session controls the call, or why it could not.
pub async fn dial(bots: &SharedBots, name: &str, mut start: Start) -> Result<(), String> {
    let cfg = &bots.config;
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
    let bots = bots.clone();
    tokio::spawn(async move {
        tracing::info!(call = %call_id, "voicebot dialled");
        super::socket::serve(socket, bots, start).await;
        tracing::info!(call = %call_id, "voicebot session ended");
    });
    match took.await {
        Ok(true) => Ok(()),
        Ok(false) => Err("another bot already controls this call".into()),
        Err(_) => Err("the bot's session ended before it started".into()),
    }
}

/// An AudioSocket call with nothing queued for it goes to `voicebot.audiosocket_bot`, if set.
/// Returns whether a bot now controls the call.
pub async fn dial_audiosocket_call(bots: &SharedBots, call_id: Uuid) -> bool {
    let bot = bots.config.audiosocket_bot.clone();
    if bot.is_empty() || bots.calls.controller(&call_id).is_some() {
        return false;
    }
    match dial(bots, &bot, Start::new(call_id)).await {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(call = %call_id, reason = %why, "cannot dial the AudioSocket bot");
            false
        }
    }
}
