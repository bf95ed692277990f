//! The XTTS model as the engine's backend: loads the model directory once (model.pth is read a
//! single time and shared by the GPT, the vocoder and the voice encoder), checks requests, and
//! serves them with three threads: text and voices prepared on one ([`Preparer`]), the
//! batched decode loop ([`super::decode`]) on the engine's, audio on the vocoder's.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tch::Device;

use super::capacity::Admission;
use super::capacity::CostModel;
use super::decode::{measure_costs, DecodeLoop, DecodeSettings, Prepared};
use super::scheduler::{Policy, Scheduler};
use super::start::StartProfile;
use super::vocoder::{chunk_plan, rehearse_start, with_speed, StageSettings, VocoderWork};
use super::{Fault, Health, Job, JobQueue, Metrics, SpeechBackend, SpeechOptions, SpeechRequest, Validator, METRICS};
use crate::config::{DeviceSetting, EngineConfig, GptDtype, StreamModeSetting};
use crate::xtts::batch::{BatchDecoder, SlotCache};
use crate::xtts::checkpoint::{load_model_state, Weights};
use crate::xtts::config::XttsConfig;
use crate::xtts::hifigan::HifiGan;
use crate::xtts::model::{TextVocab, Xtts};
use crate::xtts::sampling::SamplingParams;
use crate::xtts::stream::{StreamMode, StreamOptions};
use crate::xtts::text::{self, TextFrontend};
use crate::xtts::voice::{ConditioningOptions, Voice, VoiceEncoder, VoiceStore};

/// What the backend is built from.
#[derive(Debug, Clone)]
pub struct XttsBackendConfig {
    pub model_dir: PathBuf,
    pub speakers_dir: PathBuf,
    /// `auto`, `cpu` or `cuda`.
    pub device: DeviceSetting,
    /// Sampling: the reference's `inference_stream()` defaults unless configured.
    pub sampling: SamplingParams,
    pub stream: StreamOptions,
    /// libtorch threads on CPU; 0: all cores but one.
    pub cpu_threads: usize,
    /// Requests decoded together at most (preallocated key/value slots).
    pub max_batch: usize,
    /// Requests rendered together by the vocoder; 0: `max_batch` on CUDA, 1 on CPU.
    pub vocoder_batch: usize,
    /// Every sentence gets exactly this many codes (benchmarks with synthetic models).
    pub forced_tokens: Option<usize>,
    /// pypinyin's pinyin tables; when missing, Chinese is read approximately.
    pub chinese_dictionary: PathBuf,
    /// The GPT's float type: `float32` (parity), `bfloat16` or `float16`.
    pub gpt_dtype: GptDtype,
    /// The Japanese front-end's MeCab dictionary (optional: approximate romaji without it).
    pub japanese_dictionary: PathBuf,
    /// Target time from a request to its first audio.
    pub first_audio_target: Duration,
    /// How long a request may wait for admission before it is refused as busy.
    pub admit_within: Duration,
    /// Share of the measured capacity admitted calls may use.
    pub max_load: f64,
    /// When calls start together, each of their chunks must reach its listener this long
    /// ahead of its need, or the later calls wait (see [`super::start`]).
    pub start_margin: Duration,
    /// A sentence's start as the vocoder renders it; None: rehearsed when the engine starts
    /// (tests give their own, to hold calls deterministically).
    pub start_profile: Option<StartProfile>,
    /// A fault to inject (tests of supervision); from `XTTSD_FAULT` in the daemon.
    pub fault: Option<Fault>,
}

impl Default for XttsBackendConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/xtts_v2"),
            speakers_dir: PathBuf::from("speakers"),
            device: DeviceSetting::Auto,
            sampling: SamplingParams::default(),
            stream: StreamOptions::windowed(),
            cpu_threads: 0,
            max_batch: 8,
            vocoder_batch: 0,
            forced_tokens: None,
            chinese_dictionary: PathBuf::from(text::zh::DEFAULT_DIR),
            gpt_dtype: GptDtype::Float32,
            japanese_dictionary: PathBuf::from(text::ja::DEFAULT_DIR),
            first_audio_target: Duration::from_millis(250),
            admit_within: Duration::from_millis(2000),
            max_load: 0.85,
            start_margin: START_MARGIN,
            start_profile: None,
            fault: None,
        }
    }
}

