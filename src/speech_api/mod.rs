//! Speech over HTTP for everything that is not a live call (prompt tooling, IVR builders,
//! applications speaking OpenAI's API). Served on the control listener:
//!
//! * `POST /v1/tts`: the whole utterance as one file. Body `{"text", "voice", "lang",
//!   "options": {...}, "format": "wav24|wav8|ulaw|sln16|opus", "cache": "auto|off|refresh",
//!   "ssml": bool}`; all but text optional (format wav24, cache auto; text starting with
//!   `<speak` is SSML).
//! * `POST /v1/tts/stream`: the same body, answered with raw audio as it is generated
//!   (chunked): `format` `l16` (default; `audio/L16; rate=24000`, big-endian), `pcm`
//!   (24 kHz little-endian) or `ulaw` (8 kHz).
//! * `POST /v1/audio/speech`: OpenAI's request (`model, input, voice, response_format, speed`)
//!   so its client libraries work unchanged. `response_format` wav (the default here), pcm
//!   (streamed) or opus; mp3, aac and flac are refused. An OpenAI voice name this daemon does
//!   not have (alloy, nova, ...) speaks in the default voice.
//! * `GET /v1/voices`: the voices and languages requests may name.
//!
//! Bad input gets 400 with JSON naming the field: `{"error": "...", "field": "..."}`, or
//! OpenAI's `{"error": {"message", "type", "param"}}` on its route. A full engine queue gets 503.
//! Speech comes from the same engine and prompt cache as calls.

pub mod render;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::config::{AudioConfig, EngineConfig};
use crate::engine::{Engine, EngineError, SpeechEvent, SpeechOptions, SpeechRequest, SPEED_RANGE};
use crate::prompt_cache::{self, CacheMode, PromptCache};
use render::{FileFormat, Renderer, StreamFormat};

/// OpenAI's voice names: spoken in the default voice unless a voice of that name exists here.
const OPENAI_VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
];

/// What the speech API needs from the daemon.
pub struct SpeechApiContext {
    /// The defaults of a request (voice, language, speed) and where voices are listed from.
    pub engine_config: EngineConfig,
    pub audio: AudioConfig,
    pub engine: Engine,
    /// None: every request goes to the engine.
    pub cache: Option<Arc<PromptCache>>,
}

#[derive(Clone)]
struct Api {
    ctx: Arc<SpeechApiContext>,
    builtin_voices: Arc<tokio::sync::OnceCell<Vec<String>>>,
}

/// The speech API's routes.
pub fn routes(ctx: SpeechApiContext) -> Router {
    let api = Api {
        ctx: Arc::new(ctx),
        builtin_voices: Arc::new(tokio::sync::OnceCell::new()),
    };
    Router::new()
        .route("/v1/tts", post(tts_file))
        .route("/v1/tts/stream", post(tts_stream))
        .route("/v1/audio/speech", post(openai_speech))
        .route("/v1/voices", get(voices))
        .with_state(api)
}

/// One part of an utterance.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Speak(SpeechRequest),
    Pause(Duration),
}

/// The pieces of an SSML request: its segments, each with the request's options at the
/// segment's rate (relative to the request's speed, or `base_speed`), and its breaks.
pub fn ssml_pieces(request: &SpeechRequest, base_speed: f64) -> Result<Vec<Piece>, crate::ssml::SsmlError> {
    let items = crate::ssml::parse(&request.text, &request.voice, &request.lang)?;
    Ok(items
        .into_iter()
        .map(|item| match item {
            crate::ssml::Item::Break(d) => Piece::Pause(d),
            crate::ssml::Item::Speak(seg) => {
                let mut options = request.options.clone();
                if seg.rate != 1.0 {
                    let speed = options.speed.unwrap_or(base_speed) * seg.rate;
                    options.speed = Some(speed.clamp(*SPEED_RANGE.start(), *SPEED_RANGE.end()));
                }
                Piece::Speak(SpeechRequest {
                    text: seg.text,
                    voice: seg.voice,
                    lang: seg.lang,
                    options,
                })
            }
        })
        .collect())
}

