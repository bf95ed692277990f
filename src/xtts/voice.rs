//! A voice: what conditions the model on a speaker. Reference clips are loaded from WAV files,
//! encoded into GPT conditioning latents and a speaker embedding, and cached by name in memory
//! and on disk next to the clips.

use std::collections::{BTreeSet, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::checkpoint::{load_speakers, Weights};
use super::conditioning::{ConditioningEncoder, PerceiverResampler};
use super::config::XttsConfig;
use super::dsp::{log_mel, CondMelSpectrogram, ResamplerCache};
use super::speaker_encoder::{SpeakerEncoder, SPEAKER_SAMPLE_RATE};

/// GPT conditioning latents `[1, 32, D]` and speaker embedding `[1, d, 1]`.
#[derive(Debug)]
pub struct Voice {
    pub gpt_cond_latent: Tensor,
    pub speaker_embedding: Tensor,
}

/// Rate at which reference audio is conditioned (fixed by the model, not the config).
pub const COND_SAMPLE_RATE: u32 = 22050;

/// GPT conditioning chunks shorter than this are skipped, as in the reference.
const MIN_CHUNK_SECONDS: f64 = 0.33;

/// Shortest clip `load_clip` accepts. The reference only refuses audio with no 0.33 s chunk,
/// but a clip that short gives the speaker encoder a handful of frames and a voice that sounds
/// like no one; 1 s keeps at least one full conditioning chunk of three times that minimum
/// and 100 speaker-encoder frames, while still rejecting truncated or empty recordings.
pub const MIN_CLIP_SECONDS: f64 = 1.0;

/// A clip whose loudest sample stays below -60 dBFS holds no usable voice.
pub const SILENCE_PEAK: f32 = 1e-3;

/// Mono reference audio at its own sample rate, samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Clip {
    pub fn duration_seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Reads a PCM (8/16/24/32-bit) or 32-bit float WAV file and mixes it down to mono.
/// Fails on unreadable files, clips shorter than [`MIN_CLIP_SECONDS`] and silent clips.
pub fn load_clip(path: &Path) -> Result<Clip> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read reference clip", path.display()))?;
    clip_from_wav_bytes(&bytes, path)
}

/// Parses WAV bytes; `path` only names the clip in errors.
fn clip_from_wav_bytes(bytes: &[u8], path: &Path) -> Result<Clip> {
    let name = path.display();
    let mut reader =
        hound::WavReader::new(Cursor::new(bytes)).with_context(|| format!("{name}: not a readable WAV file"))?;
    let spec = reader.spec();
    ensure!(spec.channels > 0, "{name}: WAV header declares no channels");
    ensure!(spec.sample_rate > 0, "{name}: WAV header declares a sample rate of 0");
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => {
            ensure!(
                spec.bits_per_sample == 32,
                "{name}: {}-bit float WAV is not supported (32-bit float or PCM only)",
                spec.bits_per_sample
            );
            reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .with_context(|| format!("{name}: corrupt sample data"))?
        }
        hound::SampleFormat::Int => {
            ensure!(
                (1..=32).contains(&spec.bits_per_sample),
                "{name}: unsupported sample width {} bits",
                spec.bits_per_sample
            );
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .with_context(|| format!("{name}: corrupt sample data"))?
        }
    };
    let channels = spec.channels as usize;
    let samples: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    let clip = Clip {
        samples,
        sample_rate: spec.sample_rate,
    };
    if clip.duration_seconds() < MIN_CLIP_SECONDS {
        bail!(
            "{name}: reference clip too short ({:.2} s); at least {MIN_CLIP_SECONDS} s of speech is needed, 6 s or more works best",
            clip.duration_seconds()
        );
    }
    let peak = clip.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak.is_nan() || peak < SILENCE_PEAK {
        bail!("{name}: reference clip is silent (peak {peak:.2e}, below -60 dBFS)");
    }
    Ok(clip)
}

/// How much reference audio conditions the voice. Two conventions exist in the reference:
/// * [`Default`]: the defaults of a direct `get_conditioning_latents()` call, which is what the
///   `inference()` / `inference_stream()` users get: 6 s of audio in one 6 s chunk.
/// * [`ConditioningOptions::from_config`]: what `synthesize()` and the TTS API pass, taken from
///   config.json: 30 s of audio in 4 s chunks (v2.0.3 values).
///
/// Voices made with different options differ, so the options are part of the cache key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditioningOptions {
    /// Seconds of the (concatenated) audio used for the GPT latents; 0 or less uses all of it.
    pub gpt_cond_len: f64,
    /// Seconds per chunk; the latents of all chunks are averaged.
    pub gpt_cond_chunk_len: f64,
    /// Each clip is cut to this many seconds first.
    pub max_ref_len: f64,
    /// Scale each clip to a peak of 0.75.
    pub sound_norm_refs: bool,
}

impl Default for ConditioningOptions {
    fn default() -> Self {
        Self {
            gpt_cond_len: 6.0,
            gpt_cond_chunk_len: 6.0,
            max_ref_len: 30.0,
            sound_norm_refs: false,
        }
    }
}

