//! The prompt cache: a rendered utterance stored on disk, content-addressed by everything that
//! shapes its audio, and replayed with no engine request at all.
//!
//! * **Key**: SHA-256 of the model fingerprint, the engine's settings, the voice's clip bytes,
//!   the language, the normalised text (NFC, lowercase, single spaces: the front-end lowercases
//!   and splits on punctuation, so these never change the tokens), the effective sampling
//!   (temperature, top-k and top-p only when sampling), seed and speed. See [`KeyContext`].
//! * **What is cached**: deterministic requests only (a seed, or greedy), unless the request
//!   says `off`; `refresh` renders again and gives an unseeded request the fixed seed.
//! * **Storage**: the engine's 24 kHz audio as Ogg Opus ([`crate::audio::opus`]), one file per
//!   key, behind a header holding the payload's length and SHA-256. Files are written under a
//!   temporary name and renamed into place, so concurrent writers and crashes never leave a
//!   partial file under a key's name; a file whose header does not match its payload (a torn
//!   write, a flipped bit) is deleted and treated as a miss.
//! * **Bound**: the directory is kept under `cache_max_mb`, dropping the least recently used.
//! * **Single flight**: concurrent misses of one key share one synthesis. It runs detached from
//!   the listeners, so the cache is filled even when the first listener hangs up.
//!
//! Call sessions use [`PromptCache::speak`] in place of `Engine::speak`: its [`CachedSpeech`]
//! yields the same [`SpeechEvent`]s whether the audio comes from disk, a shared synthesis or
//! the engine directly.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use unicode_normalization::UnicodeNormalization;

use crate::audio::opus;
use crate::config::Config;
use crate::engine::{Engine, EngineError, Speech, SpeechEvent, SpeechRequest};
use crate::xtts::sampling::SamplingParams;

/// First bytes of a cache file; bump the digit when the layout or the key changes.
const MAGIC: &[u8; 8] = b"XTTSPC01";
/// Magic, payload length (u64 LE), payload SHA-256.
const HEADER_LEN: usize = 8 + 8 + 32;
const EXTENSION: &str = "prompt";
/// Rate the cache stores (the engine's; an Opus rate).
pub const CACHE_RATE: u32 = 24_000;
/// Samples per chunk handed out on a hit (100 ms): the first arrives after a few packets.
const HIT_CHUNK: usize = 2_400;
/// Temporary files older than this are leftovers of a crash.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// How a request uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Deterministic requests (seed or greedy) are served from and stored in the cache.
    #[default]
    Auto,
    /// Never touch the cache.
    Off,
    /// Render again and replace what is stored; an unseeded request gets the fixed seed.
    Refresh,
}

impl CacheMode {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "auto" | "" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            "refresh" => Ok(Self::Refresh),
            other => bail!("cache must be auto, off or refresh, not '{other}'"),
        }
    }
}

/// Whether a request always produces the same audio.
pub fn is_deterministic(req: &SpeechRequest, base: &SamplingParams) -> bool {
    let p = req.options.sampling(base);
    p.seed.is_some() || !p.do_sample
}

