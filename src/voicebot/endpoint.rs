//! `GET /v1/calls/{call_id}/ws`: a bot opens the WebSocket that controls one call. Loopback
//! by default; with `voicebot.token` set, the bot must present it as a bearer token
//! (compared in constant time).

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::session::Start;
use super::SharedBots;

/// A message this much over the configured limit is cut off by the socket itself; up to
/// it, the session refuses the message and the call goes on.
const HARD_LIMIT_FACTOR: usize = 4;

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    if token.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.trim().as_bytes().ct_eq(token.as_bytes()).into()
}

fn refuse(status: StatusCode, field: &str, error: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": error.to_string(), "field": field }))).into_response()
}

pub async fn upgrade(
    State(bots): State<SharedBots>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let cfg = &bots.config;
    if !cfg.enabled {
        return refuse(
            StatusCode::NOT_FOUND,
            "path",
            "voicebots are disabled (voicebot.enabled)",
        );
    }
    if !authorized(&headers, &cfg.token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "authorization",
            "a valid bearer token is required (Authorization: Bearer TOKEN)",
        );
    }
    let call_id = match Uuid::parse_str(&call_id) {
        Ok(id) => id,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "call_id",
                format!("'{call_id}' is not a call UUID: {e}"),
            )
        }
    };
    let limit = cfg.max_message_bytes * HARD_LIMIT_FACTOR;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            tracing::info!(call = %call_id, "voicebot connected");
            super::socket::serve(socket, bots, Start::new(call_id)).await;
            tracing::info!(call = %call_id, "voicebot session ended");
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(authorized(&h, ""));
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        assert!(!authorized(&h, "s3cre"));
        assert!(!authorized(&h, "s3cret!"));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
    }
}
