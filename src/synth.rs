//! The synthesizer behind the engine: text, language and voice name in, 24 kHz audio chunks
//! out. Loads the model directory once (model.pth is read a single time and shared by the
//! GPT, the vocoder and the voice encoder) and keeps the voices' conditioning cached.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tch::Device;

use crate::config::EngineConfig;
use crate::engine::{SpeechBackend, SpeechRequest, Validator};
use crate::xtts::checkpoint::{load_model_state, Weights};
use crate::xtts::config::XttsConfig;
use crate::xtts::model::{TextVocab, Xtts};
use crate::xtts::sampling::SamplingParams;
use crate::xtts::stream::{StreamMode, StreamOptions};
use crate::xtts::text::{self, TextFrontend};
use crate::xtts::voice::{ConditioningOptions, Voice, VoiceEncoder, VoiceStore};

/// What the synthesizer is built from.
#[derive(Debug, Clone)]
pub struct SynthesizerConfig {
    pub model_dir: PathBuf,
    pub speakers_dir: PathBuf,
    /// `auto`, `cpu` or `cuda`.
    pub device: String,
    /// Sampling: the reference's `inference_stream()` defaults unless configured.
    pub sampling: SamplingParams,
    pub stream: StreamOptions,
    /// libtorch threads on CPU; 0: all cores but one.
    pub cpu_threads: usize,
}

impl Default for SynthesizerConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/xtts_v2"),
            speakers_dir: PathBuf::from("speakers"),
            device: "auto".into(),
            sampling: SamplingParams::default(),
            stream: StreamOptions::windowed(),
            cpu_threads: 0,
        }
    }
}

impl SynthesizerConfig {
    pub fn from_engine(cfg: &EngineConfig) -> Self {
        let mut stream = match cfg.stream_mode.as_str() {
            "reference" => StreamOptions::reference(),
            _ => StreamOptions::windowed(),
        };
        stream.chunk_tokens = cfg.stream_chunk_tokens;
        if stream.mode == StreamMode::Windowed {
            stream.first_chunk_tokens = cfg.first_chunk_tokens;
        }
        stream.speed = cfg.speed;
        Self {
            model_dir: cfg.model_dir.clone(),
            speakers_dir: cfg.speakers_dir.clone(),
            device: cfg.device.clone(),
            sampling: SamplingParams {
                temperature: cfg.temperature,
                top_k: cfg.top_k,
                top_p: cfg.top_p,
                repetition_penalty: cfg.repetition_penalty,
                length_penalty: cfg.length_penalty,
                do_sample: true,
                seed: None,
            },
            stream,
            cpu_threads: cfg.cpu_threads,
        }
    }
}

/// Per-request choices.
#[derive(Debug, Clone, Default)]
pub struct SpeakOptions {
    pub seed: Option<u64>,
    pub greedy: bool,
}

pub struct Synthesizer {
    model: Xtts,
    text: TextFrontend,
    encoder: VoiceEncoder,
    voices: VoiceStore,
    /// Voice conditioning follows config.json (the TTS API's convention: 30 s, 4 s chunks).
    conditioning: ConditioningOptions,
    cfg: SynthesizerConfig,
}

/// `auto` picks CUDA when libtorch can use it.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        "cuda" => bail!("device 'cuda' requested but libtorch sees no usable CUDA device"),
        "auto" => Ok(Device::cuda_if_available()),
        other => bail!("unknown device '{other}': use auto, cpu or cuda"),
    }
}

fn model_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!("model directory {}: missing {name}", dir.display()))
    }
}