impl ConditioningOptions {
    pub fn from_config(cfg: &XttsConfig) -> Self {
        Self {
            gpt_cond_len: cfg.gpt_cond_len,
            gpt_cond_chunk_len: cfg.gpt_cond_chunk_len,
            max_ref_len: cfg.max_ref_len,
            sound_norm_refs: cfg.sound_norm_refs,
        }
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.gpt_cond_chunk_len.is_finite() && self.gpt_cond_chunk_len > 0.0,
            "gpt_cond_chunk_len must be a positive number of seconds, got {}",
            self.gpt_cond_chunk_len
        );
        ensure!(
            self.max_ref_len.is_finite() && self.max_ref_len > 0.0,
            "max_ref_len must be a positive number of seconds, got {}",
            self.max_ref_len
        );
        ensure!(self.gpt_cond_len.is_finite(), "gpt_cond_len must be finite");
        Ok(())
    }

    /// Stable text form for cache keys.
    fn cache_tag(&self) -> String {
        format!(
            "cond_len={:?};chunk_len={:?};max_ref_len={:?};sound_norm={}",
            self.gpt_cond_len, self.gpt_cond_chunk_len, self.max_ref_len, self.sound_norm_refs
        )
    }
}

/// Samples at the conditioning rate for a length in seconds.
fn cond_samples(seconds: f64) -> i64 {
    (COND_SAMPLE_RATE as f64 * seconds).floor() as i64
}

/// Turns reference clips into a [`Voice`]: per-clip speaker embeddings averaged, clips
/// concatenated for the GPT conditioning, which averages the latents of its chunks.
#[derive(Debug)]
pub struct VoiceEncoder {
    mel: CondMelSpectrogram,
    mel_stats: Tensor,
    encoder: ConditioningEncoder,
    perceiver: PerceiverResampler,
    speaker: SpeakerEncoder,
    resamplers: ResamplerCache,
    device: Device,
    model_dim: i64,
    d_vector_dim: i64,
    fingerprint: String,
}

/// Tensor-name prefixes of everything the encoder reads.
const ENCODER_TENSORS: [&str; 4] = [
    "mel_stats",
    "gpt.conditioning_encoder.",
    "gpt.conditioning_perceiver.",
    "hifigan_decoder.speaker_encoder.",
];

impl VoiceEncoder {
    pub fn new(weights: &Weights, cfg: &XttsConfig) -> Result<Self> {
        let device = weights.device();
        let n_mels = super::conditioning::COND_MELS;
        Ok(Self {
            mel: CondMelSpectrogram::new(device),
            mel_stats: weights.get_shaped("mel_stats", &[n_mels])?,
            encoder: ConditioningEncoder::new(weights, cfg)?,
            perceiver: PerceiverResampler::new(weights, cfg)?,
            speaker: SpeakerEncoder::new(weights, cfg)?,
            resamplers: ResamplerCache::new(device),
            device,
            model_dim: cfg.model_args.gpt_n_model_channels,
            d_vector_dim: cfg.model_args.d_vector_dim,
            fingerprint: fingerprint(weights)?,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Identifies the weights this encoder uses (a hash of their names, shapes and values),
    /// so cached voices of another model are not reused.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Expected `gpt_cond_latent` shape.
    pub fn latent_shape(&self) -> [i64; 3] {
        [1, self.perceiver.num_latents(), self.model_dim]
    }

    /// Expected `speaker_embedding` shape.
    pub fn speaker_shape(&self) -> [i64; 3] {
        [1, self.d_vector_dim, 1]
    }

    /// Resamples `[B, L]` audio between two rates (kernels are cached per rate pair).
    pub fn resample(&self, audio: &Tensor, from: u32, to: u32) -> Result<Tensor> {
        self.resamplers.resample(audio, from, to)
    }

    /// A clip as the reference conditions on it: at 22.05 kHz, clipped to [-1, 1], cut to
    /// `max_ref_len`, optionally peak-normalised. Returns `[1, L]`.
    pub fn prepare_clip(&self, clip: &Clip, opts: &ConditioningOptions) -> Result<Tensor> {
        opts.validate()?;
        ensure!(clip.sample_rate > 0, "reference clip has a sample rate of 0");
        ensure!(!clip.samples.is_empty(), "reference clip is empty");
        let audio = Tensor::from_slice(&clip.samples).to_device(self.device).unsqueeze(0);
        let audio = self.resample(&audio, clip.sample_rate, COND_SAMPLE_RATE)?;
        if audio.max().double_value(&[]) > 10.0 || audio.min().double_value(&[]) >= 0.0 {
            tracing::warn!("reference clip looks malformed (peak above 10 or no negative sample)");
        }
        let audio = audio.clamp(-1.0, 1.0);
        let keep = cond_samples(opts.max_ref_len).min(audio.size()[1]);
        let audio = audio.narrow(1, 0, keep);
        if opts.sound_norm_refs {
            let peak = audio.abs().max();
            ensure!(peak.double_value(&[]) > 0.0, "cannot peak-normalise a silent clip");
            Ok(audio / peak * 0.75)
        } else {
            Ok(audio)
        }
    }

    /// Speaker embedding `[1, d, 1]` of prepared 22.05 kHz audio `[1, L]`.
    pub fn speaker_embedding(&self, audio_22k: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| {
            let audio_16k = self.resample(audio_22k, COND_SAMPLE_RATE, SPEAKER_SAMPLE_RATE)?;
            self.speaker.forward(&audio_16k)
        })
    }

    /// Normalised log-mel `[1, 80, F]` of one conditioning chunk at 22.05 kHz.
    pub fn cond_mel(&self, chunk_22k: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| Ok(log_mel(&self.mel.forward(chunk_22k)?, &self.mel_stats)))
    }

    /// Perceiver latents `[1, 32, D]` of one normalised log-mel chunk.
    pub fn chunk_latent(&self, mel: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| {
            let h = self.encoder.forward(mel)?;
            self.perceiver.forward(&h.transpose(1, 2))
        })
    }

