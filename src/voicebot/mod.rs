//! The voicebot control plane: a bot (an LLM application) streams reply text into a live
//! call over one WebSocket per call, stops it on barge-in, learns what the caller heard and
//! receives the caller's audio. See `docs` in the README, section "Voicebots".

pub mod release;