impl XttsBackendConfig {
    pub fn from_engine(cfg: &EngineConfig) -> Self {
        let mut stream = match cfg.stream_mode {
            StreamModeSetting::Reference => StreamOptions::reference(),
            StreamModeSetting::Windowed => StreamOptions::windowed(),
        };
        stream.chunk_tokens = cfg.stream_chunk_tokens;
        if stream.mode == StreamMode::Windowed {
            stream.first_chunk_tokens = cfg.first_chunk_tokens;
        }
        stream.speed = cfg.speed;
        Self {
            model_dir: cfg.model_dir.clone(),
            speakers_dir: cfg.speakers_dir.clone(),
            device: cfg.device,
            sampling: cfg.sampling(),
            stream,
            cpu_threads: cfg.cpu_threads,
            max_batch: cfg.max_batch,
            vocoder_batch: cfg.vocoder_batch,
            forced_tokens: None,
            chinese_dictionary: cfg.chinese_dictionary.clone(),
            gpt_dtype: cfg.gpt_dtype,
            japanese_dictionary: cfg.japanese_dictionary.clone(),
            first_audio_target: Duration::from_millis(cfg.first_audio_ms),
            admit_within: Duration::from_millis(cfg.admit_within_ms),
            max_load: cfg.max_load,
            start_margin: START_MARGIN,
            start_profile: None,
            fault: Fault::from_env(),
        }
    }
}

pub struct XttsBackend {
    model: Xtts,
    /// Text front-end and voices; handed to their own thread when serving.
    prep: Option<Preparer>,
    cfg: XttsBackendConfig,
    /// The vocoder the engine worker hands to its vocoder thread (shares the model's weights).
    vocoder: Option<HifiGan>,
    /// Decoding slots allocated and timed by `start`, before the engine reports ready.
    slots: Option<Measured>,
}

/// What `start` prepares, measures and decides from it: the decoding slots, the decoder's and
/// vocoder's costs, a sentence's start as the vocoder renders it, the vocoder's batch and the
/// decoder's margin for it; and the vocoder's thread, started and warmed.
struct Measured {
    cache: SlotCache,
    costs: CostModel,
    start: StartProfile,
    vocoder_batch: usize,
    vocoder_first_batch: usize,
    scheduling_margin_s: f64,
    to_vocoder: Sender<VocoderWork>,
    vocoder: JoinHandle<()>,
}

/// Typical sentence length, seconds: how often a call needs a prefill (admission).
const SENTENCE_S: f64 = 2.5;
/// Seconds kept in hand beyond a row's own decoding, besides the vocoder's time: the call's
/// audio path, delivery and jitter.
const SCHEDULING_MARGIN_S: f64 = 0.08;
/// Audio a row keeps in hand: work starts when a row's slack falls to this.
const HORIZON_S: f64 = 2.0;
/// A row with more audio than this buffered ahead of its listener sits out the steps.
const AHEAD_S: f64 = 8.0;
/// In the start check, each window reaches its listener this long ahead of its need: what
/// the call's audio path holds back (the 8 kHz resampler's filter delay and input block, a
/// partial 20 ms frame: up to about 36 ms), delivery and jitter.
const START_MARGIN: Duration = Duration::from_millis(80);

/// The text front-end and the voices: what a request needs before it can be decoded.
pub struct Preparer {
    text: TextFrontend,
    encoder: VoiceEncoder,
    voices: VoiceStore,
    /// Voice conditioning follows config.json (the TTS API's convention: 30 s, 4 s chunks).
    conditioning: ConditioningOptions,
    /// `panic_prepare` injected and not yet fired.
    panic_once: bool,
}

