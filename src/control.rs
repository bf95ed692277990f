//! Local HTTP control API, for applications that drive calls they already have on an
//! AudioSocket:
//!
//! * `POST /v1/calls/{uuid}/say` with `{"text": "...", "voice": "...", "lang": "...",
//!   "options": {"speed": 0.9, "seed": 7, ...}}` (all but text optional; options are
//!   [`SpeechOptions`]) queues speech for that call; 202 `{"queued": true, "live": bool}`.
//!   The call need not be connected yet (`live: false`): the speech waits for it.
//!   Bad input gets 400 `{"error": "...", "field": "..."}`.
//! * `GET /v1/health`: 200 with the engine's sample rate and the daemon's version.

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::calls::SpeakJob;
use crate::engine::{SpeechOptions, SpeechRequest};
use crate::serve::SharedServices;

/// Body of `POST /v1/calls/{uuid}/say`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SayBody {
    text: String,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    /// Sampling and speed for this speech (`{"speed": 0.9, "seed": 7}`); unset: the configured.
    #[serde(default)]
    options: SpeechOptions,
}

/// The API's routes, for serving or for driving in-process.
pub fn router(services: SharedServices) -> Router {
    Router::new()
        .route("/v1/calls/{uuid}/say", post(say))
        .route("/v1/health", get(health))
        .with_state(services.clone())
        .merge(crate::speech_api::routes(services))
}

/// Serves the API until the listener fails.
pub async fn serve(listener: TcpListener, services: SharedServices) -> Result<()> {
    axum::serve(listener, router(services))
        .await
        .context("control API server failed")
}

fn bad_request(field: &str, error: impl std::fmt::Display) -> Response {
    let body = json!({ "error": error.to_string(), "field": field });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn say(State(services): State<SharedServices>, Path(uuid): Path<String>, body: Bytes) -> Response {
    let uuid = match Uuid::parse_str(&uuid) {
        Ok(u) => u,
        Err(e) => return bad_request("uuid", format!("'{uuid}' is not a call UUID: {e}")),
    };
    let body: SayBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&field_of_json_error(&e), format!("bad JSON body: {e}")),
    };
    let engine_cfg = &services.config.engine;
    let pick = |given: Option<String>, default: &str| given.filter(|s| !s.is_empty()).unwrap_or_else(|| default.into());
    let request = SpeechRequest {
        text: body.text.trim().to_string(),
        voice: pick(body.voice, &engine_cfg.default_voice),
        lang: pick(body.lang, &engine_cfg.default_language),
        options: body.options,
    };
    if request.text.is_empty() {
        return bad_request("text", "text is empty");
    }
    if let Err(e) = services.engine.validate(&request) {
        return bad_request(blame(&services, &request), e);
    }
    let live = services.calls.is_live(&uuid);
    services.calls.enqueue(
        uuid,
        SpeakJob {
            request,
            escape_digits: String::new(),
            hangup_after: false,
            done: None,
        },
    );
    tracing::info!(%uuid, live, "speech queued over the control API");
    (StatusCode::ACCEPTED, Json(json!({ "queued": true, "live": live }))).into_response()
}

/// The body field a serde_json error is about: the one it names for a missing or unknown
/// field ("missing field `text`"), else the body as a whole.
fn field_of_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| msg.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or("body")
        .to_string()
}

/// Which field made the engine refuse a request: the language or the voice if it is refused
/// on its own (with a short probe text and the default for the other), else the text.
fn blame(services: &SharedServices, request: &SpeechRequest) -> &'static str {
    let cfg = &services.config.engine;
    let refused = |lang: &str, voice: &str| {
        let probe = SpeechRequest {
            text: "test".into(),
            lang: lang.into(),
            voice: voice.into(),
            options: SpeechOptions::default(),
        };
        services.engine.validate(&probe).is_err()
    };
    let options_alone = SpeechRequest {
        text: "test".into(),
        lang: cfg.default_language.clone(),
        voice: cfg.default_voice.clone(),
        options: request.options.clone(),
    };
    if services.engine.validate(&options_alone).is_err() {
        "options"
    } else if refused(&request.lang, &cfg.default_voice) {
        "lang"
    } else if refused(&cfg.default_language, &request.voice) {
        "voice"
    } else {
        "text"
    }
}

async fn health(State(services): State<SharedServices>) -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sample_rate": services.engine.sample_rate(),
    }))
    .into_response()
}
