//! Local HTTP control API, for applications that drive calls they already have on an
//! AudioSocket:
//!
//! * `POST /v1/calls/{uuid}/say` with `{"text": "...", "voice": "...", "lang": "...",
//!   "options": {"speed": 0.9, "seed": 7, ...}}` (all but text optional; options are
//!   [`SpeechOptions`]) queues speech for that call; 202 `{"queued": true, "live": bool}`.
//!   The call need not be connected yet (`live: false`): the speech waits for it.
//!   Bad input gets 400 `{"error": "...", "field": "..."}`; too much speech already waiting for
//!   the call (or for calls in total) gets 429.
//! * `GET /v1/health`: liveness, 200 with the engine's sample rate, the daemon's version, and the
//!   engines: `{"engine": "xtts", "state": "ready", "served": 12, "fallback": {"engine":
//!   "builtin", ...}}` (the built-in voice alone while XTTS is absent).
//! * `GET /v1/ready`: readiness, 200 once the model is loaded and while the daemon takes calls
//!   (`engine_last_beat_ms` says how fresh the engine's heartbeat is); 503 with the status
//!   `draining`, `engine down` or `engine stalled` (no beat for [`crate::engine::STALLED_AFTER`]).
//! * `GET /metrics`: Prometheus metrics (OpenMetrics text).
//! * `GET /v1/calls/{call_id}/ws`: a voicebot's WebSocket controlling that call ([`crate::voicebot`]).
//!
//! Other modules add their routes to [`router`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::calls::{check_voice_name, CallRegistry, SpeakJob};
use crate::config::EngineConfig;
use crate::engine::{Engine, SpeechOptions, SpeechRequest};
use crate::listener::Gate;
use crate::metrics::METRICS;
use crate::shutdown::Shutdown;
use crate::speech_api::SpeechApiContext;
use crate::voicebot::SharedBots;

/// What the control API needs from the daemon.
pub struct ControlContext {
    /// The defaults of a request that names no voice or language.
    pub engine_config: EngineConfig,
    /// `limits.max_text_chars`.
    pub max_text_chars: usize,
    pub engine: Engine,
    /// Where queued speech waits for its call.
    pub calls: CallRegistry,
    pub shutdown: Shutdown,
    /// The listener's connection limit and allow list.
    pub gate: Gate,
    /// The voicebot WebSocket's side of the daemon.
    pub bots: SharedBots,
}

type SharedControl = Arc<ControlContext>;

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

/// The API's routes, with the speech API's beside them, for serving or for driving in-process.
pub fn router(ctx: ControlContext, speech_api: SpeechApiContext) -> Router {
    let voicebots = Router::new()
        .route("/v1/calls/{call_id}/ws", get(crate::voicebot::endpoint::upgrade))
        .with_state(ctx.bots.clone());
    Router::new()
        .route("/v1/calls/{uuid}/say", post(say))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(ctx))
        .merge(voicebots)
        .merge(crate::speech_api::routes(speech_api))
}

/// Serves the API until the drain begins, at most `control.max_connections` at once.
pub async fn serve(listener: TcpListener, ctx: ControlContext, speech_api: SpeechApiContext) -> Result<()> {
    let gated = GatedListener {
        listener,
        gate: ctx.gate.clone(),
        shutdown: ctx.shutdown.clone(),
    };
    let shutdown = ctx.shutdown.clone();
    axum::serve(gated, router(ctx, speech_api))
        .with_graceful_shutdown(async move { shutdown.draining().await })
        .await
        .context("control API server failed")
}

/// The control listener behind the same gate as the others (connection limit, allow list,
/// accept errors retried).
struct GatedListener {
    listener: TcpListener,
    gate: Gate,
    shutdown: Shutdown,
}

impl axum::serve::Listener for GatedListener {
    type Io = Permitted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Permitted, std::net::SocketAddr) {
        match crate::listener::accept(&self.listener, &self.gate, &self.shutdown).await {
            Some(a) => (
                Permitted {
                    stream: a.stream,
                    _permit: a.permit,
                },
                a.peer,
            ),
            // Draining: the graceful shutdown stops the server; accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection holding its listener's permit until it closes.
pub struct Permitted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn bad_request(field: &str, error: impl std::fmt::Display) -> Response {
    let body = json!({ "error": error.to_string(), "field": field });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn say(State(ctx): State<SharedControl>, Path(uuid): Path<String>, body: Bytes) -> Response {
    let uuid = match Uuid::parse_str(&uuid) {
        Ok(u) => u,
        Err(e) => return bad_request("uuid", format!("'{uuid}' is not a call UUID: {e}")),
    };
    let body: SayBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(&field_of_json_error(&e), format!("bad JSON body: {e}")),
    };
    let engine_cfg = &ctx.engine_config;
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
    let (chars, limit) = (request.text.chars().count(), ctx.max_text_chars);
    if chars > limit {
        return bad_request(
            "text",
            format!("text is {chars} characters long; at most {limit} may be said at once"),
        );
    }
    if let Err(e) = check_voice_name(&request.voice) {
        return bad_request("voice", e);
    }
    if let Err(e) = ctx.engine.validate(&request) {
        return bad_request(blame(&ctx, &request), e);
    }
    let live = ctx.calls.is_live(&uuid);
    let job = SpeakJob {
        request,
        escape_digits: String::new(),
        hangup_after: false,
        done: None,
    };
    if let Err(e) = ctx.calls.enqueue(uuid, job) {
        let body = json!({ "error": e.to_string(), "field": "uuid" });
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
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
fn blame(ctx: &ControlContext, request: &SpeechRequest) -> &'static str {
    let cfg = &ctx.engine_config;
    let refused = |lang: &str, voice: &str| {
        let probe = SpeechRequest {
            text: "test".into(),
            lang: lang.into(),
            voice: voice.into(),
            options: SpeechOptions::default(),
        };
        ctx.engine.validate(&probe).is_err()
    };
    let options_alone = SpeechRequest {
        text: "test".into(),
        lang: cfg.default_language.clone(),
        voice: cfg.default_voice.clone(),
        options: request.options.clone(),
    };
    if ctx.engine.validate(&options_alone).is_err() {
        "options"
    } else if refused(&request.lang, &cfg.default_voice) {
        "lang"
    } else if refused(&cfg.default_language, &request.voice) {
        "voice"
    } else {
        "text"
    }
}

async fn health(State(ctx): State<SharedControl>) -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sample_rate": ctx.engine.sample_rate(),
        "engine": ctx.engine.status(),
    }))
    .into_response()
}

async fn ready(State(ctx): State<SharedControl>) -> Response {
    // This server runs only once the model has loaded and the engine thread has started; after
    // that, ready means not draining and an engine that is alive and beating.
    let beat = ctx.engine.heartbeat();
    let not_ready = if ctx.shutdown.is_draining() {
        Some("draining")
    } else if !beat.alive {
        Some("engine down")
    } else if !beat.is_healthy() {
        Some("engine stalled")
    } else {
        None
    };
    let last_beat_ms = beat.since_last_beat.as_millis() as u64;
    match not_ready {
        Some(status) => {
            let body = json!({ "status": status, "engine_last_beat_ms": last_beat_ms });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        None => Json(json!({
            "status": "ready",
            "calls": ctx.calls.live_count(),
            "engine_last_beat_ms": last_beat_ms,
        }))
        .into_response(),
    }
}

async fn metrics(State(ctx): State<SharedControl>) -> Response {
    let body = METRICS.render(ctx.calls.pending_count(), &ctx.engine);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