impl Preparer {
    /// A named voice, computed once and cached.
    pub fn voice(&mut self, name: &str) -> Result<Arc<Voice>> {
        let computed = self.voices.computed();
        let voice = self.voices.get(name, &self.encoder, &self.conditioning)?;
        let counter = if self.voices.computed() == computed {
            &METRICS.voice_hits
        } else {
            &METRICS.voice_computed
        };
        Metrics::add(counter, 1);
        Ok(voice)
    }

    /// A request's sentences as text tokens with their budgets of codes, and its voice.
    pub fn prepare(&mut self, req: &SpeechRequest) -> Result<Prepared> {
        if std::mem::take(&mut self.panic_once) {
            panic!("fault injected: panic_prepare");
        }
        let voice = self.voice(&req.voice)?;
        let sentences = self.text.sentences(&req.text, &req.lang, true)?;
        let budgets = sentences
            .iter()
            .map(|s| crate::endings::sentence_budget(&s.text, &s.cleaned, &req.lang))
            .collect();
        Ok(Prepared {
            sentences: sentences.into_iter().map(|s| s.tokens).collect(),
            budgets,
            voice: Voice {
                gpt_cond_latent: voice.gpt_cond_latent.shallow_clone(),
                speaker_embedding: voice.speaker_embedding.shallow_clone(),
            },
        })
    }

    /// Prepares requests on its own thread until `jobs` closes, so the decode loop never
    /// waits for the text front-end or a voice's conditioning. One thread: a voice asked by
    /// several first requests at once is computed once.
    fn spawn(
        self,
        jobs: std::sync::mpsc::Receiver<Job>,
        done: std::sync::mpsc::Sender<(Job, Result<Prepared>)>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        /// SAFETY: a `Preparer` is moved whole to the thread: every `Arc<Voice>` of its cache
        /// moves with it (the backend keeps none; requests get shallow tensor copies, whose
        /// libtorch reference counts are atomic). tch only lacks `Sync` on `Tensor`.
        struct Moved(Preparer);
        unsafe impl Send for Moved {}
        impl Moved {
            fn into_inner(self) -> Preparer {
                self.0
            }
        }
        let moved = Moved(self);
        std::thread::Builder::new().name("xtts-prepare".into()).spawn(move || {
            let mut this = moved.into_inner();
            let _guard = tch::no_grad_guard();
            while let Ok(job) = jobs.recv() {
                let prepared = if job.is_cancelled() {
                    Err(anyhow!("the listener left"))
                } else {
                    // A libtorch or front-end panic fails this request only, not the thread
                    // that prepares every other one.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.prepare(&job.req))).unwrap_or_else(
                        |panic| {
                            Err(anyhow!(
                                "preparing the request panicked: {}",
                                crate::engine::panic_message(panic.as_ref())
                            ))
                        },
                    )
                };
                if done.send((job, prepared)).is_err() {
                    return;
                }
            }
        })
    }
}

/// `auto` picks CUDA when libtorch can use it.
pub fn torch_device(setting: DeviceSetting) -> Result<Device> {
    match setting {
        DeviceSetting::Cpu => Ok(Device::Cpu),
        DeviceSetting::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceSetting::Cuda => bail!("device 'cuda' requested but libtorch sees no usable CUDA device"),
        DeviceSetting::Auto => Ok(Device::cuda_if_available()),
    }
}