    /// GPT conditioning latents `[1, 32, D]` of prepared 22.05 kHz audio `[1, L]`.
    pub fn gpt_cond_latent(&self, audio_22k: &Tensor, opts: &ConditioningOptions) -> Result<Tensor> {
        opts.validate()?;
        let mut audio = audio_22k.shallow_clone();
        if opts.gpt_cond_len > 0.0 {
            let keep = cond_samples(opts.gpt_cond_len).min(audio.size()[1]);
            audio = audio.narrow(1, 0, keep);
        }
        let len = audio.size()[1];
        let chunk = cond_samples(opts.gpt_cond_chunk_len).max(1);
        let min_len = COND_SAMPLE_RATE as f64 * MIN_CHUNK_SECONDS;
        let mut latents = Vec::new();
        let mut start = 0;
        while start < len {
            let piece = audio.narrow(1, start, chunk.min(len - start));
            start += chunk;
            if (piece.size()[1] as f64) < min_len {
                continue;
            }
            latents.push(self.chunk_latent(&self.cond_mel(&piece)?)?);
        }
        if latents.is_empty() {
            bail!(
                "reference audio too short for the GPT conditioning: no chunk of at least {MIN_CHUNK_SECONDS} s \
                 ({len} samples at {COND_SAMPLE_RATE} Hz, chunk length {} s)",
                opts.gpt_cond_chunk_len
            );
        }
        Ok(Tensor::stack(&latents, 0).mean_dim(0, false, Kind::Float))
    }

    /// The voice of one speaker recorded in `clips`.
    pub fn encode(&self, clips: &[Clip], opts: &ConditioningOptions) -> Result<Voice> {
        ensure!(!clips.is_empty(), "no reference clips given");
        opts.validate()?;
        tch::no_grad(|| {
            let mut audios = Vec::with_capacity(clips.len());
            let mut embeddings = Vec::with_capacity(clips.len());
            for (i, clip) in clips.iter().enumerate() {
                let audio = self
                    .prepare_clip(clip, opts)
                    .with_context(|| format!("reference clip {i}"))?;
                embeddings.push(
                    self.speaker_embedding(&audio)
                        .with_context(|| format!("speaker embedding of reference clip {i}"))?,
                );
                audios.push(audio);
            }
            let speaker_embedding = Tensor::stack(&embeddings, 0).mean_dim(0, false, Kind::Float);
            let full = Tensor::cat(&audios, 1);
            let gpt_cond_latent = self.gpt_cond_latent(&full, opts)?;
            Ok(Voice {
                gpt_cond_latent,
                speaker_embedding,
            })
        })
    }
}