/// The text as far as the audio is concerned.
pub fn normalise_text(text: &str) -> String {
    let nfc: String = text.nfc().collect();
    nfc.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What, besides the request, shapes the audio: fixed at start.
pub struct KeyContext {
    /// Identifies the model files (names, sizes, modification times).
    pub model: String,
    /// The engine and its settings that change the audio (stream mode, dtype, device, chunking).
    pub engine: String,
    pub speakers_dir: PathBuf,
    /// The configured sampling and speed that a request's options override.
    pub sampling: SamplingParams,
    pub speed: f64,
    /// Voice content hashes, recomputed when a clip's size or time changes.
    voices: Mutex<HashMap<String, (String, String)>>,
}

impl KeyContext {
    pub fn new(model: String, engine: String, speakers_dir: PathBuf, sampling: SamplingParams, speed: f64) -> Self {
        Self {
            model,
            engine,
            speakers_dir,
            sampling,
            speed,
            voices: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_config(cfg: &Config) -> Self {
        let e = &cfg.engine;
        let engine = format!(
            "xtts-v2|{}|{}|{}|{}|{}",
            e.stream_mode, e.gpt_dtype, e.device, e.first_chunk_tokens, e.stream_chunk_tokens
        );
        Self::new(
            model_fingerprint(&e.model_dir),
            engine,
            e.speakers_dir.clone(),
            e.sampling(),
            e.speed,
        )
    }

    /// The cache key of a request (hex SHA-256).
    pub fn key(&self, req: &SpeechRequest) -> Result<String> {
        let p = req.options.sampling(&self.sampling);
        // Greedy decoding ignores temperature, top-k, top-p and the seed.
        let sampling = if p.do_sample {
            format!(
                "sample t={} k={} p={} seed={:?}",
                p.temperature, p.top_k, p.top_p, p.seed
            )
        } else {
            "greedy".to_string()
        };
        let fields = [
            ("model", self.model.clone()),
            ("engine", self.engine.clone()),
            ("voice", self.voice_hash(&req.voice)?),
            ("lang", req.lang.clone()),
            ("text", normalise_text(&req.text)),
            ("sampling", sampling),
            ("repetition_penalty", p.repetition_penalty.to_string()),
            ("speed", req.options.speed.unwrap_or(self.speed).to_string()),
        ];
        let mut h = Sha256::new();
        h.update(MAGIC);
        for (name, value) in fields {
            h.update(name.as_bytes());
            h.update((value.len() as u64).to_le_bytes());
            h.update(value.as_bytes());
        }
        Ok(hex::encode(h.finalize()))
    }

    /// A hash of the voice's clips (`NAME.wav` or the clips in `NAME/`); a built-in voice is
    /// named only, the model fingerprint covering its file.
    fn voice_hash(&self, name: &str) -> Result<String> {
        let file = self.speakers_dir.join(format!("{name}.wav"));
        let folder = self.speakers_dir.join(name);
        let clips: Vec<PathBuf> = if file.is_file() {
            vec![file]
        } else if folder.is_dir() {
            let mut clips: Vec<PathBuf> = std::fs::read_dir(&folder)
                .with_context(|| format!("{}: cannot list voice clips", folder.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                .collect();
            clips.sort();
            clips
        } else {
            return Ok(format!("builtin:{name}"));
        };
        let stamps = stamps(&clips);
        if let Some((seen, hash)) = self.voices.lock().unwrap().get(name) {
            if *seen == stamps {
                return Ok(hash.clone());
            }
        }
        let mut h = Sha256::new();
        for clip in &clips {
            let bytes = std::fs::read(clip).with_context(|| format!("{}: cannot read voice clip", clip.display()))?;
            h.update(clip.file_name().unwrap_or_default().as_encoded_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        let hash = format!("clips:{}", hex::encode(h.finalize()));
        self.voices
            .lock()
            .unwrap()
            .insert(name.to_string(), (stamps, hash.clone()));
        Ok(hash)
    }
}

/// Names, sizes and modification times of `paths`, one line each.
fn stamps(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let time = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .unwrap_or_default();
            format!("{}|{len}|{}.{:09}\n", p.display(), time.as_secs(), time.subsec_nanos())
        })
        .collect()
}

/// The model files' names, sizes and times (hashing 1.8 GB at every start would take seconds).
pub fn model_fingerprint(model_dir: &Path) -> String {
    let files = ["config.json", "vocab.json", "model.pth", "speakers_xtts.pth"].map(|f| model_dir.join(f));
    let mut h = Sha256::new();
    h.update(stamps(&files));
    hex::encode(h.finalize())[..16].to_string()
}

/// A stored prompt: verified Ogg Opus bytes.
#[derive(Debug, Clone)]
pub struct CachedAudio {
    pub opus: Vec<u8>,
}

impl CachedAudio {
    /// All samples at [`CACHE_RATE`].
    pub fn samples(&self) -> Result<Vec<f32>> {
        opus::decode(self.opus.clone(), CACHE_RATE)
    }
}

#[derive(Default)]
struct Index {
    /// Bytes on disk and last use of every known entry.
    entries: HashMap<String, (u64, u64)>,
    total: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, key: &str, bytes: u64) {
        self.clock += 1;
        if let Some((old, _)) = self.entries.insert(key.to_string(), (bytes, self.clock)) {
            self.total -= old;
        }
        self.total += bytes;
    }

    fn forget(&mut self, key: &str) {
        if let Some((bytes, _)) = self.entries.remove(key) {
            self.total -= bytes;
        }
    }
}

/// One synthesis shared by every listener of a key: its audio so far and how it ended.
#[derive(Default)]
struct Flight {
    state: Mutex<FlightState>,
    changed: Notify,
    /// The engine that speaks it, once its synthesis is queued.
    engine: std::sync::OnceLock<&'static str>,
}

#[derive(Default)]
struct FlightState {
    audio: Vec<f32>,
    end: Option<Result<(), String>>,
}

impl Flight {
    fn push(&self, chunk: &[f32]) {
        self.state.lock().unwrap().audio.extend_from_slice(chunk);
        self.changed.notify_waiters();
    }

    fn finish(&self, end: Result<(), String>) {
        self.state.lock().unwrap().end = Some(end);
        self.changed.notify_waiters();
    }
}

/// Where a request's speech comes from, decided before any engine request.
enum Start {
    /// No new engine request: stored audio, or a synthesis under way.
    Ready(CachedSpeech),
    /// Not for the cache: straight to the engine.
    Bypass(SpeechRequest),
    /// A miss: this caller's engine request fills `flight`.
    Fill {
        key: String,
        req: SpeechRequest,
        flight: Arc<Flight>,
    },
}

/// A miss's flight while its engine request waits for room; abandoned if dropped unlaunched.
struct Unlaunched<'a> {
    cache: &'a PromptCache,
    key: &'a str,
    flight: &'a Arc<Flight>,
    launched: bool,
}

impl Drop for Unlaunched<'_> {
    fn drop(&mut self) {
        if !self.launched {
            self.cache
                .abandon(self.key, self.flight, "the request was withdrawn".to_string());
        }
    }
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub stored: u64,
    pub evicted: u64,
    /// Files refused because their header did not match their content.
    pub corrupt: u64,
}

/// The prompt cache of one directory.
pub struct PromptCache {
    dir: PathBuf,
    max_bytes: u64,
    fixed_seed: u64,
    bitrate: i32,
    keys: KeyContext,
    /// Cut trailing silence and run-on before storing (off in the reference stream mode).
    trim_endings: bool,
    index: Mutex<Index>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    stats: Mutex<CacheStats>,
}

impl PromptCache {
    /// A cache in `dir` (created on first store), bounded to `max_bytes`. Entries already in
    /// `dir` are indexed by their modification time; crash leftovers are removed.
    pub fn open(dir: &Path, max_bytes: u64, fixed_seed: u64, keys: KeyContext) -> Result<Self> {
        let cache = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            fixed_seed,
            bitrate: opus::BITRATE,
            trim_endings: true,
            keys,
            index: Mutex::new(Index::default()),
            flights: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        };
        if dir.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
                let Ok(entry) = entry else { continue };
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                let name = entry.file_name().to_string_lossy().into_owned();
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                if name.ends_with(".tmp") {
                    if modified.elapsed().unwrap_or_default() > STALE_TMP {
                        let _ = std::fs::remove_file(&path);
                    }
                } else if let Some(key) = name.strip_suffix(&format!(".{EXTENSION}")) {
                    found.push((modified, key.to_string(), meta.len()));
                }
            }
            found.sort();
            let mut index = cache.index.lock().unwrap();
            for (_, key, bytes) in found {
                index.touch(&key, bytes);
            }
        }
        cache.evict(None);
        Ok(cache)
    }

    /// The cache `[prompts]` configures, shared by everything in the process that opens the
    /// same directory (calls, the HTTP API, pre-rendering) for the life of the process, so
    /// they share one index and one set of syntheses in flight; None when disabled or unusable
    /// (a warning says why).
    pub fn shared(cfg: &Config) -> Option<Arc<PromptCache>> {
        static OPEN: Mutex<Vec<(PathBuf, Arc<PromptCache>)>> = Mutex::new(Vec::new());
        let p = &cfg.prompts;
        if p.cache_dir.as_os_str().is_empty() {
            return None;
        }
        let mut open = OPEN.lock().unwrap();
        if let Some((_, cache)) = open.iter().find(|(dir, _)| *dir == p.cache_dir) {
            return Some(cache.clone());
        }
        let keys = KeyContext::from_config(cfg);
        match PromptCache::open(&p.cache_dir, p.cache_max_mb.saturating_mul(1 << 20), p.seed, keys) {
            Ok(mut cache) => {
                cache.trim_endings = cfg.engine.stream_mode != crate::config::StreamModeSetting::Reference;
                let cache = Arc::new(cache);
                open.push((p.cache_dir.clone(), cache.clone()));
                Some(cache)
            }
            Err(e) => {
                tracing::warn!("prompt cache disabled: {e:#}");
                None
            }
        }
    }

    pub fn keys(&self) -> &KeyContext {
        &self.keys
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap()
    }

    /// Bytes the cache holds on disk, as indexed.
    pub fn size_bytes(&self) -> u64 {
        self.index.lock().unwrap().total
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{EXTENSION}"))
    }

    /// The request as the cache would render it: an unseeded request gets the fixed seed
    /// (`pin` for prompt files and `refresh`). None when it is not to be cached.
    pub fn plan(&self, req: &SpeechRequest, mode: CacheMode, pin: bool) -> Option<SpeechRequest> {
        let mut req = req.clone();
        if mode == CacheMode::Off {
            return None;
        }
        if (pin || mode == CacheMode::Refresh) && !is_deterministic(&req, &self.keys.sampling) {
            req.options.seed = Some(self.fixed_seed);
        }
        is_deterministic(&req, &self.keys.sampling).then_some(req)
    }

    /// The stored audio of `req`, if any (a plain lookup: the request is used as given).
    pub fn lookup(&self, req: &SpeechRequest) -> Option<CachedAudio> {
        let key = self.keys.key(req).ok()?;
        self.read(&key)
    }

    /// Reads and verifies an entry; a bad one is removed.
    fn read(&self, key: &str) -> Option<CachedAudio> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        match verify(&bytes) {
            Ok(()) => {
                self.index.lock().unwrap().touch(key, bytes.len() as u64);
                // The file's time carries the recency across restarts.
                if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                self.stats.lock().unwrap().hits += 1;
                Some(CachedAudio {
                    opus: bytes[HEADER_LEN..].to_vec(),
                })
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "dropping a damaged cached prompt: {e:#}");
                let _ = std::fs::remove_file(&path);
                self.index.lock().unwrap().forget(key);
                self.stats.lock().unwrap().corrupt += 1;
                None
            }
        }
    }

    /// Stores rendered audio (24 kHz) under `req`'s key.
    pub fn store(&self, req: &SpeechRequest, samples: &[f32]) -> Result<()> {
        let key = self.keys.key(req)?;
        self.write(&key, samples)
    }

    fn write(&self, key: &str, samples: &[f32]) -> Result<()> {
        let payload = opus::encode(samples, CACHE_RATE, self.bitrate)?;
        let mut file = Vec::with_capacity(HEADER_LEN + payload.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&Sha256::digest(&payload));
        file.extend_from_slice(&payload);
        std::fs::create_dir_all(&self.dir).with_context(|| format!("{}: cannot create", self.dir.display()))?;
        let tmp = self.dir.join(format!("{key}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&file)?;
            f.sync_data()?;
            std::fs::rename(&tmp, self.path(key))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("{}: cannot store a prompt", self.dir.display()));
        }
        self.index.lock().unwrap().touch(key, file.len() as u64);
        self.stats.lock().unwrap().stored += 1;
        self.evict(Some(key));
        Ok(())
    }

    /// Drops least recently used entries until the bound holds (`keep` last of all).
    fn evict(&self, keep: Option<&str>) {
        loop {
            let victim = {
                let mut index = self.index.lock().unwrap();
                if index.total <= self.max_bytes {
                    return;
                }
                let victim = index
                    .entries
                    .iter()
                    .filter(|(k, _)| Some(k.as_str()) != keep)
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone())
                    .or_else(|| keep.map(str::to_string));
                let Some(victim) = victim else { return };
                index.forget(&victim);
                victim
            };
            let _ = std::fs::remove_file(self.path(&victim));
            self.stats.lock().unwrap().evicted += 1;
        }
    }

    /// Speech for `req`: from the cache when stored, else from the engine (one synthesis per
    /// key however many ask at once), filling the cache. Requests the cache does not take
    /// (`off`, not deterministic) go straight to the engine. Errors are the engine's.
    pub fn speak(
        self: &Arc<Self>,
        engine: &Engine,
        req: SpeechRequest,
        mode: CacheMode,
    ) -> Result<CachedSpeech, EngineError> {
        match self.begin(engine, req, mode)? {
            Start::Ready(speech) => Ok(speech),
            Start::Bypass(req) => Ok(CachedSpeech::live(engine.speak(req)?)),
            Start::Fill { key, req, flight } => self.launch(key, flight, engine.speak(req)),
        }
    }

    /// [`Self::speak`], where an engine request (a miss, or a request the cache does not take)
    /// waits at most `patience` for room in a full engine, as [`Engine::speak_within`] does.
    /// Listeners of the same key follow the waiting request meanwhile.
    pub async fn speak_within(
        self: &Arc<Self>,
        engine: &Engine,
        req: SpeechRequest,
        mode: CacheMode,
        patience: Duration,
    ) -> Result<CachedSpeech, EngineError> {
        match self.begin(engine, req, mode)? {
            Start::Ready(speech) => Ok(speech),
            Start::Bypass(req) => Ok(CachedSpeech::live(engine.speak_within(req, patience).await?)),
            Start::Fill { key, req, flight } => {
                // Dropped while waiting (the caller went away): the flight ends, so later
                // requests of its key do not follow a synthesis that never starts.
                let mut waiting = Unlaunched {
                    cache: self,
                    key: &key,
                    flight: &flight,
                    launched: false,
                };
                let queued = engine.speak_within(req, patience).await;
                waiting.launched = true;
                self.launch(key.clone(), flight.clone(), queued)
            }
        }
    }

    /// Everything before an engine request: a hit, a synthesis under way to follow, or a miss
    /// whose flight this caller now leads.
    fn begin(&self, engine: &Engine, req: SpeechRequest, mode: CacheMode) -> Result<Start, EngineError> {
        engine.validate(&req)?;
        let Some(req) = self.plan(&req, mode, false) else {
            return Ok(Start::Bypass(req));
        };
        let key = match self.keys.key(&req) {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!("prompt cache bypassed: {e:#}");
                return Ok(Start::Bypass(req));
            }
        };
        if mode != CacheMode::Refresh {
            if let Some(hit) = self.read(&key) {
                return Ok(Start::Ready(CachedSpeech::hit(hit)));
            }
        }
        let flight = {
            let mut flights = self.flights.lock().unwrap();
            if let Some(flight) = flights.get(&key) {
                // `refresh` wants a new rendering, not one that has already ended.
                let ended = flight.state.lock().unwrap().end.is_some();
                if !(ended && mode == CacheMode::Refresh) {
                    return Ok(Start::Ready(CachedSpeech::follow(flight.clone())));
                }
            }
            // A flight is removed only after its audio is stored: a key with neither was
            // stored before we looked, or is new.
            if mode != CacheMode::Refresh && self.index.lock().unwrap().entries.contains_key(&key) {
                drop(flights);
                if let Some(hit) = self.read(&key) {
                    return Ok(Start::Ready(CachedSpeech::hit(hit)));
                }
                flights = self.flights.lock().unwrap();
            }
            let flight = Arc::new(Flight::default());
            flights.insert(key.clone(), flight.clone());
            flight
        };
        self.stats.lock().unwrap().misses += 1;
        Ok(Start::Fill { key, req, flight })
    }

    /// Starts filling a miss's flight from its engine request, or ends the flight with the
    /// engine's refusal.
    fn launch(
        self: &Arc<Self>,
        key: String,
        flight: Arc<Flight>,
        queued: Result<Speech, EngineError>,
    ) -> Result<CachedSpeech, EngineError> {
        match queued {
            Ok(speech) => {
                let _ = flight.engine.set(speech.engine());
                tokio::spawn(self.clone().fill(key, speech, flight.clone()));
                Ok(CachedSpeech::follow(flight))
            }
            Err(e) => {
                self.abandon(&key, &flight, e.to_string());
                Err(e)
            }
        }
    }

    /// Ends a flight that never got its synthesis; its listeners get `reason`.
    fn abandon(&self, key: &str, flight: &Arc<Flight>, reason: String) {
        let mut flights = self.flights.lock().unwrap();
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
        drop(flights);
        flight.finish(Err(reason));
    }

    /// Runs one synthesis to its end for every listener, then stores it.
    async fn fill(self: Arc<Self>, key: String, mut speech: Speech, flight: Arc<Flight>) {
        let mut audio = Vec::new();
        let end = loop {
            match speech.next().await {
                Some(SpeechEvent::Audio(chunk)) => {
                    flight.push(&chunk);
                    audio.extend(chunk);
                }
                Some(SpeechEvent::Done) => break Ok(()),
                Some(SpeechEvent::Failed(reason)) => break Err(reason),
                None => break Err("the engine stopped".to_string()),
            }
        };
        let ok = end.is_ok();
        flight.finish(end);
        if self.trim_endings {
            audio.truncate(crate::endings::speech_end(&audio, CACHE_RATE));
        }
        if ok && !audio.is_empty() {
            let cache = self.clone();
            let key2 = key.clone();
            let stored = tokio::task::spawn_blocking(move || cache.write(&key2, &audio)).await;
            match stored {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot store a prompt: {e:#}"),
                Err(e) => tracing::warn!("storing a prompt failed: {e}"),
            }
        }
        // Only this flight: a `refresh` may have started a newer one under the same key.
        let mut flights = self.flights.lock().unwrap();
        if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&key);
        }
    }
}