/// Why rendering stopped.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The engine did not take a request (invalid, busy, stopped).
    #[error(transparent)]
    Refused(EngineError),
    #[error("{0}")]
    Failed(String),
}

/// Renders `pieces` at `rate` through the prompt cache (when given) and the call path's
/// shaping, sending PCM to `out` as it is made. Stops quietly when `out` is closed.
pub async fn render_pieces(
    engine: &Engine,
    cache: Option<&Arc<PromptCache>>,
    pieces: Vec<Piece>,
    rate: u32,
    audio: &AudioConfig,
    mode: CacheMode,
    out: mpsc::Sender<Vec<i16>>,
) -> Result<(), RenderError> {
    let mut renderer = Renderer::new(engine.sample_rate(), rate, audio);
    let failed = |e: anyhow::Error| RenderError::Failed(format!("{e:#}"));
    for piece in pieces {
        let pcm = match piece {
            Piece::Pause(d) => renderer.silence(d.as_millis() as u64),
            Piece::Speak(req) => {
                let mut speech = prompt_cache::speak(cache, engine, req, mode).map_err(RenderError::Refused)?;
                renderer.begin().map_err(failed)?;
                loop {
                    let pcm = match speech.next().await {
                        Some(SpeechEvent::Audio(chunk)) => renderer.push(&chunk).map_err(failed)?,
                        Some(SpeechEvent::Done) => break,
                        Some(SpeechEvent::Failed(reason)) => {
                            return Err(RenderError::Failed(format!("synthesis failed: {reason}")))
                        }
                        None => return Err(RenderError::Refused(EngineError::Stopped)),
                    };
                    if !pcm.is_empty() && out.send(pcm).await.is_err() {
                        return Ok(());
                    }
                }
                renderer.end().map_err(failed)?
            }
        };
        if !pcm.is_empty() && out.send(pcm).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A refused request.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
    openai: bool,
}

impl ApiError {
    fn bad(field: &str, message: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            field: Some(field.to_string()),
            message: message.to_string(),
            openai: false,
        }
    }

    fn server(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            field: None,
            message: message.to_string(),
            openai: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.openai {
            let kind = if self.status == StatusCode::BAD_REQUEST {
                "invalid_request_error"
            } else {
                "server_error"
            };
            json!({"error": {"message": self.message, "type": kind, "param": self.field, "code": null}})
        } else {
            json!({"error": self.message, "field": self.field})
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A parsed request of the native routes.
struct TtsRequest {
    pieces: Vec<Piece>,
    format: Option<String>,
    cache: CacheMode,
}

fn text_of(field: &str, v: &Value) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad(field, format!("{field} must be a string")))
}

/// Option values as their text form, as AGI URLs give them.
fn option_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_options(v: &Value) -> Result<SpeechOptions, ApiError> {
    let Value::Object(entries) = v else {
        return Err(ApiError::bad("options", "options must be an object"));
    };
    let mut options = SpeechOptions::default();
    for (name, value) in entries {
        let field = format!("options.{name}");
        let text = option_text(value).ok_or_else(|| ApiError::bad(&field, format!("{field} must be a number")))?;
        options.set(name, &text).map_err(|e| ApiError::bad(&field, e))?;
    }
    Ok(options)
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad("body", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad("body", format!("bad JSON body: {e}"))),
    }
}

impl Api {
    fn pick(given: Option<String>, default: &str) -> String {
        given.filter(|s| !s.is_empty()).unwrap_or_else(|| default.to_string())
    }

