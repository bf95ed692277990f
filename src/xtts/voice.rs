//! A voice: what conditions the model on a speaker.

use tch::Tensor;

/// GPT conditioning latents `[1, 32, D]` and speaker embedding `[1, d, 1]`.
#[derive(Debug)]
pub struct Voice {
    pub gpt_cond_latent: Tensor,
    pub speaker_embedding: Tensor,
}
