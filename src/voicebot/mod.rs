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

pub mod dial;
pub mod endpoint;
pub mod heard;
pub mod protocol;
pub mod release;
pub mod session;
pub mod socket;
pub mod tap;