    /// Parses `POST /v1/tts[/stream]`'s body.
    fn parse_tts(&self, body: &Bytes) -> Result<TtsRequest, ApiError> {
        let mut text = None;
        let (mut voice, mut lang, mut format, mut ssml) = (None, None, None, None);
        let mut options = SpeechOptions::default();
        let mut cache = CacheMode::Auto;
        for (key, value) in body_object(body)? {
            match key.as_str() {
                "text" => text = Some(text_of(&key, &value)?),
                "voice" => voice = Some(text_of(&key, &value)?),
                "lang" => lang = Some(text_of(&key, &value)?),
                "format" => format = Some(text_of(&key, &value)?),
                "options" => options = parse_options(&value)?,
                "cache" => cache = CacheMode::parse(&text_of(&key, &value)?).map_err(|e| ApiError::bad("cache", e))?,
                "ssml" => {
                    ssml = Some(
                        value
                            .as_bool()
                            .ok_or_else(|| ApiError::bad("ssml", "ssml must be true or false"))?,
                    )
                }
                other => {
                    return Err(ApiError::bad(
                        other,
                        format!("unknown field '{other}' (known: text, voice, lang, options, format, cache, ssml)"),
                    ))
                }
            }
        }
        let text = text.ok_or_else(|| ApiError::bad("text", "missing field 'text'"))?;
        let cfg = &self.ctx.engine_config;
        let request = SpeechRequest {
            text: text.trim().to_string(),
            voice: Self::pick(voice, &cfg.default_voice),
            lang: Self::pick(lang, &cfg.default_language),
            options,
        };
        let is_ssml = ssml.unwrap_or_else(|| request.text.starts_with("<speak"));
        let pieces = if is_ssml {
            ssml_pieces(&request, self.ctx.engine_config.speed).map_err(|e| ApiError::bad("text", e))?
        } else {
            vec![Piece::Speak(request)]
        };
        self.check(&pieces)?;
        Ok(TtsRequest { pieces, format, cache })
    }

    /// Validates every spoken piece before anything starts, naming the field at fault.
    fn check(&self, pieces: &[Piece]) -> Result<(), ApiError> {
        let mut spoken = 0;
        for piece in pieces {
            if let Piece::Speak(req) = piece {
                spoken += 1;
                if req.text.is_empty() {
                    return Err(ApiError::bad("text", "text is empty"));
                }
                if let Err(e) = self.ctx.engine.validate(req) {
                    return Err(ApiError::bad(self.blame(req), e));
                }
            }
        }
        if spoken == 0 {
            return Err(ApiError::bad("text", "nothing to say"));
        }
        Ok(())
    }

