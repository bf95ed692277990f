//! Audio path from the engine's 24 kHz float to what a call carries.

pub mod frames;
pub mod g711;
pub mod opus;
pub mod pipeline;
pub mod resample;
pub mod shaping;
pub mod wav;

pub use frames::{frame_samples, slin_bytes, slin_samples, Framer, FRAME_MS};
pub use pipeline::{render, FramePipeline};
pub use resample::{resample_all, StreamResampler};