/// Hash of the names, shapes and a strided sample (plus the sum) of every tensor the encoder
/// reads: cheap at load time, and any retrained or swapped model changes it.
fn fingerprint(weights: &Weights) -> Result<String> {
    let mut names: Vec<&String> = weights
        .names()
        .filter(|n| ENCODER_TENSORS.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in names {
        let t = weights.get(name)?;
        hasher.update(name.as_bytes());
        hasher.update(format!("{:?}", t.size()).as_bytes());
        let t = t.flatten(0, -1);
        let n = t.size()[0];
        if n > 0 {
            let step = (n / 1024).max(1);
            let sample = Vec::<f32>::try_from(t.slice(0, 0, n, step).to_device(Device::Cpu))?;
            for v in sample {
                hasher.update(v.to_le_bytes());
            }
            hasher.update(t.sum(Kind::Double).double_value(&[]).to_le_bytes());
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

// ------------------------------------------------------------------------------------------------
// Voice store

/// Version of the on-disk cache layout; part of every key.
const CACHE_FORMAT: &str = "xttsd-voice-1";
const CACHE_SUFFIX: &str = ".xtts.safetensors";

/// Size and modification time of the clip files, to notice edits without re-reading them.
type Stamps = Vec<(PathBuf, u64, Option<SystemTime>)>;

struct Cached {
    /// Model fingerprint and options the voice was made with.
    settings: String,
    stamps: Stamps,
    /// Content key: clip bytes + settings.
    key: String,
    voice: Arc<Voice>,
}

/// Named voices: `NAME.wav` or a folder `NAME/` of WAV clips in the speakers directory, and
/// the studio voices of `speakers_xtts.pth`. A computed voice is kept in memory and written
/// next to its clips as `NAME.xtts.safetensors`, keyed by a hash of the clip bytes, the
/// options and the model, so it is computed once and again only when something changed.
/// A clip or folder in the speakers directory shadows a built-in voice of the same name.
pub struct VoiceStore {
    speakers_dir: PathBuf,
    builtin: HashMap<String, Arc<Voice>>,
    memory: HashMap<String, Cached>,
    device: Device,
    computed: usize,
}

/// Where a named voice comes from.
enum Source {
    Clips { clips: Vec<PathBuf>, cache: PathBuf },
    Builtin(Arc<Voice>),
}

impl VoiceStore {
    pub fn new(speakers_dir: &Path, builtin: Option<&Path>, device: Device) -> Result<Self> {
        ensure!(
            speakers_dir.is_dir(),
            "{}: speakers directory does not exist or is not a directory",
            speakers_dir.display()
        );
        let mut voices = HashMap::new();
        if let Some(path) = builtin {
            for (name, tensors) in load_speakers(path)? {
                let get = |key: &str| -> Result<Tensor> {
                    let t = tensors
                        .get(key)
                        .ok_or_else(|| anyhow!("{}: speaker '{name}' has no '{key}'", path.display()))?;
                    ensure!(
                        t.dim() == 3,
                        "{}: speaker '{name}' '{key}' has shape {:?}, expected 3 dims",
                        path.display(),
                        t.size()
                    );
                    Ok(t.to_kind(Kind::Float).to_device(device))
                };
                let voice = Voice {
                    gpt_cond_latent: get("gpt_cond_latent")?,
                    speaker_embedding: get("speaker_embedding")?,
                };
                voices.insert(name, share(voice));
            }
        }
        Ok(Self {
            speakers_dir: speakers_dir.to_path_buf(),
            builtin: voices,
            memory: HashMap::new(),
            device,
            computed: 0,
        })
    }

    /// How many voices were computed from clips (not served from a cache) so far.
    pub fn computed(&self) -> usize {
        self.computed
    }

    /// All voice names: clips and folders in the speakers directory, then the built-in voices.
    pub fn names(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(&self.speakers_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if file_name.starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    if list_wavs(&path).map(|w| !w.is_empty()).unwrap_or(false) {
                        names.insert(file_name.to_string());
                    }
                } else if let Some(stem) = wav_stem(&path) {
                    names.insert(stem);
                }
            }
        }
        names.extend(self.builtin.keys().cloned());
        names.into_iter().collect()
    }

    pub fn has(&self, name: &str) -> bool {
        check_name(name).is_ok() && self.resolve(name).is_ok()
    }

    fn resolve(&self, name: &str) -> Result<Source> {
        check_name(name)?;
        let file = self.speakers_dir.join(format!("{name}.wav"));
        let folder = self.speakers_dir.join(name);
        let cache = self.speakers_dir.join(format!("{name}{CACHE_SUFFIX}"));
        match (file.is_file(), folder.is_dir()) {
            (true, true) => bail!(
                "voice '{name}' is ambiguous: both {} and {} exist",
                file.display(),
                folder.display()
            ),
            (true, false) => Ok(Source::Clips {
                clips: vec![file],
                cache,
            }),
            (false, true) => {
                let clips = list_wavs(&folder)?;
                ensure!(
                    !clips.is_empty(),
                    "{}: voice folder holds no .wav clips",
                    folder.display()
                );
                Ok(Source::Clips { clips, cache })
            }
            (false, false) => match self.builtin.get(name) {
                Some(voice) => Ok(Source::Builtin(voice.clone())),
                None => bail!(
                    "unknown voice '{name}': no {name}.wav or {name}/ in {} and no built-in voice of that name",
                    self.speakers_dir.display()
                ),
            },
        }
    }

    /// The voice `name`, computed from its clips on first use, then served from memory or disk.
    pub fn get(&mut self, name: &str, encoder: &VoiceEncoder, opts: &ConditioningOptions) -> Result<Arc<Voice>> {
        match self.resolve(name)? {
            Source::Builtin(voice) => Ok(voice),
            Source::Clips { clips, cache } => self
                .cached_or_computed(&format!("voice:{name}"), &clips, &cache, encoder, opts)
                .with_context(|| format!("voice '{name}'")),
        }
    }

    /// A voice from ad-hoc clip files (`--voice some.wav`), cached next to the first clip.
    pub fn from_paths(
        &mut self,
        clips: &[PathBuf],
        encoder: &VoiceEncoder,
        opts: &ConditioningOptions,
    ) -> Result<Arc<Voice>> {
        let first = clips.first().ok_or_else(|| anyhow!("no reference clips given"))?;
        let stem = first
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| anyhow!("{}: not a clip file name", first.display()))?;
        let cache_name = if clips.len() == 1 {
            format!("{stem}{CACHE_SUFFIX}")
        } else {
            // several clips: a distinct file per clip set, so sets sharing a first clip coexist
            let mut h = Sha256::new();
            for c in clips {
                h.update(c.as_os_str().as_encoded_bytes());
                h.update([0]);
            }
            format!("{stem}.{}{CACHE_SUFFIX}", &hex::encode(h.finalize())[..12])
        };
        let cache = first.with_file_name(cache_name);
        let memory_key = format!(
            "paths:{}",
            clips
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        self.cached_or_computed(&memory_key, clips, &cache, encoder, opts)
    }

    fn cached_or_computed(
        &mut self,
        memory_key: &str,
        clips: &[PathBuf],
        cache: &Path,
        encoder: &VoiceEncoder,
        opts: &ConditioningOptions,
    ) -> Result<Arc<Voice>> {
        opts.validate()?;
        let settings = format!("{CACHE_FORMAT}|{}|{}", encoder.fingerprint(), opts.cache_tag());
        let stamps = stamps(clips)?;
        if let Some(hit) = self.memory.get(memory_key) {
            if hit.settings == settings && hit.stamps == stamps {
                return Ok(hit.voice.clone());
            }
        }
        let bytes = clips
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("{}: cannot read reference clip", p.display())))
            .collect::<Result<Vec<_>>>()?;
        let key = content_key(&settings, &bytes);
        if let Some(hit) = self.memory.get_mut(memory_key) {
            if hit.key == key {
                hit.stamps = stamps;
                hit.settings = settings;
                return Ok(hit.voice.clone());
            }
        }
        let voice = match read_cache(cache, &key, encoder, self.device) {
            Ok(Some(voice)) => voice,
            outcome => {
                if let Err(e) = outcome {
                    tracing::warn!("{}: unusable voice cache, recomputing: {e:#}", cache.display());
                }
                let parsed = clips
                    .iter()
                    .zip(&bytes)
                    .map(|(path, b)| clip_from_wav_bytes(b, path))
                    .collect::<Result<Vec<_>>>()?;
                let voice = encoder.encode(&parsed, opts)?;
                self.computed += 1;
                if let Err(e) = write_cache(cache, &key, &voice) {
                    tracing::warn!("{}: cannot write the voice cache: {e:#}", cache.display());
                }
                voice
            }
        };
        let voice = share(voice);
        self.memory.insert(
            memory_key.to_string(),
            Cached {
                settings,
                stamps,
                key,
                voice: voice.clone(),
            },
        );
        Ok(voice)
    }
}