/// Checks a cache file's header against its payload.
fn verify(file: &[u8]) -> Result<()> {
    ensure!(
        file.len() >= HEADER_LEN && &file[..8] == MAGIC,
        "not a prompt cache file"
    );
    let len = u64::from_le_bytes(file[8..16].try_into().expect("8 bytes"));
    let payload = &file[HEADER_LEN..];
    ensure!(
        payload.len() as u64 == len,
        "payload is {} bytes, header says {len}",
        payload.len()
    );
    ensure!(Sha256::digest(payload)[..] == file[16..48], "payload checksum mismatch");
    Ok(())
}

enum Source {
    Live(Speech),
    Hit(Box<opus::OpusReader>),
    Follow { flight: Arc<Flight>, offset: usize },
}

/// A request's audio, wherever it comes from: the same events as [`Speech`].
/// Dropping it stops listening (a shared synthesis still completes and is stored).
pub struct CachedSpeech {
    source: Source,
    ended: bool,
    /// Whether the audio comes from the cache (no engine request).
    pub from_cache: bool,
}

impl CachedSpeech {
    pub fn live(speech: Speech) -> Self {
        Self {
            source: Source::Live(speech),
            ended: false,
            from_cache: false,
        }
    }

    fn hit(audio: CachedAudio) -> Self {
        match opus::OpusReader::new(audio.opus, CACHE_RATE) {
            Ok(reader) => Self {
                source: Source::Hit(Box::new(reader)),
                ended: false,
                from_cache: true,
            },
            // Verified bytes that do not parse: only a bug could do that; report it as a failure.
            Err(e) => Self {
                source: Source::Follow {
                    flight: Arc::new(Flight {
                        state: Mutex::new(FlightState {
                            audio: Vec::new(),
                            end: Some(Err(format!("cached prompt unreadable: {e:#}"))),
                        }),
                        changed: Notify::new(),
                        engine: std::sync::OnceLock::new(),
                    }),
                    offset: 0,
                },
                ended: false,
                from_cache: true,
            },
        }
    }

