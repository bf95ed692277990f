//! The XTTS model as the engine uses it: load a model directory, generate audio codes and
//! latents for encoded text in a voice, vocode them, or stream chunks while generating.
//!
//! Text normalisation/tokenisation and voice conditioning live elsewhere; this takes token ids
//! (what `encode()` returns, without `[START]`/`[STOP]`) and a [`Voice`].

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::checkpoint::{load_model_state, Weights};
use super::config::XttsConfig;
use super::gpt::{Gpt, GptConfig};
use super::hifigan::{apply_speed, HifiGan};
use super::sampling::{Sampler, SamplingParams};
use super::stream::{StreamMode, StreamOptions, StreamVocoder};
use super::voice::Voice;

/// Ids the GPT needs from `vocab.json`: the vocabulary size and the text start/stop tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextVocab {
    pub num_tokens: i64,
    pub start: i64,
    pub stop: i64,
}

impl TextVocab {
    /// Reads `vocab.json` (a HF tokenizers file): size = max id + 1, `[START]`, `[STOP]`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a tokenizers vocabulary: {e}", path.display()))?;
        let id = |name: &str| {
            tok.token_to_id(name)
                .map(|i| i as i64)
                .ok_or_else(|| anyhow!("{}: no {name} token", path.display()))
        };
        let max = tok
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .ok_or_else(|| anyhow!("{}: empty vocabulary", path.display()))?;
        Ok(Self {
            num_tokens: max as i64 + 1,
            start: id("[START]")?,
            stop: id("[STOP]")?,
        })
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The stop code was generated (it is the last of the codes).
    StopToken,
    /// The maximum number of codes was reached without a stop code.
    MaxTokens,
    /// The token callback asked to stop.
    Cancelled,
}

/// Time spent in the GPT.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GptTimings {
    /// Prefix + start token, up to the first code.
    pub prefill_ms: f64,
    /// All later decode steps, callbacks excluded.
    pub decode_ms: f64,
}

/// Codes and the latents that produced them.
#[derive(Debug)]
pub struct Generation {
    /// Generated codes, the stop code included when generation stopped on it.
    pub codes: Vec<i64>,
    /// One latent per code, [1, N, D]: the GPT output at the position that produced it.
    pub latents: Tensor,
    pub stop: StopReason,
    pub timings: GptTimings,
}

/// A whole utterance rendered at once.
#[derive(Debug)]
pub struct Synthesis {
    pub codes: Vec<i64>,
    pub latents: Tensor,
    /// Mono float samples at [`Xtts::sample_rate`].
    pub wav: Vec<f32>,
}

/// What a streamed utterance cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    /// From the call to the first chunk handed to `emit`.
    pub first_chunk_ms: Option<f64>,
    pub total_ms: f64,
    pub prefill_ms: f64,
    /// GPT decode time after the first code.
    pub decode_ms: f64,
    pub tokens: usize,
    pub vocoder_ms: f64,
    /// Duration of each vocoder call, ms.
    pub vocoder_call_ms: Vec<f64>,
    pub chunks: usize,
    pub samples: usize,
    pub sample_rate: u32,
    pub stop: Option<StopReason>,
}

impl StreamStats {
    /// Mean GPT time per decode step after the first code.
    pub fn ms_per_token(&self) -> f64 {
        if self.tokens > 1 {
            self.decode_ms / (self.tokens - 1) as f64
        } else {
            0.0
        }
    }

    pub fn audio_seconds(&self) -> f64 {
        self.samples as f64 / self.sample_rate.max(1) as f64
    }

    /// Processing time over audio time; below 1 is faster than real time.
    pub fn real_time_factor(&self) -> f64 {
        let audio = self.audio_seconds();
        if audio > 0.0 {
            self.total_ms / 1e3 / audio
        } else {
            f64::INFINITY
        }
    }
}

pub struct Xtts {
    config: XttsConfig,
    gpt: Gpt,
    hifigan: HifiGan,
}

