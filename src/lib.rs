//! xttsd: Coqui XTTS v2 speech for Asterisk, over AudioSocket and FastAGI.

pub mod agi;
pub mod audio;
pub mod audiosocket;
pub mod bench;
pub mod calls;
pub mod client;
pub mod config;
pub mod control;
pub mod endings;
pub mod engine;
pub mod prompt_cache;
pub mod prompts;
pub mod say;
pub mod serve;
pub mod speech_api;
pub mod ssml;
pub mod synth;
pub mod xtts;