/// Voices are handed out as `Arc` so that the requests using one share it. tch tensors are
/// `Send` but not `Sync`, so a `Voice` stays on the thread that runs the model, with its store.
#[allow(clippy::arc_with_non_send_sync)]
fn share(voice: Voice) -> Arc<Voice> {
    Arc::new(voice)
}

/// Voice names become file names: refuse anything that could leave the speakers directory.
fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_control);
    ensure!(!bad, "invalid voice name {name:?}");
    Ok(())
}

/// Stem of a `.wav` file (case-insensitive extension), None otherwise.
fn wav_stem(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if !ext.eq_ignore_ascii_case("wav") || !path.is_file() {
        return None;
    }
    path.file_stem()?.to_str().map(str::to_string)
}

/// `.wav` files of a folder, sorted by name (the order the clips are concatenated in).
fn list_wavs(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut wavs: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("{}: cannot list voice folder", folder.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            wav_stem(p).is_some()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    wavs.sort();
    Ok(wavs)
}

fn stamps(clips: &[PathBuf]) -> Result<Stamps> {
    clips
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).with_context(|| format!("{}: cannot read reference clip", p.display()))?;
            Ok((p.clone(), meta.len(), meta.modified().ok()))
        })
        .collect()
}

fn content_key(settings: &str, clips: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    h.update(settings.as_bytes());
    for bytes in clips {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(Sha256::digest(bytes));
    }
    hex::encode(h.finalize())
}

/// The cached voice if `path` holds one for `key`; Ok(None) if absent or made from other
/// inputs; Err if the file is damaged.
fn read_cache(path: &Path, key: &str, encoder: &VoiceEncoder, device: Device) -> Result<Option<Voice>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot read"),
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| anyhow!("not a safetensors file: {e}"))?;
    let stored = meta.metadata().as_ref().and_then(|m| m.get("key"));
    if stored.map(String::as_str) != Some(key) {
        return Ok(None);
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("not a safetensors file: {e}"))?;
    let read = |name: &str, shape: [i64; 3]| -> Result<Tensor> {
        let view = st.tensor(name).map_err(|e| anyhow!("tensor '{name}': {e}"))?;
        ensure!(
            view.dtype() == Dtype::F32,
            "tensor '{name}' is {:?}, expected F32",
            view.dtype()
        );
        let dims: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        ensure!(dims == shape, "tensor '{name}' has shape {dims:?}, expected {shape:?}");
        let t = Tensor::from_data_size(view.data(), &dims, Kind::Float);
        ensure!(
            t.isfinite().all().int64_value(&[]) == 1,
            "tensor '{name}' holds non-finite values"
        );
        Ok(t.to_device(device))
    };
    Ok(Some(Voice {
        gpt_cond_latent: read("gpt_cond_latent", encoder.latent_shape())?,
        speaker_embedding: read("speaker_embedding", encoder.speaker_shape())?,
    }))
}

