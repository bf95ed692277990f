//! The voicebot control plane: a bot (an LLM application) streams reply text into a live
//! call over one WebSocket per call, stops it on barge-in, learns what the caller heard and
//! receives the caller's audio (README: "Voicebots").
//!
//! * [`protocol`]: the messages both ways.
//! * [`release`]: when streamed text goes to the synthesizer.
//! * [`heard`]: what the caller heard of an utterance, in text.
//! * [`tap`]: where the bot's frames meet the call's 20 ms clock.
//! * [`session`]: one bot controlling one call.
//! * [`socket`], [`endpoint`]: the WebSocket, opened by the bot.
//! * [`dial`]: the WebSocket, opened by xttsd to a configured bot.

use std::sync::Arc;

use crate::calls::CallRegistry;
use crate::config::{AudioConfig, EngineConfig, VoicebotConfig};
use crate::engine::Engine;
use crate::prompt_cache::PromptCache;

pub mod dial;
pub mod endpoint;
pub mod heard;
pub mod protocol;
pub mod release;
pub mod session;
pub mod socket;
pub mod tap;

/// What the voicebot plane needs from the daemon: its own section, the engine's defaults
/// (voice, language, sampling) and audio shaping, the engine and the prompt cache in front of
/// it, and the calls bots control.
pub struct Bots {
    pub config: VoicebotConfig,
    pub engine_config: EngineConfig,
    pub audio: AudioConfig,
    pub engine: Engine,
    /// `[prompts]`'s cache; None when off.
    pub cache: Option<Arc<PromptCache>>,
    pub calls: CallRegistry,
}

pub type SharedBots = Arc<Bots>;
