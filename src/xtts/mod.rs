//! Coqui XTTS v2 inference on libtorch: the released model files, loaded unchanged.

pub mod batch;
pub mod checkpoint;
pub mod conditioning;
pub mod config;
pub mod dsp;
pub mod gpt;
pub mod hifigan;
pub mod model;
pub mod sampling;
pub mod speaker_encoder;
pub mod stream;
pub mod text;
pub mod voice;
