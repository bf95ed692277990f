//! xttsd: Coqui XTTS v2 speech for Asterisk, over AudioSocket and FastAGI.

pub mod agi;
pub mod audio;
pub mod audiosocket;
pub mod bench;
pub mod builtin_voice;
pub mod calls;
pub mod check;
pub mod client;
pub mod config;
pub mod control;
pub mod endings;
pub mod engine;
pub mod listener;
pub mod metrics;
pub mod prompt_cache;
pub mod prompts;
pub mod say;
pub mod serve;
pub mod shutdown;
pub mod speech_api;
pub mod ssml;
pub mod startup;
pub mod voicebot;
pub mod xtts;
