//! The synthesizer behind the engine: text, language and voice name in, 24 kHz audio chunks
//! out. Loads the model directory once (model.pth is read a single time and shared by the
//! GPT, the vocoder and the voice encoder) and keeps the voices' conditioning cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Device, Tensor};

use crate::config::EngineConfig;
use crate::engine::{
    AudioSink, Job, JobQueue, Metrics, SpeechBackend, SpeechOptions, SpeechRequest, Validator, METRICS,
};
use crate::xtts::batch::{BatchDecoder, RowOptions, Token};
use crate::xtts::checkpoint::{load_model_state, Weights};
use crate::xtts::config::XttsConfig;
use crate::xtts::hifigan::HifiGan;
use crate::xtts::model::{TextVocab, Xtts};
use crate::xtts::sampling::SamplingParams;
use crate::xtts::stream::{StreamMode, StreamOptions, StreamVocoder};
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
    /// Requests decoded together at most (preallocated key/value slots).
    pub max_batch: usize,
    /// Every sentence gets exactly this many codes (benchmarks with synthetic models).
    pub forced_tokens: Option<usize>,
    /// pypinyin's pinyin tables; when missing, Chinese is read approximately.
    pub chinese_dictionary: PathBuf,
    /// The GPT's float type: `float32` (parity), `bfloat16` or `float16`.
    pub gpt_dtype: String,
    /// The Japanese front-end's MeCab dictionary (optional: approximate romaji without it).
    pub japanese_dictionary: PathBuf,
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
            max_batch: 8,
            forced_tokens: None,
            chinese_dictionary: PathBuf::from(text::zh::DEFAULT_DIR),
            gpt_dtype: "float32".into(),
            japanese_dictionary: PathBuf::from(text::ja::DEFAULT_DIR),
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
            sampling: cfg.sampling(),
            stream,
            cpu_threads: cfg.cpu_threads,
            max_batch: cfg.max_batch,
            forced_tokens: None,
            chinese_dictionary: cfg.chinese_dictionary.clone(),
            gpt_dtype: cfg.gpt_dtype.clone(),
            japanese_dictionary: cfg.japanese_dictionary.clone(),
        }
    }
}