    /// Which field made the engine refuse a request: the options, the language or the voice
    /// if refused on their own (with a short text and defaults for the rest), else the text.
    fn blame(&self, req: &SpeechRequest) -> &'static str {
        let cfg = &self.ctx.engine_config;
        let refused = |lang: &str, voice: &str, options: &SpeechOptions| {
            let probe = SpeechRequest {
                text: "test".into(),
                lang: lang.into(),
                voice: voice.into(),
                options: options.clone(),
            };
            self.ctx.engine.validate(&probe).is_err()
        };
        let none = SpeechOptions::default();
        if refused(&cfg.default_language, &cfg.default_voice, &req.options) {
            "options"
        } else if refused(&req.lang, &cfg.default_voice, &none) {
            "lang"
        } else if refused(&cfg.default_language, &req.voice, &none) {
            "voice"
        } else {
            "text"
        }
    }

    /// Starts rendering `pieces` at `rate`: PCM arrives on the returned channel as it is
    /// made. The first message is the first audio or the reason nothing could start.
    fn produce(&self, pieces: Vec<Piece>, rate: u32, cache: CacheMode) -> mpsc::Receiver<Result<Vec<i16>, ApiError>> {
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(e) = api.render(pieces, rate, cache, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn render(
        &self,
        pieces: Vec<Piece>,
        rate: u32,
        cache: CacheMode,
        out: &mpsc::Sender<Result<Vec<i16>, ApiError>>,
    ) -> Result<(), ApiError> {
        let ctx = &self.ctx;
        let (tx, mut rx) = mpsc::channel(16);
        let rendering = render_pieces(
            &ctx.engine,
            self.ctx.cache.as_ref(),
            pieces,
            rate,
            &ctx.audio,
            cache,
            tx,
        );
        // Owns the receiver, so a client that is gone closes the channel and stops rendering.
        let forwarding = async move {
            while let Some(pcm) = rx.recv().await {
                if out.send(Ok(pcm)).await.is_err() {
                    return; // the client is gone
                }
            }
        };
        let (result, ()) = tokio::join!(rendering, forwarding);
        result.map_err(|e| match e {
            RenderError::Refused(e) => self.refused(e),
            RenderError::Failed(reason) => ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, reason),
        })
    }

    fn refused(&self, e: EngineError) -> ApiError {
        match e {
            EngineError::Invalid(reason) => ApiError::bad("text", reason),
            EngineError::Busy(_) | EngineError::Stopped => ApiError::server(StatusCode::SERVICE_UNAVAILABLE, e),
        }
    }

    /// The whole utterance as one file.
    async fn file(&self, pieces: Vec<Piece>, format: FileFormat, cache: CacheMode) -> Result<Response, ApiError> {
        let mut rx = self.produce(pieces, format.rate(), cache);
        let mut pcm = Vec::new();
        while let Some(part) = rx.recv().await {
            pcm.extend(part?);
        }
        let bytes = tokio::task::spawn_blocking(move || format.encode(&pcm))
            .await
            .map_err(|e| ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, e))?
            .map_err(|e| ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
    }

    /// Raw audio as it is generated. Errors before the first audio get a status; later ones
    /// cut the chunked body short.
    async fn stream(&self, pieces: Vec<Piece>, format: StreamFormat, cache: CacheMode) -> Result<Response, ApiError> {
        let mut rx = self.produce(pieces, format.rate(), cache);
        let first = match rx.recv().await {
            Some(first) => first?,
            None => Vec::new(),
        };
        let first = Bytes::from(format.encode(&first));
        let rest = futures::stream::unfold(rx, move |mut rx| async move {
            let item = match rx.recv().await? {
                Ok(pcm) => Ok(Bytes::from(format.encode(&pcm))),
                Err(e) => Err(std::io::Error::other(e.message)),
            };
            Some((item, rx))
        });
        let body = futures::StreamExt::chain(futures::stream::once(async move { Ok(first) }), rest);
        Ok(([(header::CONTENT_TYPE, format.content_type())], Body::from_stream(body)).into_response())
    }
}