    fn follow(flight: Arc<Flight>) -> Self {
        Self {
            source: Source::Follow { flight, offset: 0 },
            ended: false,
            from_cache: false,
        }
    }

    /// The engine that speaks it (`xtts`, `builtin`), or `cache` for a stored prompt.
    pub fn engine(&self) -> &'static str {
        match &self.source {
            Source::Live(speech) => speech.engine(),
            Source::Hit(_) => "cache",
            Source::Follow { flight, .. } => flight.engine.get().copied().unwrap_or("cache"),
        }
    }

    /// Where the listener reports playout to the engine: only a request of its own has one
    /// (a shared synthesis runs for every listener at once).
    pub fn playout(&self) -> Option<Arc<crate::engine::Playout>> {
        match &self.source {
            Source::Live(speech) => Some(speech.playout()),
            _ => None,
        }
    }

    /// The next event; None after Done or Failed.
    pub async fn next(&mut self) -> Option<SpeechEvent> {
        if self.ended {
            return None;
        }
        let event = match &mut self.source {
            Source::Live(speech) => speech.next().await,
            Source::Hit(reader) => Some(match reader.next_chunk(HIT_CHUNK) {
                Ok(Some(chunk)) => SpeechEvent::Audio(chunk),
                Ok(None) => SpeechEvent::Done,
                Err(e) => SpeechEvent::Failed(format!("cached prompt unreadable: {e:#}")),
            }),
            Source::Follow { flight, offset } => Some(loop {
                let changed = flight.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                {
                    let state = flight.state.lock().unwrap();
                    if state.audio.len() > *offset {
                        let chunk = state.audio[*offset..].to_vec();
                        *offset = state.audio.len();
                        break SpeechEvent::Audio(chunk);
                    }
                    match &state.end {
                        Some(Ok(())) => break SpeechEvent::Done,
                        Some(Err(reason)) => break SpeechEvent::Failed(reason.clone()),
                        None => {}
                    }
                }
                changed.await;
            }),
        };
        if !matches!(event, Some(SpeechEvent::Audio(_))) {
            self.ended = true;
        }
        event
    }

    /// Collects the whole audio (for files and pre-rendering).
    pub async fn collect(mut self) -> Result<Vec<f32>> {
        let mut samples = Vec::new();
        loop {
            match self.next().await {
                Some(SpeechEvent::Audio(chunk)) => samples.extend(chunk),
                Some(SpeechEvent::Done) => return Ok(samples),
                Some(SpeechEvent::Failed(reason)) => bail!(reason),
                None => bail!("the engine stopped"),
            }
        }
    }
}

