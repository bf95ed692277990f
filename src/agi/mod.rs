//! FastAGI: the wire codec, the per-request session and the TCP server.

use std::sync::Arc;

use crate::calls::CallRegistry;
use crate::config::{AgiConfig, AudioConfig, EngineConfig};
use crate::engine::Engine;
use crate::listener::Gate;
use crate::prompt_cache::PromptCache;
use crate::shutdown::Shutdown;
use crate::voicebot::SharedBots;

pub mod codec;
pub mod conn;
pub mod file_mode;
pub mod plan;
pub mod server;
pub mod session;
pub mod transcode;
pub mod voicebot;

pub use server::serve;

/// What the FastAGI server needs from the daemon.
pub struct AgiContext {
    pub config: AgiConfig,
    /// The default voice and language of a request that names none.
    pub engine_config: EngineConfig,
    /// `limits.max_text_chars`.
    pub max_text_chars: usize,
    pub audio: AudioConfig,
    pub engine: Engine,
    /// Prompts said before are played from here; None: off.
    pub cache: Option<Arc<PromptCache>>,
    /// Stream mode parks speech here for the AudioSocket call it starts.
    pub calls: CallRegistry,
    pub shutdown: Shutdown,
    /// The listener's connection limit and allow list.
    pub gate: Gate,
    pub bots: SharedBots,
}

pub type SharedAgiContext = Arc<AgiContext>;