pub struct Synthesizer {
    model: Xtts,
    text: TextFrontend,
    encoder: VoiceEncoder,
    voices: VoiceStore,
    /// Voice conditioning follows config.json (the TTS API's convention: 30 s, 4 s chunks).
    conditioning: ConditioningOptions,
    cfg: SynthesizerConfig,
    /// The vocoder the engine worker hands to its vocoder thread (shares the model's weights).
    vocoder: Option<HifiGan>,
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

/// The GPT float types xttsd runs.
pub fn parse_dtype(name: &str) -> Result<tch::Kind> {
    match name {
        "float32" => Ok(tch::Kind::Float),
        "bfloat16" => Ok(tch::Kind::BFloat16),
        "float16" => Ok(tch::Kind::Half),
        other => bail!("unknown GPT dtype '{other}': use float32, bfloat16 or float16"),
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
        let model = Xtts::from_weights(config.clone(), &weights, vocab, parse_dtype(&cfg.gpt_dtype)?)
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
            text,
            encoder,
            voices,
            conditioning: ConditioningOptions::from_config(&config),
            cfg: cfg.clone(),
            vocoder: Some(vocoder),
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
        let opts = SpeechOptions {
            seed: Some(0),
            ..SpeechOptions::default()
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
        opts: &SpeechOptions,
        emit: &mut dyn FnMut(Vec<f32>) -> bool,
    ) -> Result<()> {
        opts.validate(&self.cfg.sampling)?;
        let sentences = self.text.encode_sentences(text, lang, true)?;
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
        let known_voices = self.voices.names();
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

impl SpeechBackend for Synthesizer {
    fn sample_rate(&self) -> u32 {
        Synthesizer::sample_rate(self)
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        let voice = self.voices.get(&req.voice, &self.encoder, &self.conditioning)?;
        self.speak_with_voice(&req.text, &req.lang, &voice, &req.options, emit)
    }

    fn serve(&mut self, jobs: &mut JobQueue) {
        let Synthesizer {
            model,
            text,
            encoder,
            voices,
            conditioning,
            cfg,
            vocoder,
        } = self;
        let model: &Xtts = model;
        let (mut decoder, hifigan) = match (BatchDecoder::new(model.gpt(), cfg.max_batch), vocoder.take()) {
            (Ok(decoder), Some(hifigan)) => (decoder, hifigan),
            (Err(e), _) => return refuse_all(jobs, e),
            (_, None) => return refuse_all(jobs, anyhow!("the vocoder was already handed out")),
        };
        tracing::info!(
            max_batch = cfg.max_batch,
            slot_positions = decoder.cache().capacity(),
            kv_cache_mib = decoder.cache().bytes() / (1 << 20),
            "decoding slots allocated"
        );
        let (to_vocoder, vocoder_jobs) = std::sync::mpsc::channel();
        let stream = cfg.stream.clone();
        let vocoder_thread = std::thread::Builder::new()
            .name("xtts-vocoder".into())
            .spawn(move || vocoder_loop(hifigan, stream, vocoder_jobs));
        if let Err(e) = vocoder_thread {
            return refuse_all(jobs, anyhow!("cannot start the vocoder thread: {e}"));
        }
        let mut batch = Batcher {
            model,
            cfg,
            vocoder: to_vocoder,
            active: Vec::new(),
            steady_waited: 0,
            next_id: 0,
        };
        loop {
            batch.drop_cancelled(&mut decoder);
            // Admit waiting requests while slots are free; block only when idle. Their
            // prefills run together.
            let mut new = Vec::new();
            while decoder.free_slots() > new.len() {
                let next = if batch.active.is_empty() && new.is_empty() {
                    match jobs.wait() {
                        Some(job) => job,
                        None => return,
                    }
                } else {
                    match jobs.try_next() {
                        Some(job) => job,
                        None => break,
                    }
                };
                if next.is_cancelled() {
                    continue;
                }
                let started = Instant::now();
                let prepared = voices
                    .get(&next.req.voice, encoder, conditioning)
                    .and_then(|voice| Ok((text.encode_sentences(&next.req.text, &next.req.lang, true)?, voice)));
                match prepared {
                    Ok((sentences, voice)) => new.push((next, sentences, voice)),
                    Err(e) => next.finish(Err(e)),
                }
                Metrics::add(&METRICS.busy_us, started.elapsed().as_micros() as u64);
            }
            if !new.is_empty() {
                let started = Instant::now();
                batch.admit(&mut decoder, new);
                Metrics::add(&METRICS.busy_us, started.elapsed().as_micros() as u64);
            }
            let started = Instant::now();
            batch.step(&mut decoder);
            Metrics::add(&METRICS.busy_us, started.elapsed().as_micros() as u64);
        }
    }
}

/// The streaming options at a request's speed (None: the configured one).
fn with_speed(stream: &StreamOptions, speed: Option<f64>) -> StreamOptions {
    let mut stream = stream.clone();
    stream.speed = speed.unwrap_or(stream.speed);
    stream
}

/// Fails every request: the engine cannot run.
fn refuse_all(jobs: &mut JobQueue, e: anyhow::Error) {
    tracing::error!("the engine cannot start: {e:#}");
    while let Some(job) = jobs.wait() {
        job.finish(Err(anyhow!("the engine could not start: {e:#}")));
    }
}

/// Work for the vocoder thread, in order.
enum VocoderWork {
    /// A sentence starts: its speaker and where its audio goes.
    Begin {
        id: u64,
        speaker: Tensor,
        speed: Option<f64>,
        sink: AudioSink,
    },
    /// The latent of the sentence's next code.
    Latent { id: u64, latent: Tensor },
    /// The sentence's codes are complete: render the rest of its audio.
    End { id: u64 },
    /// The request is over; sent after its last sentence's work.
    Finish { sink: AudioSink, result: Result<()> },
    /// The listener left: forget the sentence.
    Drop { id: u64 },
}

/// Turns latents into audio on its own thread, so the GPT's next step does not wait for the
/// vocoder. A vocoder error ends its request (the worker sees it through the sink).
fn vocoder_loop(hifigan: HifiGan, opts: StreamOptions, work: std::sync::mpsc::Receiver<VocoderWork>) {
    let _guard = tch::no_grad_guard();
    let mut sentences: HashMap<u64, (StreamVocoder, AudioSink)> = HashMap::new();
    while let Ok(item) = work.recv() {
        let started = Instant::now();
        match item {
            VocoderWork::Begin {
                id,
                speaker,
                speed,
                sink,
            } => match StreamVocoder::new(&hifigan, &speaker, &with_speed(&opts, speed)) {
                Ok(vocoder) => {
                    sentences.insert(id, (vocoder, sink));
                }
                Err(e) => sink.finish(Err(e.context("streaming vocoder"))),
            },
            VocoderWork::Latent { id, latent } => {
                if let Some((vocoder, sink)) = sentences.get_mut(&id) {
                    let delivered = match vocoder.push(&latent) {
                        Ok(Some(chunk)) => chunk.is_empty() || sink.send_audio(chunk),
                        Ok(None) => true,
                        Err(e) => {
                            sink.finish(Err(e.context("streaming vocoder")));
                            false
                        }
                    };
                    if !delivered {
                        sentences.remove(&id);
                    }
                }
            }
            VocoderWork::End { id } => {
                if let Some((mut vocoder, sink)) = sentences.remove(&id) {
                    match vocoder.finish() {
                        Ok(last) if !last.is_empty() => {
                            sink.send_audio(last);
                        }
                        Ok(_) => {}
                        Err(e) => sink.finish(Err(e.context("streaming vocoder"))),
                    }
                }
            }
            VocoderWork::Finish { sink, result } => sink.finish(result),
            VocoderWork::Drop { id } => {
                sentences.remove(&id);
            }
        }
        Metrics::add(&METRICS.vocoder_us, started.elapsed().as_micros() as u64);
    }
}

/// A request that holds a decoding slot: its sentences and the one under way.
struct Speaking {
    job: Job,
    sentences: Vec<Vec<i64>>,
    /// Index of the sentence being decoded.
    sentence: usize,
    voice: Arc<Voice>,
    slot: usize,
    /// The sentence's id at the vocoder.
    id: u64,
    /// Codes generated for the request so far.
    codes: usize,
}

/// Continuous batching over a [`BatchDecoder`]: every speaking request advances by one code
/// per step; new requests and sentences are prefilled as soon as a slot frees up.
struct Batcher<'m, 'c> {
    model: &'m Xtts,
    cfg: &'c SynthesizerConfig,
    vocoder: std::sync::mpsc::Sender<VocoderWork>,
    active: Vec<Speaking>,
    /// Steps the started requests have sat out so that new ones reach their first chunk sooner.
    steady_waited: usize,
    next_id: u64,
}

impl Batcher<'_, '_> {
    fn vocode(&self, work: VocoderWork) {
        // The vocoder thread only stops when this sender is dropped.
        let _ = self.vocoder.send(work);
    }

    /// Frees the slots of requests whose listener hung up (or that failed in the vocoder).
    fn drop_cancelled(&mut self, decoder: &mut BatchDecoder) {
        let (gone, kept): (Vec<Speaking>, Vec<Speaking>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|s| s.job.is_cancelled());
        self.active = kept;
        for s in gone {
            decoder.release(s.slot);
            self.vocode(VocoderWork::Drop { id: s.id });
        }
    }

    /// The request has had its first chunk's worth of codes, or its listener is not waiting
    /// for it yet (asked ahead): it gets no steps of its own.
    fn has_started(&self, s: &Speaking) -> bool {
        s.codes >= self.cfg.stream.first_chunk_tokens || !s.job.req.options.plays_in.is_zero()
    }

    /// Starts new requests, their first prefills run as one batch.
    fn admit(&mut self, decoder: &mut BatchDecoder, new: Vec<(Job, Vec<Vec<i64>>, Arc<Voice>)>) {
        let mut starting = Vec::new();
        for (job, sentences, voice) in new {
            if sentences.is_empty() {
                job.finish(Ok(()));
                continue;
            }
            starting.push(Speaking {
                job,
                sentences,
                sentence: 0,
                voice,
                slot: 0,
                id: 0,
                codes: 0,
            });
        }
        let started = self.start_sentences(decoder, starting);
        self.active.extend(started);
    }

    fn row_options(&self, opts: &SpeechOptions, sentence: usize) -> RowOptions {
        RowOptions {
            params: opts.sentence_sampling(&self.cfg.sampling, sentence),
            forced_tokens: self.cfg.forced_tokens,
        }
    }

    /// Prefills the request's sentence `s.sentence` and handles its first code. None when the
    /// request is over.
    fn start_sentence(&mut self, decoder: &mut BatchDecoder, s: Speaking) -> Option<Speaking> {
        self.start_sentences(decoder, vec![s]).pop()
    }

    /// Prefills each request's sentence `s.sentence`, all in one batch, and hands on their first
    /// codes; returns the requests still speaking.
    fn start_sentences(&mut self, decoder: &mut BatchDecoder, speaking: Vec<Speaking>) -> Vec<Speaking> {
        let mut ready = Vec::new();
        for s in speaking {
            let opts = self.row_options(&s.job.req.options, s.sentence);
            let prefix = self
                .model
                .gpt()
                .prefix_embeddings(&s.voice.gpt_cond_latent, &s.sentences[s.sentence]);
            match prefix {
                Ok(prefix) => ready.push((s, prefix, opts)),
                Err(e) => self.vocode(VocoderWork::Finish {
                    sink: s.job.sink(),
                    result: Err(e),
                }),
            }
        }
        let requests: Vec<(&Tensor, &RowOptions)> = ready.iter().map(|(_, p, o)| (p, o)).collect();
        let firsts = decoder.admit_many(&requests);
        let mut still = Vec::new();
        for ((s, _, _), first) in ready.into_iter().zip(firsts) {
            if let Some(s) = self.start_with(decoder, s, first) {
                still.push(s);
            }
        }
        still
    }

    /// Hands on a sentence's first code (or its failure).
    fn start_with(&mut self, decoder: &mut BatchDecoder, mut s: Speaking, first: Result<Token>) -> Option<Speaking> {
        let first = match first {
            Ok(first) => first,
            Err(e) => {
                self.vocode(VocoderWork::Finish {
                    sink: s.job.sink(),
                    result: Err(e),
                });
                return None;
            }
        };
        Metrics::add(&METRICS.tokens, 1);
        self.next_id += 1;
        s.id = self.next_id;
        s.slot = first.slot;
        self.vocode(VocoderWork::Begin {
            id: s.id,
            speaker: s.voice.speaker_embedding.shallow_clone(),
            speed: s.job.req.options.speed,
            sink: s.job.sink(),
        });
        self.advance(decoder, s, first)
    }

    /// Passes one code's latent to the vocoder; moves on to the next sentence at the end of
    /// one. None when the request is over.
    fn advance(&mut self, decoder: &mut BatchDecoder, mut s: Speaking, token: Token) -> Option<Speaking> {
        s.codes += 1;
        self.vocode(VocoderWork::Latent {
            id: s.id,
            latent: token.latent,
        });
        if token.finished.is_none() {
            return Some(s);
        }
        self.vocode(VocoderWork::End { id: s.id });
        s.sentence += 1;
        if s.sentence >= s.sentences.len() {
            self.vocode(VocoderWork::Finish {
                sink: s.job.sink(),
                result: Ok(()),
            });
            return None;
        }
        // The slot just freed is taken again at once: the request keeps its place.
        self.start_sentence(decoder, s)
    }

    /// One batched decode step. Requests still waiting for their first audio get steps of
    /// their own, for at most a first chunk's worth of steps before everyone runs again.
    fn step(&mut self, decoder: &mut BatchDecoder) {
        if self.active.is_empty() {
            return;
        }
        let fresh: Vec<usize> = self
            .active
            .iter()
            .filter(|s| !self.has_started(s))
            .map(|s| s.slot)
            .collect();
        let slots: Vec<usize> = if !fresh.is_empty()
            && fresh.len() < self.active.len()
            && self.steady_waited < self.cfg.stream.first_chunk_tokens
        {
            self.steady_waited += 1;
            fresh
        } else {
            self.steady_waited = 0;
            self.active.iter().map(|s| s.slot).collect()
        };
        Metrics::add(&METRICS.steps, 1);
        Metrics::add(&METRICS.step_rows, slots.len() as u64);
        let tokens = match decoder.step(&slots) {
            Ok(tokens) => tokens,
            Err(e) => {
                // A failed step leaves its rows unusable: end those requests.
                let (failed, kept): (Vec<Speaking>, Vec<Speaking>) = std::mem::take(&mut self.active)
                    .into_iter()
                    .partition(|s| slots.contains(&s.slot));
                self.active = kept;
                for s in failed {
                    decoder.release(s.slot);
                    self.vocode(VocoderWork::Drop { id: s.id });
                    self.vocode(VocoderWork::Finish {
                        sink: s.job.sink(),
                        result: Err(anyhow!("decoding step failed: {e:#}")),
                    });
                }
                return;
            }
        };
        Metrics::add(&METRICS.tokens, tokens.len() as u64);
        for token in tokens {
            let Some(at) = self.active.iter().position(|s| s.slot == token.slot) else {
                continue;
            };
            let s = self.active.swap_remove(at);
            if let Some(s) = self.advance(decoder, s, token) {
                self.active.push(s);
            }
        }
    }
}