impl Xtts {
    /// Loads `config.json`, `model.pth` and `vocab.json` from `dir` onto `device`, in float32.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        Self::load_as(dir, device, Kind::Float)
    }

    /// [`Self::load`] with the GPT in `gpt_kind`.
    pub fn load_as(dir: &Path, device: Device, gpt_kind: Kind) -> Result<Self> {
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(anyhow!("model directory {}: missing {name}", dir.display()))
            }
        };
        let (config_path, model_path, vocab_path) = (file("config.json")?, file("model.pth")?, file("vocab.json")?);
        let config = XttsConfig::from_file(&config_path)?;
        let vocab = TextVocab::from_file(&vocab_path)?;
        let state = load_model_state(&model_path)?;
        let weights = Weights::new(state, &model_path, device);
        Self::from_weights(config, &weights, vocab, gpt_kind)
            .with_context(|| format!("loading {}", model_path.display()))
    }

    /// Builds the GPT and vocoder from already loaded weights (shared with other model parts).
    /// The model from loaded weights; the GPT in `gpt_kind` (float32 for parity; bfloat16 or
    /// float16 halve its memory reads), everything else in float32.
    pub fn from_weights(config: XttsConfig, weights: &Weights, vocab: TextVocab, gpt_kind: Kind) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        let gpt_cfg = GptConfig::from_config(&config, Some((vocab.num_tokens, vocab.start, vocab.stop)))?;
        Ok(Self {
            gpt: Gpt::new(&weights.with_kind(gpt_kind), gpt_cfg)?,
            hifigan: HifiGan::new(weights, &config)?,
            config,
        })
    }

    pub fn config(&self) -> &XttsConfig {
        &self.config
    }

    pub fn gpt(&self) -> &Gpt {
        &self.gpt
    }

    pub fn hifigan(&self) -> &HifiGan {
        &self.hifigan
    }

    pub fn device(&self) -> Device {
        self.gpt.device()
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.model_args.output_sample_rate as u32
    }

    /// Generates codes for `text_tokens` in `voice` (spec 4.3). `on_token` sees each code with
    /// its latent ([1, D]) as soon as it exists and returns false to stop early.
    pub fn generate(
        &self,
        text_tokens: &[i64],
        voice: &Voice,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(i64, &Tensor) -> bool,
    ) -> Result<Generation> {
        let _guard = tch::no_grad_guard();
        let cfg = self.gpt.config();
        let mut sampler = Sampler::new(params)?;
        let started = Instant::now();
        let prefix = self.gpt.prefix_embeddings(&voice.gpt_cond_latent, text_tokens)?;
        let prefix_len = prefix.size()[1];
        let start = self.code_embedding(cfg.start_audio_token, 0)?;
        let mut cache = self.gpt.cache_for(1, prefix_len)?;
        let mut latent = self
            .gpt
            .forward_cached(&mut cache, &Tensor::cat(&[prefix, start], 1), None)?
            .last();
        // HF sees dummy ids (1) for the prefix and the start code; the repetition penalty
        // counts them.
        let mut history = vec![1, cfg.start_audio_token];
        let mut codes = Vec::new();
        let mut latents = Vec::new();
        let mut timings = GptTimings::default();
        let mut step_started = started;
        let stop = loop {
            let code = sampler.next(&self.gpt.mel_logits(&latent)?, &history)?;
            let elapsed = step_started.elapsed().as_secs_f64() * 1e3;
            if codes.is_empty() {
                timings.prefill_ms = elapsed;
            } else {
                timings.decode_ms += elapsed;
            }
            codes.push(code);
            history.push(code);
            latents.push(latent.shallow_clone());
            if !on_token(code, &latent) {
                break StopReason::Cancelled;
            }
            if code == cfg.stop_audio_token {
                break StopReason::StopToken;
            }
            if codes.len() as i64 >= cfg.max_new_tokens {
                break StopReason::MaxTokens;
            }
            step_started = Instant::now();
            let next = self.code_embedding(code, codes.len() as i64)?;
            latent = self.gpt.forward_cached(&mut cache, &next, None)?.last();
        };
        Ok(Generation {
            codes,
            latents: Tensor::cat(&latents, 0).unsqueeze(0),
            stop,
            timings,
        })
    }

    /// Embedding of one code at audio position `position`, [1, 1, D].
    fn code_embedding(&self, code: i64, position: i64) -> Result<Tensor> {
        let codes = Tensor::from_slice(&[code]).view([1, 1]);
        self.gpt.audio_embeddings(&codes, position)
    }

    /// The latents of `codes` from one full causal pass without cache, as the reference's
    /// second pass computes them (spec 4.4): [1, N, D], one per code.
    pub fn latents_full_pass(&self, text_tokens: &[i64], voice: &Voice, codes: &[i64]) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        if codes.is_empty() {
            bail!("no codes to compute latents for");
        }
        let cfg = self.gpt.config();
        let prefix = self.gpt.prefix_embeddings(&voice.gpt_cond_latent, text_tokens)?;
        let mut inputs = vec![cfg.start_audio_token];
        inputs.extend_from_slice(&codes[..codes.len() - 1]);
        let n = inputs.len() as i64;
        let audio = self
            .gpt
            .audio_embeddings(&Tensor::from_slice(&inputs).view([1, n]), 0)?;
        let p = prefix.size()[1];
        let out = self.gpt.forward(&Tensor::cat(&[prefix, audio], 1))?;
        Ok(out.latents.narrow(1, p, n))
    }

    /// Vocodes latents [1, N, D] in `voice` at `speed` (1.0 = as generated).
    pub fn vocode(&self, latents: &Tensor, voice: &Voice, speed: f64) -> Result<Vec<f32>> {
        let _guard = tch::no_grad_guard();
        let latents = apply_speed(&latents.to_device(self.device()).to_kind(Kind::Float), speed)?;
        let wav = self.hifigan.decode(&latents, &voice.speaker_embedding)?;
        Ok(Vec::<f32>::try_from(wav.reshape([-1]).to_device(Device::Cpu))?)
    }

    /// Generates and vocodes a whole utterance.
    pub fn synthesize_tokens(
        &self,
        text_tokens: &[i64],
        voice: &Voice,
        params: &SamplingParams,
        speed: f64,
    ) -> Result<Synthesis> {
        // Reject a bad speaker embedding before spending time on generation.
        let _ = self.hifigan.speaker(&voice.speaker_embedding)?;
        let generation = self.generate(text_tokens, voice, params, &mut |_, _| true)?;
        let wav = self.vocode(&generation.latents, voice, speed)?;
        Ok(Synthesis {
            codes: generation.codes,
            latents: generation.latents,
            wav,
        })
    }

    /// Generates an utterance and hands audio chunks to `emit` as they are ready; `emit`
    /// returns false when nobody listens any more, which stops generation.
    pub fn stream_tokens(
        &self,
        text_tokens: &[i64],
        voice: &Voice,
        params: &SamplingParams,
        opts: &StreamOptions,
        emit: &mut dyn FnMut(Vec<f32>) -> bool,
    ) -> Result<StreamStats> {
        let _guard = tch::no_grad_guard();
        let started = Instant::now();
        let mut vocoder = StreamVocoder::new(&self.hifigan, &voice.speaker_embedding, opts)?;
        let mut stats = StreamStats {
            sample_rate: self.sample_rate(),
            ..StreamStats::default()
        };
        let mut failure = None;
        let mut listening = true;
        let mut deliver = |chunk: Vec<f32>, stats: &mut StreamStats| -> bool {
            if chunk.is_empty() {
                return true;
            }
            stats
                .first_chunk_ms
                .get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
            stats.chunks += 1;
            stats.samples += chunk.len();
            emit(chunk)
        };
        let generation = self.generate(
            text_tokens,
            voice,
            params,
            &mut |_, latent| match vocoder.push(latent) {
                Ok(Some(chunk)) => {
                    listening = deliver(chunk, &mut stats);
                    listening
                }
                Ok(None) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e.context("streaming vocoder"));
        }
        if listening {
            let last = vocoder.finish()?;
            if !last.is_empty() || opts.mode == StreamMode::Reference {
                deliver(last, &mut stats);
            }
        }
        let vocoder_stats = vocoder.stats();
        stats.total_ms = started.elapsed().as_secs_f64() * 1e3;
        stats.prefill_ms = generation.timings.prefill_ms;
        stats.decode_ms = generation.timings.decode_ms;
        stats.tokens = generation.codes.len();
        stats.vocoder_ms = vocoder_stats.total_ms();
        stats.vocoder_call_ms = vocoder_stats.call_ms.clone();
        stats.stop = Some(generation.stop);
        Ok(stats)
    }
}
