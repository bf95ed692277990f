//! AudioSocket: the wire codec, the per-call session and the TCP server.

use std::sync::Arc;

use crate::calls::CallRegistry;
use crate::config::{AudioConfig, AudioSocketConfig, EngineConfig, TestCallConfig};
use crate::engine::Engine;
use crate::listener::Gate;
use crate::prompt_cache::PromptCache;
use crate::shutdown::Shutdown;
use crate::voicebot::SharedBots;

pub mod codec;
pub mod reader;
pub mod server;
pub mod session;

pub use codec::{AudioSocketCodec, CodecError, Message};
pub use server::serve;

/// What the AudioSocket server needs from the daemon.
pub struct AudioSocketContext {
    pub config: AudioSocketConfig,
    pub test_call: TestCallConfig,
    /// The default voice and language of the test call.
    pub engine_config: EngineConfig,
    pub audio: AudioConfig,
    pub engine: Engine,
    /// Prompts said before are played from here; None: off.
    pub cache: Option<Arc<PromptCache>>,
    /// Where each call finds the speech queued for it.
    pub calls: CallRegistry,
    pub shutdown: Shutdown,
    /// The listener's connection limit and allow list.
    pub gate: Gate,
    pub bots: SharedBots,
}

pub type SharedAudioSocketContext = Arc<AudioSocketContext>;