/// The GPT float types xttsd runs.
pub fn torch_kind(dtype: GptDtype) -> tch::Kind {
    match dtype {
        GptDtype::Float32 => tch::Kind::Float,
        GptDtype::Bfloat16 => tch::Kind::BFloat16,
        GptDtype::Float16 => tch::Kind::Half,
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

impl XttsBackend {
    /// The most windows one vocoder forward may render: as configured, else a decoding batch.
    fn vocoder_batch_limit(&self) -> usize {
        match self.cfg.vocoder_batch {
            0 => self.cfg.max_batch,
            n => n,
        }
    }

    /// Windows one vocoder forward renders: as configured, else the batch the rehearsal found
    /// cheapest per window (one on a CPU where batching saves nothing; many on a GPU).
    fn vocoder_batch(&self, start: &StartProfile) -> usize {
        match self.cfg.vocoder_batch {
            0 => start.best_batch(self.cfg.max_batch),
            n => n,
        }
    }

    /// First windows one vocoder forward renders: as configured, else the batch the rehearsal
    /// of first windows found cheapest per window (small windows batch better on a CPU), as
    /// far as the vocoder can follow their second windows up in time.
    fn vocoder_first_batch(&self, start: &StartProfile) -> usize {
        match self.cfg.vocoder_batch {
            0 => {
                let margin_s = self.cfg.start_margin.as_secs_f64();
                start.best_first_batch(self.cfg.max_batch, self.vocoder_batch(start), margin_s)
            }
            n => n,
        }
    }

    pub fn load(cfg: &XttsBackendConfig) -> Result<Self> {
        let device = torch_device(cfg.device)?;
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
        text::zh::configure_if_present(&cfg.chinese_dictionary)?;
        text::ja::configure_if_present(&cfg.japanese_dictionary)?;
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
        let model = Xtts::from_weights(config.clone(), &weights, vocab, torch_kind(cfg.gpt_dtype))
            .with_context(|| format!("loading {}", model_path.display()))?;
        let vocoder = {
            let _guard = tch::no_grad_guard();
            HifiGan::new(&weights, &config).with_context(|| format!("loading {}", model_path.display()))?
        };
        let builtin = dir.join("speakers_xtts.pth");
        let voices = VoiceStore::new(
            &cfg.speakers_dir,
            builtin.is_file().then_some(builtin.as_path()),
            device,
        )?;
        tracing::info!(model = %dir.display(), ?device, voices = voices.names().len(), "model loaded");
        Ok(Self {
            model,
            prep: Some(Preparer {
                text,
                encoder,
                voices,
                conditioning: ConditioningOptions::from_config(&config),
                panic_once: cfg.fault == Some(Fault::PanicPrepare),
            }),
            cfg: cfg.clone(),
            vocoder: Some(vocoder),
            slots: None,
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
        self.prep().map(|p| p.voices.names()).unwrap_or_default()
    }

    /// The text front-end and voices (gone once serving has handed them to their thread).
    fn prep(&self) -> Result<&Preparer> {
        self.prep.as_ref().context("the text and voice front-end is serving")
    }

    fn prep_mut(&mut self) -> Result<&mut Preparer> {
        self.prep.as_mut().context("the text and voice front-end is serving")
    }

    /// Loads (computing and caching if needed) a named voice and runs one short synthesis, so
    /// the first caller pays neither the conditioning nor libtorch's first-call costs.
    pub fn warm_up(&mut self, voice: &str, lang: &str) -> Result<()> {
        let voice = self.prep_mut()?.voice(voice)?;
        let opts = SpeechOptions {
            seed: Some(0),
            ..SpeechOptions::default()
        };
        self.speak_with_voice("Hello.", lang, &voice, &opts, &mut |_| true)
    }

    /// A voice from a name (speakers directory or built-in), or from clip paths.
    pub fn resolve_voice(&mut self, specs: &[String]) -> Result<Arc<Voice>> {
        let prep = self.prep_mut()?;
        if let [name] = specs {
            if prep.voices.has(name) {
                return prep.voice(name);
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
        prep.voices.from_paths(&clips, &prep.encoder, &prep.conditioning)
    }

    /// Speaks `text`, sentence by sentence (the reference's per-language splitting), handing
    /// each audio chunk to `emit`; stops when `emit` returns false.
    pub fn speak_with_voice(
        &mut self,
        text: &str,
        lang: &str,
        voice: &Voice,
        opts: &SpeechOptions,
        emit: &mut dyn FnMut(Vec<f32>) -> bool,
    ) -> Result<()> {
        opts.validate(&self.cfg.sampling)?;
        let sentences = self.prep_mut()?.text.encode_sentences(text, lang, true)?;
        let stream = with_speed(&self.cfg.stream, opts.speed);
        let mut listening = true;
        for (i, tokens) in sentences.iter().enumerate() {
            let params = opts.sentence_sampling(&self.cfg.sampling, i);
            let mut forward = |chunk: Vec<f32>| {
                listening = emit(chunk);
                listening
            };
            let stats = self
                .model
                .stream_tokens(tokens, voice, &params, &stream, &mut forward)?;
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
        let sampling = self.cfg.sampling.clone();
        let languages = self.languages();
        let known_voices = self.voice_names();
        let speakers_dir = self.cfg.speakers_dir.clone();
        Arc::new(move |req: &SpeechRequest| {
            anyhow::ensure!(!req.text.trim().is_empty(), "text is empty");
            req.options.validate(&sampling)?;
            // The front-end decides which codes it can speak ("pt-BR" reads as "pt").
            anyhow::ensure!(
                text::base_language(&req.lang).is_ok(),
                "unknown language '{}' (known: {})",
                req.lang,
                languages.join(", ")
            );
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

impl SpeechBackend for XttsBackend {
    fn sample_rate(&self) -> u32 {
        XttsBackend::sample_rate(self)
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        let voice = self.prep_mut()?.voice(&req.voice)?;
        self.speak_with_voice(&req.text, &req.lang, &voice, &req.options, emit)
    }

    fn start(&mut self, health: &Arc<Health>) -> Result<()> {
        let mut decoder = BatchDecoder::new(self.model.gpt(), self.cfg.max_batch)?;
        let costs = measure_costs(&self.model, &mut decoder).context("measuring the decoder")?;
        let hifigan = self.vocoder.as_ref().context("the vocoder was already handed out")?;
        let stream = &self.cfg.stream;
        let codes = stream.first_chunk_tokens + 3 * stream.chunk_tokens;
        let start = match &self.cfg.start_profile {
            Some(given) => given.clone(),
            None => rehearse_start(hifigan, stream, self.sample_rate(), codes, self.vocoder_batch_limit())
                .context("rehearsing the vocoder")?,
        };
        let costs = match start.s_per_audio_s() {
            Some(s_per_s) => costs.with_vocoder(s_per_s),
            None => costs,
        };
        let vocoder_batch = self.vocoder_batch(&start);
        let vocoder_first_batch = self.vocoder_first_batch(&start);
        let scheduling_margin_s = start.scheduling_margin(vocoder_batch, SCHEDULING_MARGIN_S);
        tracing::info!(
            max_batch = self.cfg.max_batch,
            slot_positions = decoder.cache().capacity(),
            kv_cache_mib = decoder.cache().bytes() / (1 << 20),
            step_ms_1 = costs.step(1) * 1e3,
            step_ms_all = costs.step(self.cfg.max_batch) * 1e3,
            vocoder_s_per_audio_s = costs.vocoder_s_per_audio_s(),
            start_window_ms = ?start.windows.iter().map(|w| (w.render_s * 1e4).round() / 10.0).collect::<Vec<_>>(),
            vocoder_batch,
            vocoder_batches = ?start.batches,
            vocoder_first_batch,
            vocoder_first_batches = ?start.first_batches,
            scheduling_margin_ms = scheduling_margin_s * 1e3,
            real_time_calls = costs.real_time_rows(self.cfg.max_load, SENTENCE_S),
            "decoding slots allocated, decoder and vocoder measured"
        );
        let one_call = costs.load(1, SENTENCE_S);
        if one_call > 1.0 {
            // One call is still admitted (nothing to protect), but its speech will have gaps.
            tracing::warn!(
                "this device cannot speak one call in real time: one call needs {:.0}% of its time, \
                 so callers will hear gaps; run the model on a GPU (engine.device), or render fixed \
                 prompts ahead ([prompts])",
                one_call * 100.0
            );
        }
        let cache = decoder.into_cache();
        let (to_vocoder, vocoder) = self.start_vocoder(&start, vocoder_batch, vocoder_first_batch, health)?;
        self.slots = Some(Measured {
            cache,
            costs,
            start,
            vocoder_batch,
            vocoder_first_batch,
            scheduling_margin_s,
            to_vocoder,
            vocoder,
        });
        Ok(())
    }

    fn serve(&mut self, jobs: &mut JobQueue, health: &Arc<Health>) {
        if let Err(e) = self.serve_batched(jobs, health) {
            tracing::error!("the engine cannot start: {e:#}");
            health.stopped(&format!("the engine could not start: {e:#}"));
        }
    }
}

impl XttsBackend {
    /// Hands the vocoder to its thread and waits until the thread has rendered each shape it
    /// will use (a shape's set-up is kept per thread, so only that thread can warm it).
    fn start_vocoder(
        &mut self,
        start: &StartProfile,
        vocoder_batch: usize,
        vocoder_first_batch: usize,
        health: &Arc<Health>,
    ) -> Result<(Sender<VocoderWork>, JoinHandle<()>)> {
        let hifigan = self.vocoder.take().context("the vocoder was already handed out")?;
        let cfg = &self.cfg;
        let stage = StageSettings {
            opts: cfg.stream.clone(),
            max_batch: vocoder_batch,
            first_batch: vocoder_first_batch,
            first_audio_target: cfg.first_audio_target,
            margin: cfg.start_margin,
            start: start.clone(),
            fault: cfg.fault,
        };
        let (to_vocoder, vocoder_work) = std::sync::mpsc::channel();
        let (warmed, warm) = std::sync::mpsc::channel();
        let vocoder = super::vocoder::spawn(hifigan, stage, vocoder_work, warmed, health.clone())
            .context("starting the vocoder thread")?;
        let warm = warm
            .recv()
            .context("the vocoder thread stopped while warming")?
            .context("warming the vocoder")?;
        tracing::info!(
            warm_ms = warm.as_millis(),
            "vocoder warmed: each shape of a start rendered on its thread"
        );
        Ok((to_vocoder, vocoder))
    }

    /// Starts the preparing thread (and, unless `start` did, measures the decoder and starts
    /// the vocoder), then runs the decode loop.
    fn serve_batched(&mut self, jobs: &mut JobQueue, health: &Arc<Health>) -> Result<()> {
        if self.slots.is_none() {
            self.start(health)?;
        }
        let prep = self.prep.take().context("the front-end was already handed out")?;
        let Measured {
            cache,
            costs,
            start,
            vocoder_batch,
            vocoder_first_batch,
            scheduling_margin_s,
            to_vocoder,
            vocoder,
        } = self
            .slots
            .take()
            .context("the decoding slots were already handed out")?;
        let cfg = &self.cfg;
        let model = &self.model;
        let decoder = BatchDecoder::with_cache(model.gpt(), cache);
        let (to_prep, prep_jobs) = std::sync::mpsc::channel();
        let (prep_done, prepared) = std::sync::mpsc::channel();
        let preparer = prep
            .spawn(prep_jobs, prep_done)
            .context("starting the text and voice thread")?;
        let settings = DecodeSettings {
            sampling: cfg.sampling.clone(),
            forced_tokens: cfg.forced_tokens,
            code_budget: cfg.stream.mode != StreamMode::Reference && cfg.forced_tokens.is_none(),
            chunks: chunk_plan(&cfg.stream),
            speed: cfg.stream.speed,
            first_audio_target: cfg.first_audio_target,
            admit_within: cfg.admit_within,
            admission: Admission {
                max_load: cfg.max_load,
                sentence_s: SENTENCE_S,
            },
            start,
            start_margin_s: cfg.start_margin.as_secs_f64(),
            vocoder_batch,
            vocoder_first_batch,
            fault: cfg.fault,
        };
        let scheduler = Scheduler::new(Policy::EarliestDeadline, scheduling_margin_s, HORIZON_S, AHEAD_S);
        let mut lp = DecodeLoop::new(
            model, decoder, settings, scheduler, costs, to_vocoder, to_prep, prepared,
        );
        lp.run(jobs, health);
        drop(lp);
        let _ = preparer.join();
        let _ = vocoder.join();
        Ok(())
    }
}