async fn tts_file(State(api): State<Api>, body: Bytes) -> Response {
    let result = async {
        let req = api.parse_tts(&body)?;
        let format =
            FileFormat::parse(req.format.as_deref().unwrap_or("wav24")).map_err(|e| ApiError::bad("format", e))?;
        api.file(req.pieces, format, req.cache).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn tts_stream(State(api): State<Api>, body: Bytes) -> Response {
    let result = async {
        let req = api.parse_tts(&body)?;
        let format =
            StreamFormat::parse(req.format.as_deref().unwrap_or("l16")).map_err(|e| ApiError::bad("format", e))?;
        api.stream(req.pieces, format, req.cache).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// OpenAI's `POST /v1/audio/speech`.
async fn openai_speech(State(api): State<Api>, body: Bytes) -> Response {
    let result = async {
        let obj = body_object(&body)?;
        let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let input = field("input")
            .ok_or_else(|| ApiError::bad("input", "missing field 'input'"))
            .and_then(|v| text_of("input", v))?;
        let cfg = &api.ctx.engine_config;
        let mut options = SpeechOptions::default();
        if let Some(speed) = field("speed") {
            options.speed = Some(
                speed
                    .as_f64()
                    .ok_or_else(|| ApiError::bad("speed", "speed must be a number"))?,
            );
        }
        if let Some(seed) = field("seed") {
            options.seed = Some(
                seed.as_u64()
                    .ok_or_else(|| ApiError::bad("seed", "seed must be a whole number"))?,
            );
        }
        let lang = match field("lang").or(field("language")) {
            Some(v) => text_of("lang", v)?,
            None => cfg.default_language.clone(),
        };
        let mut voice = match field("voice") {
            Some(Value::String(v)) => v.clone(),
            // Newer clients may send {"id": "..."} for custom voices.
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
            Some(_) => return Err(ApiError::bad("voice", "voice must be a string")),
            None => String::new(),
        };
        if voice.is_empty() {
            voice = cfg.default_voice.clone();
        }
        let request = SpeechRequest {
            text: input.trim().to_string(),
            voice,
            lang,
            options,
        };
        let mut request = request;
        let probe = SpeechRequest {
            text: "test".into(),
            lang: cfg.default_language.clone(),
            voice: request.voice.clone(),
            options: SpeechOptions::default(),
        };
        if OPENAI_VOICES.contains(&request.voice.as_str()) && api.ctx.engine.validate(&probe).is_err() {
            request.voice = cfg.default_voice.clone();
        }
        if let Some(stream_format) = field("stream_format") {
            let s = text_of("stream_format", stream_format)?;
            if s != "audio" {
                return Err(ApiError::bad(
                    "stream_format",
                    format!("stream_format '{s}' is not supported (audio only)"),
                ));
            }
        }
        let pieces = vec![Piece::Speak(request)];
        api.check(&pieces).map_err(|mut e| {
            // OpenAI's names for the fields.
            e.field = e.field.map(|f| match f.as_str() {
                "text" => "input".to_string(),
                "options" => "speed".to_string(),
                _ => f,
            });
            e
        })?;
        let format = match field("response_format") {
            Some(v) => text_of("response_format", v)?,
            None => "wav".to_string(),
        };
        match format.as_str() {
            "wav" => api.file(pieces, FileFormat::Wav24, CacheMode::Auto).await,
            "opus" => api.file(pieces, FileFormat::Opus, CacheMode::Auto).await,
            "pcm" => api.stream(pieces, StreamFormat::Pcm, CacheMode::Auto).await,
            other => Err(ApiError::bad(
                "response_format",
                format!("response_format '{other}' is not supported here; use wav, pcm or opus"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(|mut e| {
        e.openai = true;
        e.into_response()
    })
}

/// `GET /v1/voices`: voices in the speakers directory and built into the model, and the
/// languages, as far as the engine accepts them.
async fn voices(State(api): State<Api>) -> Response {
    let cfg = api.ctx.engine_config.clone();
    let builtin = api
        .builtin_voices
        .get_or_init(|| async move {
            let path = cfg.model_dir.join("speakers_xtts.pth");
            if !path.is_file() {
                return Vec::new();
            }
            tokio::task::spawn_blocking(move || {
                crate::xtts::checkpoint::load_speakers(&path)
                    .map(|speakers| speakers.into_iter().map(|(name, _)| name).collect())
                    .unwrap_or_else(|e| {
                        tracing::warn!("cannot list the built-in voices: {e:#}");
                        Vec::new()
                    })
            })
            .await
            .unwrap_or_default()
        })
        .await
        .clone();
    let cfg = &api.ctx.engine_config;
    let mut names: Vec<(String, &str)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&cfg.speakers_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                names.push((name, "clips"));
            } else if let Some(stem) = name.strip_suffix(".wav") {
                names.push((stem.to_string(), "clip"));
            }
        }
    }
    names.extend(builtin.into_iter().map(|n| (n, "builtin")));
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    let accepts = |lang: &str, voice: &str| {
        api.ctx
            .engine
            .validate(&SpeechRequest {
                text: "test".into(),
                lang: lang.into(),
                voice: voice.into(),
                options: SpeechOptions::default(),
            })
            .is_ok()
    };
    let voices: Vec<Value> = names
        .into_iter()
        .filter(|(name, _)| accepts(&cfg.default_language, name))
        .map(|(name, source)| json!({"name": name, "source": source}))
        .collect();
    let languages: Vec<&str> = crate::xtts::text::LANGUAGES
        .into_iter()
        .filter(|l| accepts(l, &cfg.default_voice))
        .collect();
    Json(json!({
        "voices": voices,
        "default_voice": cfg.default_voice,
        "languages": languages,
        "default_language": cfg.default_language,
    }))
    .into_response()
}