impl Synthesizer {
    pub fn load(cfg: &SynthesizerConfig) -> Result<Self> {
        let device = parse_device(&cfg.device)?;
        if device == Device::Cpu {
            // The pacing of every call runs beside the model: leave it a core.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = if cfg.cpu_threads > 0 {
                cfg.cpu_threads
            } else {
                cores.saturating_sub(1).max(1)
            };
            tch::set_num_threads(threads as i32);
        }
        let dir = &cfg.model_dir;
        let config_path = model_file(dir, "config.json")?;
        let model_path = model_file(dir, "model.pth")?;
        let vocab_path = model_file(dir, "vocab.json")?;
        let config = XttsConfig::from_file(&config_path)?;
        let text = TextFrontend::from_file(&vocab_path)?;
        let vocab = TextVocab::from_file(&vocab_path)?;
        let weights = Weights::new(load_model_state(&model_path)?, &model_path, device);
        let encoder =
            VoiceEncoder::new(&weights, &config).with_context(|| format!("loading {}", model_path.display()))?;
        let model = Xtts::from_weights(config.clone(), &weights, vocab)
            .with_context(|| format!("loading {}", model_path.display()))?;
        let builtin = dir.join("speakers_xtts.pth");
        let voices = VoiceStore::new(
            &cfg.speakers_dir,
            builtin.is_file().then_some(builtin.as_path()),
            device,
        )?;
        tracing::info!(model = %dir.display(), ?device, voices = voices.names().len(), "model loaded");
        Ok(Self {
            model,
            text,
            encoder,
            voices,
            conditioning: ConditioningOptions::from_config(&config),
            cfg: cfg.clone(),
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.model.sample_rate()
    }

    /// Languages the model was released for (config.json).
    pub fn languages(&self) -> Vec<String> {
        self.model.config().languages.clone()
    }

    pub fn voice_names(&self) -> Vec<String> {
        self.voices.names()
    }

    /// Loads (computing and caching if needed) a named voice and runs one short synthesis, so
    /// the first caller pays neither the conditioning nor libtorch's first-call costs.
    pub fn warm_up(&mut self, voice: &str, lang: &str) -> Result<()> {
        let voice = self.voices.get(voice, &self.encoder, &self.conditioning)?;
        let opts = SpeakOptions {
            seed: Some(0),
            greedy: false,
        };
        self.speak_with_voice("Hello.", lang, &voice, &opts, &mut |_| true)
    }

    /// A voice from a name (speakers directory or built-in), or from clip paths.
    pub fn resolve_voice(&mut self, specs: &[String]) -> Result<Arc<Voice>> {
        if let [name] = specs {
            if self.voices.has(name) {
                return self.voices.get(name, &self.encoder, &self.conditioning);
            }
        }
        let mut clips = Vec::new();
        for spec in specs {
            let path = PathBuf::from(spec);
            if path.is_dir() {
                let mut inside: Vec<PathBuf> = std::fs::read_dir(&path)
                    .with_context(|| format!("{}: cannot list", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                    .collect();
                inside.sort();
                anyhow::ensure!(!inside.is_empty(), "{}: no .wav clips in this folder", path.display());
                clips.extend(inside);
            } else if path.is_file() {
                clips.push(path);
            } else {
                bail!("voice '{spec}': not a known voice name nor a clip file or folder");
            }
        }
        self.voices.from_paths(&clips, &self.encoder, &self.conditioning)
    }

    /// Speaks `text`, sentence by sentence (the reference's per-language splitting), handing
    /// each audio chunk to `emit`; stops when `emit` returns false.
    pub fn speak_with_voice(
        &mut self,
        text: &str,
        lang: &str,
        voice: &Voice,
        opts: &SpeakOptions,
        emit: &mut dyn FnMut(Vec<f32>) -> bool,
    ) -> Result<()> {
        let sentences = self.text.encode_sentences(text, lang, true)?;
        let mut params = self.cfg.sampling.clone();
        params.do_sample = !opts.greedy;
        let mut listening = true;
        for (i, tokens) in sentences.iter().enumerate() {
            // One seed per request; each sentence gets its own stream of it.
            params.seed = opts.seed.map(|s| s.wrapping_add(i as u64));
            let mut forward = |chunk: Vec<f32>| {
                listening = emit(chunk);
                listening
            };
            let stats = self
                .model
                .stream_tokens(tokens, voice, &params, &self.cfg.stream, &mut forward)?;
            tracing::debug!(
                tokens = stats.tokens,
                first_chunk_ms = ?stats.first_chunk_ms,
                rtf = stats.real_time_factor(),
                "sentence synthesized"
            );
            if !listening {
                break;
            }
        }
        Ok(())
    }

    /// A check of requests that needs no model: run on the caller's side before queueing.
    pub fn validator(&self) -> Validator {
        let languages = self.languages();
        let known_voices = self.voices.names();
        let speakers_dir = self.cfg.speakers_dir.clone();
        Arc::new(move |req: &SpeechRequest| {
            anyhow::ensure!(!req.text.trim().is_empty(), "text is empty");
            anyhow::ensure!(
                languages.iter().any(|l| l == &req.lang) || text::base_language(&req.lang).is_ok(),
                "unknown language '{}' (known: {})",
                req.lang,
                languages.join(", ")
            );
            text::base_language(&req.lang)?;
            // Clips added after start are accepted too.
            let on_disk =
                speakers_dir.join(format!("{}.wav", req.voice)).is_file() || speakers_dir.join(&req.voice).is_dir();
            anyhow::ensure!(
                on_disk || known_voices.iter().any(|v| v == &req.voice),
                "unknown voice '{}'",
                req.voice
            );
            Ok(())
        })
    }
}

impl SpeechBackend for Synthesizer {
    fn sample_rate(&self) -> u32 {
        Synthesizer::sample_rate(self)
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        let voice = self.voices.get(&req.voice, &self.encoder, &self.conditioning)?;
        let opts = SpeakOptions {
            seed: req.seed,
            greedy: false,
        };
        self.speak_with_voice(&req.text, &req.lang, &voice, &opts, emit)
    }
}