/// Writes the voice atomically (temporary file, then rename) so a crash never leaves half a file.
fn write_cache(path: &Path, key: &str, voice: &Voice) -> Result<()> {
    let as_bytes = |t: &Tensor| -> Result<(Vec<usize>, Vec<u8>)> {
        let t = t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        let shape = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.flatten(0, -1))?;
        Ok((shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
    };
    let (lat_shape, lat) = as_bytes(&voice.gpt_cond_latent)?;
    let (spk_shape, spk) = as_bytes(&voice.speaker_embedding)?;
    let tensors = vec![
        ("gpt_cond_latent", TensorView::new(Dtype::F32, lat_shape, &lat)?),
        ("speaker_embedding", TensorView::new(Dtype::F32, spk_shape, &spk)?),
    ];
    let metadata = HashMap::from([
        ("key".to_string(), key.to_string()),
        ("format".to_string(), CACHE_FORMAT.to_string()),
    ]);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    safetensors::serialize_to_file(tensors, Some(metadata), &tmp).map_err(|e| anyhow!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::xtts::checkpoint::load_model_state;

    /// The tiny fixture model (`$XTTSD_FIXTURE`, default `tests/fixtures/tiny`).
    fn fixture_model() -> PathBuf {
        let dir = std::env::var("XTTSD_FIXTURE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny"));
        dir.join("model")
    }

    fn encoder() -> VoiceEncoder {
        tch::set_num_threads(1);
        let dir = fixture_model();
        let cfg = XttsConfig::from_file(&dir.join("config.json")).unwrap();
        let weights = Weights::new(
            load_model_state(&dir.join("model.pth")).unwrap(),
            &dir.join("model.pth"),
            Device::Cpu,
        );
        VoiceEncoder::new(&weights, &cfg).unwrap()
    }

    /// A voiced-sounding test signal: harmonics of `f0` with a slow envelope and a little noise.
    fn voiced(rate: u32, seconds: f64, f0: f64) -> Vec<f32> {
        let n = (rate as f64 * seconds) as usize;
        let mut noise = 12345u32;
        (0..n)
            .map(|i| {
                let t = i as f64 / rate as f64;
                let env = 0.5 * (1.0 + (2.0 * std::f64::consts::PI * 3.0 * t).sin());
                let tone: f64 = (1..6)
                    .map(|k| (2.0 * std::f64::consts::PI * f0 * k as f64 * t).sin() / k as f64)
                    .sum();
                noise = noise.wrapping_mul(1664525).wrapping_add(1013904223);
                let n = (noise >> 8) as f64 / (1u32 << 24) as f64 - 0.5;
                (0.25 * env * tone + 0.01 * n) as f32
            })
            .collect()
    }

    fn write_wav_i16(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample((s * 32767.0).round() as i16).unwrap();
        }
        w.finalize().unwrap();
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    // ---- clips --------------------------------------------------------------------------------

    #[test]
    fn stereo_pcm16_is_mixed_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("st.wav");
        let left = voiced(16000, 1.2, 150.0);
        let interleaved: Vec<f32> = left.iter().flat_map(|&l| [l, -0.5 * l]).collect();
        write_wav_i16(&path, 16000, 2, &interleaved);
        let clip = load_clip(&path).unwrap();
        assert_eq!(clip.sample_rate, 16000);
        assert_eq!(clip.samples.len(), left.len());
        for (i, (&m, &l)) in clip.samples.iter().zip(&left).enumerate() {
            let l16 = (l * 32767.0).round() / 32768.0;
            let r16 = (-0.5 * l * 32767.0).round() / 32768.0;
            assert!((m - (l16 + r16) / 2.0).abs() < 1e-6, "sample {i}");
        }
    }

    #[test]
    fn float_and_24_bit_clips_load_at_full_scale() {
        let dir = tempfile::tempdir().unwrap();
        let samples = voiced(8000, 1.1, 200.0);
        let float_path = dir.path().join("f.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&float_path, spec).unwrap();
        samples.iter().for_each(|&s| w.write_sample(s).unwrap());
        w.finalize().unwrap();
        assert_eq!(load_clip(&float_path).unwrap().samples, samples);

        let path24 = dir.path().join("p24.wav");
        let spec = hound::WavSpec {
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
            ..spec
        };
        let mut w = hound::WavWriter::create(&path24, spec).unwrap();
        samples
            .iter()
            .for_each(|&s| w.write_sample((s * 8388607.0).round() as i32).unwrap());
        w.finalize().unwrap();
        let loaded = load_clip(&path24).unwrap().samples;
        let worst = loaded
            .iter()
            .zip(&samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 2e-7, "24-bit error {worst}");
    }

    #[test]
    fn bad_clips_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let err = |p: &Path| format!("{:#}", load_clip(p).unwrap_err());

        let missing = dir.path().join("missing.wav");
        assert!(err(&missing).contains("cannot read"));

        let garbage = dir.path().join("garbage.wav");
        std::fs::write(&garbage, b"RIFF not really a wave file").unwrap();
        assert!(err(&garbage).contains("not a readable WAV"));

        let short = dir.path().join("short.wav");
        write_wav_i16(&short, 16000, 1, &voiced(16000, 0.8, 150.0));
        assert!(err(&short).contains("too short"), "{}", err(&short));

        let silent = dir.path().join("silent.wav");
        write_wav_i16(&silent, 16000, 1, &vec![0.0; 32000]);
        assert!(err(&silent).contains("silent"));

        let hiss = dir.path().join("hiss.wav");
        write_wav_i16(&hiss, 16000, 1, &vec![2e-4; 32000]);
        assert!(err(&hiss).contains("silent"));

        let truncated = dir.path().join("truncated.wav");
        let good = dir.path().join("good.wav");
        write_wav_i16(&good, 16000, 1, &voiced(16000, 1.5, 150.0));
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&truncated, &bytes[..30]).unwrap();
        assert!(err(&truncated).contains("not a readable WAV"));
    }

    #[test]
    fn option_conventions() {
        let direct = ConditioningOptions::default();
        assert_eq!(
            (
                direct.gpt_cond_len,
                direct.gpt_cond_chunk_len,
                direct.max_ref_len,
                direct.sound_norm_refs
            ),
            (6.0, 6.0, 30.0, false)
        );
        let api = ConditioningOptions::from_config(&XttsConfig::default());
        assert_eq!(
            (api.gpt_cond_len, api.gpt_cond_chunk_len, api.max_ref_len),
            (30.0, 4.0, 30.0)
        );
        let zero_chunk = ConditioningOptions {
            gpt_cond_chunk_len: 0.0,
            ..direct
        };
        assert!(zero_chunk.validate().is_err());
    }

    // ---- encoder ------------------------------------------------------------------------------

    #[test]
    fn encoder_rejects_bad_input() {
        let enc = encoder();
        let opts = ConditioningOptions::default();
        assert!(enc.encode(&[], &opts).is_err());
        // 0.3 s: no conditioning chunk reaches the 0.33 s minimum
        let tiny = Clip {
            samples: voiced(22050, 0.3, 150.0),
            sample_rate: 22050,
        };
        let e = format!("{:#}", enc.encode(&[tiny], &opts).unwrap_err());
        assert!(e.contains("too short"), "{e}");
        let bad_rate = Clip {
            samples: voiced(16000, 1.0, 150.0),
            sample_rate: 0,
        };
        assert!(enc.encode(&[bad_rate], &opts).is_err());
    }

    #[test]
    fn encoder_output_shapes_and_norms() {
        let enc = encoder();
        let clip = Clip {
            samples: voiced(16000, 2.0, 150.0),
            sample_rate: 16000,
        };
        let voice = enc.encode(&[clip], &ConditioningOptions::default()).unwrap();
        assert_eq!(voice.gpt_cond_latent.size(), enc.latent_shape());
        assert_eq!(voice.speaker_embedding.size(), enc.speaker_shape());
        let norm = voice.speaker_embedding.norm().double_value(&[]);
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "single-clip embedding is unit length, got {norm}"
        );
    }

    #[test]
    fn options_change_the_voice() {
        let enc = encoder();
        let clip = Clip {
            samples: voiced(16000, 3.0, 150.0),
            sample_rate: 16000,
        };
        let whole = enc
            .encode(std::slice::from_ref(&clip), &ConditioningOptions::default())
            .unwrap();
        let chunked = ConditioningOptions {
            gpt_cond_chunk_len: 1.0,
            ..Default::default()
        };
        let parts = enc.encode(&[clip], &chunked).unwrap();
        assert!(max_diff(&whole.gpt_cond_latent, &parts.gpt_cond_latent) > 1e-4);
        // the speaker embedding does not depend on the GPT chunking
        assert_eq!(max_diff(&whole.speaker_embedding, &parts.speaker_embedding), 0.0);
    }

    // ---- store --------------------------------------------------------------------------------

    fn speakers_file() -> PathBuf {
        fixture_model().join("speakers_xtts.pth")
    }

    #[test]
    fn store_lists_and_resolves_names() {
        let dir = tempfile::tempdir().unwrap();
        write_wav_i16(&dir.path().join("anna.wav"), 16000, 1, &voiced(16000, 1.5, 180.0));
        std::fs::create_dir(dir.path().join("bob")).unwrap();
        write_wav_i16(&dir.path().join("bob/one.wav"), 16000, 1, &voiced(16000, 1.5, 110.0));
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let store = VoiceStore::new(dir.path(), Some(&speakers_file()), Device::Cpu).unwrap();
        let names = store.names();
        assert!(names.contains(&"anna".to_string()));
        assert!(names.contains(&"bob".to_string()));
        assert!(!names.contains(&"empty".to_string()));
        assert!(!names.contains(&"notes".to_string()));
        let builtin: Vec<_> = load_speakers(&speakers_file())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(!builtin.is_empty());
        for name in &builtin {
            assert!(names.contains(name) && store.has(name), "{name}");
        }
        assert!(store.has("anna") && store.has("bob"));
        assert!(!store.has("carol") && !store.has("empty"));
        assert!(!store.has("../anna") && !store.has("") && !store.has(".hidden"));
        assert!(VoiceStore::new(&dir.path().join("nope"), None, Device::Cpu).is_err());
    }

    #[test]
    fn store_caches_in_memory_and_on_disk() {
        let enc = encoder();
        let opts = ConditioningOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let clip_path = dir.path().join("anna.wav");
        write_wav_i16(&clip_path, 16000, 1, &voiced(16000, 1.5, 180.0));
        let cache = dir.path().join("anna.xtts.safetensors");

        let mut store = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
        let first = store.get("anna", &enc, &opts).unwrap();
        assert_eq!(store.computed(), 1);
        assert!(cache.is_file());
        let direct = enc.encode(&[load_clip(&clip_path).unwrap()], &opts).unwrap();
        assert_eq!(max_diff(&first.gpt_cond_latent, &direct.gpt_cond_latent), 0.0);

        // second call: memory
        let second = store.get("anna", &enc, &opts).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(store.computed(), 1);

        // restart: disk
        let mut restarted = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
        let from_disk = restarted.get("anna", &enc, &opts).unwrap();
        assert_eq!(restarted.computed(), 0);
        assert_eq!(max_diff(&from_disk.gpt_cond_latent, &first.gpt_cond_latent), 0.0);
        assert_eq!(max_diff(&from_disk.speaker_embedding, &first.speaker_embedding), 0.0);

        // other options: a different voice, computed
        let chunked = ConditioningOptions {
            gpt_cond_chunk_len: 0.5,
            ..opts.clone()
        };
        restarted.get("anna", &enc, &chunked).unwrap();
        assert_eq!(restarted.computed(), 1);
    }

    #[test]
    fn store_recomputes_a_changed_clip() {
        let enc = encoder();
        let opts = ConditioningOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let clip_path = dir.path().join("anna.wav");
        write_wav_i16(&clip_path, 16000, 1, &voiced(16000, 1.5, 180.0));
        let mut store = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
        let before = store.get("anna", &enc, &opts).unwrap();

        // same bytes written again: new mtime, same content, nothing to compute
        let bytes = std::fs::read(&clip_path).unwrap();
        std::fs::write(&clip_path, &bytes).unwrap();
        store.get("anna", &enc, &opts).unwrap();
        assert_eq!(store.computed(), 1);

        // new recording of a different length
        write_wav_i16(&clip_path, 16000, 1, &voiced(16000, 1.7, 120.0));
        let after = store.get("anna", &enc, &opts).unwrap();
        assert_eq!(store.computed(), 2);
        assert!(max_diff(&before.speaker_embedding, &after.speaker_embedding) > 1e-4);

        // a restart sees the new cache, not the old one
        let mut restarted = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
        let again = restarted.get("anna", &enc, &opts).unwrap();
        assert_eq!(restarted.computed(), 0);
        assert_eq!(max_diff(&again.speaker_embedding, &after.speaker_embedding), 0.0);
    }

    #[test]
    fn store_survives_a_corrupt_cache_file() {
        let enc = encoder();
        let opts = ConditioningOptions::default();
        let dir = tempfile::tempdir().unwrap();
        write_wav_i16(&dir.path().join("anna.wav"), 16000, 1, &voiced(16000, 1.5, 180.0));
        let cache = dir.path().join("anna.xtts.safetensors");
        let good = VoiceStore::new(dir.path(), None, Device::Cpu)
            .unwrap()
            .get("anna", &enc, &opts)
            .unwrap();

        for damage in [b"garbage".to_vec(), std::fs::read(&cache).unwrap()[..40].to_vec()] {
            std::fs::write(&cache, &damage).unwrap();
            let mut store = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
            let voice = store.get("anna", &enc, &opts).unwrap();
            assert_eq!(store.computed(), 1);
            assert_eq!(max_diff(&voice.gpt_cond_latent, &good.gpt_cond_latent), 0.0);
            // and the cache was rewritten whole
            let mut fresh = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
            fresh.get("anna", &enc, &opts).unwrap();
            assert_eq!(fresh.computed(), 0);
        }
    }

    #[test]
    fn folder_voice_concatenates_its_clips_in_name_order() {
        let enc = encoder();
        let opts = ConditioningOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("bob");
        std::fs::create_dir(&folder).unwrap();
        write_wav_i16(&folder.join("2.wav"), 22050, 1, &voiced(22050, 1.2, 100.0));
        write_wav_i16(&folder.join("1.wav"), 16000, 1, &voiced(16000, 1.4, 130.0));
        let mut store = VoiceStore::new(dir.path(), None, Device::Cpu).unwrap();
        let voice = store.get("bob", &enc, &opts).unwrap();
        let clips = [
            load_clip(&folder.join("1.wav")).unwrap(),
            load_clip(&folder.join("2.wav")).unwrap(),
        ];
        let direct = enc.encode(&clips, &opts).unwrap();
        assert_eq!(max_diff(&voice.gpt_cond_latent, &direct.gpt_cond_latent), 0.0);
        assert_eq!(max_diff(&voice.speaker_embedding, &direct.speaker_embedding), 0.0);
        assert!(dir.path().join("bob.xtts.safetensors").is_file());
    }

    #[test]
    fn builtin_and_ad_hoc_voices() {
        let enc = encoder();
        let opts = ConditioningOptions::default();
        let dir = tempfile::tempdir().unwrap();
        let mut store = VoiceStore::new(dir.path(), Some(&speakers_file()), Device::Cpu).unwrap();
        let (name, tensors) = load_speakers(&speakers_file()).unwrap().remove(0);
        let voice = store.get(&name, &enc, &opts).unwrap();
        assert_eq!(max_diff(&voice.gpt_cond_latent, &tensors["gpt_cond_latent"]), 0.0);
        assert_eq!(store.computed(), 0);

        let e = format!("{:#}", store.get("nobody", &enc, &opts).unwrap_err());
        assert!(e.contains("unknown voice"), "{e}");
        assert!(store.get("../etc/passwd", &enc, &opts).is_err());

        let other = tempfile::tempdir().unwrap();
        let clip = other.path().join("some.wav");
        write_wav_i16(&clip, 16000, 1, &voiced(16000, 1.5, 160.0));
        let a = store.from_paths(std::slice::from_ref(&clip), &enc, &opts).unwrap();
        assert!(other.path().join("some.xtts.safetensors").is_file());
        let b = store.from_paths(std::slice::from_ref(&clip), &enc, &opts).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(store.computed(), 1);
        assert!(store.from_paths(&[], &enc, &opts).is_err());
        let e = format!(
            "{:#}",
            store
                .from_paths(&[other.path().join("none.wav")], &enc, &opts)
                .unwrap_err()
        );
        assert!(e.contains("none.wav"), "{e}");
    }
}