/// Speech for `req` through `cache` when there is one, else straight from the engine.
pub fn speak(
    cache: Option<&Arc<PromptCache>>,
    engine: &Engine,
    req: SpeechRequest,
    mode: CacheMode,
) -> Result<CachedSpeech, EngineError> {
    match cache {
        Some(cache) => cache.speak(engine, req, mode),
        None => Ok(CachedSpeech::live(engine.speak(req)?)),
    }
}

/// [`speak`], where an engine request waits at most `patience` for room in a full engine.
pub async fn speak_within(
    cache: Option<&Arc<PromptCache>>,
    engine: &Engine,
    req: SpeechRequest,
    mode: CacheMode,
    patience: Duration,
) -> Result<CachedSpeech, EngineError> {
    match cache {
        Some(cache) => cache.speak_within(engine, req, mode, patience).await,
        None => Ok(CachedSpeech::live(engine.speak_within(req, patience).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SpeechBackend, SpeechOptions};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A tone per text, in 50 ms chunks a few ms apart; counts its requests.
    struct Counting(Arc<AtomicUsize>);

    impl SpeechBackend for Counting {
        fn sample_rate(&self) -> u32 {
            24000
        }
        fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            anyhow::ensure!(!req.text.contains("fail"), "told to fail");
            let freq = 200.0 + (req.text.len() % 50) as f32 * 20.0;
            for c in 0..10 {
                std::thread::sleep(Duration::from_millis(5));
                let chunk = (0..1200)
                    .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * (c * 1200 + i) as f32 / 24000.0).sin())
                    .collect();
                if !emit(chunk) {
                    return Ok(());
                }
            }
            Ok(())
        }
    }

    fn engine() -> (Engine, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        (
            Engine::start(Counting(count.clone()), |_: &SpeechRequest| Ok(()), 16),
            count,
        )
    }

    fn context(speakers: &Path) -> KeyContext {
        KeyContext::new(
            "model-a".into(),
            "engine-a".into(),
            speakers.to_path_buf(),
            SamplingParams::default(),
            1.0,
        )
    }

    fn request(text: &str, seed: Option<u64>) -> SpeechRequest {
        SpeechRequest {
            text: text.into(),
            lang: "en".into(),
            voice: "anna".into(),
            options: SpeechOptions {
                seed,
                ..Default::default()
            },
        }
    }

    fn cache(dir: &Path, max_bytes: u64) -> Arc<PromptCache> {
        Arc::new(PromptCache::open(&dir.join("cache"), max_bytes, 7, context(&dir.join("speakers"))).unwrap())
    }

    #[test]
    fn keys_change_with_what_shapes_the_audio_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let speakers = dir.path().join("speakers");
        std::fs::create_dir_all(&speakers).unwrap();
        std::fs::write(speakers.join("anna.wav"), b"clip one").unwrap();
        let ctx = context(&speakers);
        let base = request("Press 1 for sales.", Some(3));
        let k = ctx.key(&base).unwrap();
        let with = |f: &dyn Fn(&mut SpeechRequest)| {
            let mut r = base.clone();
            f(&mut r);
            ctx.key(&r).unwrap()
        };
        // Not shaping: case, spacing, Unicode composition of the same text.
        assert_eq!(with(&|r| r.text = "  press 1   FOR sales. ".into()), k);
        assert_eq!(
            with(&|r| r.options.speed = Some(1.0)),
            k,
            "the configured speed spelled out"
        );
        // Shaping, one at a time.
        let changed = [
            with(&|r| r.text = "Press 2 for sales.".into()),
            with(&|r| r.lang = "de".into()),
            with(&|r| r.voice = "bert".into()),
            with(&|r| r.options.seed = Some(4)),
            with(&|r| r.options.temperature = Some(0.5)),
            with(&|r| r.options.top_k = Some(10)),
            with(&|r| r.options.top_p = Some(0.5)),
            with(&|r| r.options.repetition_penalty = Some(2.0)),
            with(&|r| r.options.speed = Some(1.1)),
            with(&|r| r.options.greedy = Some(true)),
        ];
        for (i, c) in changed.iter().enumerate() {
            assert_ne!(*c, k, "change {i} kept the key");
        }
        let other_model = KeyContext::new(
            "model-b".into(),
            "engine-a".into(),
            speakers.clone(),
            SamplingParams::default(),
            1.0,
        );
        assert_ne!(other_model.key(&base).unwrap(), k);
        let other_engine = KeyContext::new(
            "model-a".into(),
            "engine-b".into(),
            speakers.clone(),
            SamplingParams::default(),
            1.0,
        );
        assert_ne!(other_engine.key(&base).unwrap(), k);
        // The voice's clip content, not its name alone (a longer file: a new size stamp).
        std::fs::write(speakers.join("anna.wav"), b"clip number two").unwrap();
        assert_ne!(ctx.key(&base).unwrap(), k);
        // Greedy ignores temperature and seed.
        let greedy = |t: f64, seed: Option<u64>| {
            let mut r = base.clone();
            r.options.greedy = Some(true);
            r.options.temperature = Some(t);
            r.options.seed = seed;
            ctx.key(&r).unwrap()
        };
        assert_eq!(greedy(0.5, Some(1)), greedy(0.9, None));
    }

    #[tokio::test]
    async fn a_hit_makes_no_engine_request_and_replays_the_audio() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, count) = engine();
        let cache = cache(dir.path(), 1 << 20);
        let req = request("Welcome to the shop.", Some(5));
        let first = cache.speak(&engine, req.clone(), CacheMode::Auto).unwrap();
        assert!(!first.from_cache);
        let live = first.collect().await.unwrap();
        assert_eq!(live.len(), 12000);
        // Stored once the synthesis is done (in the background).
        for _ in 0..200 {
            if cache.stats().stored == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cache.stats().stored, 1);
        for _ in 0..3 {
            let again = cache.speak(&engine, req.clone(), CacheMode::Auto).unwrap();
            assert!(again.from_cache);
            let replay = again.collect().await.unwrap();
            assert_eq!(replay.len(), live.len());
            assert!(opus::snr_db(&live, &replay) > 12.0);
        }
        assert_eq!(count.load(Ordering::SeqCst), 1, "hits must not reach the engine");
        assert_eq!(cache.stats().hits, 3);
        // A fresh cache on the same directory (a restart) finds it too.
        let reopened = super::PromptCache::open(
            &dir.path().join("cache"),
            1 << 20,
            7,
            context(&dir.path().join("speakers")),
        )
        .unwrap();
        assert!(reopened.lookup(&req).is_some());
        // refresh renders again; off and unseeded requests bypass the cache.
        cache
            .speak(&engine, req.clone(), CacheMode::Refresh)
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        cache
            .speak(&engine, req.clone(), CacheMode::Off)
            .unwrap()
            .collect()
            .await
            .unwrap();
        cache
            .speak(&engine, request("Welcome to the shop.", None), CacheMode::Auto)
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn concurrent_misses_synthesize_once() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, count) = engine();
        let cache = cache(dir.path(), 1 << 20);
        let req = request("Press 1 for sales.", Some(9));
        let listeners: Vec<_> = (0..8)
            .map(|_| {
                let speech = cache.speak(&engine, req.clone(), CacheMode::Auto).unwrap();
                tokio::spawn(speech.collect())
            })
            .collect();
        let mut results = Vec::new();
        for l in listeners {
            results.push(l.await.unwrap().unwrap());
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|r| *r == results[0] && r.len() == 12000));
        // A listener that hangs up does not stop the shared synthesis from filling the cache.
        let req2 = request("Press 2 for support.", Some(9));
        drop(cache.speak(&engine, req2.clone(), CacheMode::Auto).unwrap());
        for _ in 0..200 {
            if cache.lookup(&req2).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(cache.lookup(&req2).is_some());
    }

    #[tokio::test]
    async fn a_failed_synthesis_is_not_stored_and_reaches_every_listener() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, count) = engine();
        let cache = cache(dir.path(), 1 << 20);
        let req = request("please fail", Some(1));
        let a = cache.speak(&engine, req.clone(), CacheMode::Auto).unwrap();
        let b = cache.speak(&engine, req.clone(), CacheMode::Auto).unwrap();
        assert!(a.collect().await.unwrap_err().to_string().contains("told to fail"));
        assert!(b.collect().await.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(cache.lookup(&req).is_none());
        cache
            .speak(&engine, req, CacheMode::Auto)
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(count.load(Ordering::SeqCst), 2, "a failure is retried, not cached");
    }

    #[test]
    fn a_torn_or_damaged_file_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 1 << 20);
        let req = request("Thank you for calling.", Some(2));
        let audio: Vec<f32> = (0..4800).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let path = cache.path(&cache.keys.key(&req).unwrap());
        for damage in 0..3 {
            cache.store(&req, &audio).unwrap();
            assert!(cache.lookup(&req).is_some());
            let mut bytes = std::fs::read(&path).unwrap();
            match damage {
                0 => bytes.truncate(bytes.len() - 100), // a write cut short
                1 => {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0x40; // a flipped bit
                }
                _ => bytes.truncate(20), // a torn header
            }
            std::fs::write(&path, &bytes).unwrap();
            assert!(cache.lookup(&req).is_none(), "damage {damage} was served");
            assert!(!path.exists(), "a damaged entry is removed");
        }
        assert_eq!(cache.stats().corrupt, 3);
        // Crash leftovers under temporary names are never read as entries.
        std::fs::write(dir.path().join("cache").join("abc.tmp"), b"partial").unwrap();
        let reopened = PromptCache::open(&dir.path().join("cache"), 1 << 20, 7, context(dir.path())).unwrap();
        assert_eq!(reopened.size_bytes(), 0);
    }

    #[test]
    fn eviction_keeps_the_bound_and_drops_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let audio: Vec<f32> = (0..24000).map(|i| (i as f32 * 0.03).sin() * 0.3).collect();
        let probe = cache(dir.path(), u64::MAX);
        probe.store(&request("probe", Some(1)), &audio).unwrap();
        let entry = probe.size_bytes();
        drop(probe);
        std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
        // Room for three entries of about this size.
        let cache = cache(dir.path(), entry * 3 + entry / 2);
        let reqs: Vec<_> = (0..5).map(|i| request(&format!("prompt {i}"), Some(1))).collect();
        for (i, r) in reqs.iter().enumerate() {
            cache.store(r, &audio).unwrap();
            if i == 2 {
                assert!(cache.lookup(&reqs[0]).is_some()); // 0 is now the most recent
            }
            assert!(cache.size_bytes() <= entry * 3 + entry / 2);
        }
        let on_disk: u64 = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, cache.size_bytes());
        let kept: Vec<bool> = reqs.iter().map(|r| cache.lookup(r).is_some()).collect();
        assert_eq!(kept, vec![true, false, false, true, true]);
        assert_eq!(cache.stats().evicted, 2);
    }

    /// Speech then 1 s of silence.
    struct TrailingSilence;

    impl SpeechBackend for TrailingSilence {
        fn sample_rate(&self) -> u32 {
            24000
        }
        fn speak(&mut self, _req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
            emit((0..12000).map(|i| 0.5 * (i as f32 * 0.1).sin()).collect());
            emit(vec![0.0; 24000]);
            Ok(())
        }
    }

    #[tokio::test]
    async fn stored_prompts_end_with_the_speech_except_in_reference_mode() {
        for (mode, expect) in [("windowed", 12000 + 80 * 24), ("reference", 36000)] {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = Config::default();
            cfg.prompts.cache_dir = dir.path().join("cache");
            cfg.engine.stream_mode = mode.parse().unwrap();
            let cache = PromptCache::shared(&cfg).unwrap();
            let engine = Engine::start(TrailingSilence, |_: &SpeechRequest| Ok(()), 4);
            let req = request("Goodbye.", Some(1));
            let live = cache
                .speak(&engine, req.clone(), CacheMode::Auto)
                .unwrap()
                .collect()
                .await
                .unwrap();
            assert_eq!(live.len(), 36000, "listeners of the synthesis hear it all");
            for _ in 0..200 {
                if cache.lookup(&req).is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(cache.lookup(&req).unwrap().samples().unwrap().len(), expect, "{mode}");
        }
    }

    /// Figures for the record (`cargo test --release --lib prompt_cache::tests::figures --
    /// --nocapture`): time to the first audio of a hit, and Opus speed on one core.
    #[tokio::test]
    async fn figures() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, count) = engine();
        let cache = cache(dir.path(), 1 << 30);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ref_24k.wav");
        let (_, pcm) = crate::audio::wav::read_wav(&path).unwrap();
        let speech: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
        let secs = speech.len() as f64 / 24000.0;
        let t = std::time::Instant::now();
        let file = opus::encode(&speech, 24000, opus::BITRATE).unwrap();
        let encode = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let decoded = opus::decode(file.clone(), 24000).unwrap();
        let decode = t.elapsed().as_secs_f64();
        eprintln!(
            "Opus at {} b/s, one core: encode {:.0}x real time, decode {:.0}x real time, SNR {:.1} dB",
            opus::BITRATE,
            secs / encode,
            secs / decode,
            opus::snr_db(&speech, &decoded)
        );
        for bitrate in [24_000, 48_000, 64_000] {
            let d = opus::decode(opus::encode(&speech, 24000, bitrate).unwrap(), 24000).unwrap();
            eprintln!("  at {bitrate} b/s: SNR {:.1} dB", opus::snr_db(&speech, &d));
        }
        let req = request("A menu prompt.", Some(3));
        cache.store(&req, &speech).unwrap();
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = std::time::Instant::now();
            let mut s = cache.speak(&engine, req.clone(), CacheMode::Auto).unwrap();
            assert!(matches!(s.next().await, Some(SpeechEvent::Audio(_))));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "cache hit of a {secs:.1} s prompt to its first 100 ms of audio: p50 {:.3} ms, p99 {:.3} ms",
            times[100], times[198]
        );
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn plans_cache_only_deterministic_requests() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path(), 1 << 20);
        let unseeded = request("hi", None);
        assert!(cache.plan(&unseeded, CacheMode::Auto, false).is_none());
        assert!(cache.plan(&request("hi", Some(1)), CacheMode::Off, false).is_none());
        assert_eq!(
            cache.plan(&unseeded, CacheMode::Refresh, false).unwrap().options.seed,
            Some(7)
        );
        assert_eq!(
            cache.plan(&unseeded, CacheMode::Auto, true).unwrap().options.seed,
            Some(7)
        );
        let mut greedy = unseeded.clone();
        greedy.options.greedy = Some(true);
        assert_eq!(cache.plan(&greedy, CacheMode::Auto, false).unwrap().options.seed, None);
        assert!(CacheMode::parse("sometimes")
            .unwrap_err()
            .to_string()
            .contains("sometimes"));
    }
}
