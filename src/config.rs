//! The daemon's `config.toml`. Every key has a default; an unknown key is an error that
//! names it, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::xtts::sampling::SamplingParams;
use crate::xtts::stream::StreamOptions;

/// Largest frame the daemon sends: 20 ms of 48 kHz slin. A peer's payload limit below it would
/// refuse our own audio format.
pub const LARGEST_FRAME_BYTES: usize = 1920;
/// Speech limited below this would be inaudible on a phone line.
pub const LOWEST_PEAK_DBFS: f64 = -60.0;
/// Speaking rates a request (or `engine.speed`) may ask for; 1.0 is normal.
pub const SPEED_RANGE: std::ops::RangeInclusive<f64> = 0.5..=2.0;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub engine: EngineConfig,
    pub audiosocket: AudioSocketConfig,
    pub agi: AgiConfig,
    pub control: ControlConfig,
    pub audio: AudioConfig,
    pub test_call: TestCallConfig,
    /// The built-in voice (eSpeak NG), which needs no model download.
    pub builtin: BuiltinVoiceConfig,
    /// When the built-in voice speaks instead of XTTS.
    pub fallback: FallbackPolicy,
    pub daemon: DaemonConfig,
    pub limits: LimitsConfig,
    pub voicebot: VoicebotConfig,
    pub prompts: PromptsConfig,
}

/// How the process runs: drain, who may connect, logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// On SIGTERM, calls still speaking get this long to finish before they are ended.
    pub drain_timeout_ms: u64,
    /// Peers allowed to connect to any listener (CIDR); empty: everyone.
    pub allow_from: Vec<IpNet>,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Bounds on what peers can ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest text one request may ask to say, in characters.
    pub max_text_chars: usize,
    /// Speech requests one call may have waiting.
    pub max_jobs_per_call: usize,
    /// Speech requests waiting for calls that have not connected yet, all together.
    pub max_pending_jobs: usize,
    /// How long speech waits for its call to connect before it is dropped.
    pub pending_ttl_ms: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 20_000,
            allow_from: Vec::new(),
            log_format: LogFormat::Text,
        }
    }
}

impl DaemonConfig {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_text_chars: 2000,
            max_jobs_per_call: 16,
            max_pending_jobs: 1024,
            pending_ttl_ms: 60_000,
        }
    }
}

/// Declares a setting chosen by name in config.toml and on the command line: an enum whose
/// variants are spelled as the lowercase names given, with `FromStr` and `Display` agreeing
/// with serde and clap.
macro_rules! named_setting {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] #[value(name = $text)] $variant),+
        }

        impl $name {
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => anyhow::bail!(
                        "unknown {} '{other}': use {}",
                        stringify!($name),
                        [$($text),+].join(", ")
                    ),
                }
            }
        }
    };
}

named_setting! {
    /// Where the model runs.
    DeviceSetting {
        /// CUDA when libtorch sees a device, else the CPU.
        Auto = "auto",
        Cpu = "cpu",
        /// The first CUDA device; the start fails when there is none.
        Cuda = "cuda",
    }
}

named_setting! {
    /// How the vocoder streams a sentence.
    StreamModeSetting {
        /// A fixed window of latents per chunk: constant vocoder cost per chunk.
        Windowed = "windowed",
        /// Bit-compatible with the reference's inference_stream; cost grows with the utterance.
        Reference = "reference",
    }
}

named_setting! {
    /// The GPT's float type.
    GptDtype {
        /// What parity with the reference is proven in.
        Float32 = "float32",
        Bfloat16 = "bfloat16",
        Float16 = "float16",
    }
}

/// The model and how it samples. Sampling defaults follow the reference's
/// `inference_stream()` (what streaming servers call), not config.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Directory holding config.json, model.pth, vocab.json (and speakers_xtts.pth).
    pub model_dir: PathBuf,
    pub device: DeviceSetting,
    /// Directory of voice clips (`NAME.wav`, or a folder `NAME/` of clips); cached
    /// conditioning is written beside them.
    pub speakers_dir: PathBuf,
    pub default_voice: String,
    pub default_language: String,
    /// Requests waiting for the engine beyond which new ones are refused.
    pub queue_limit: usize,
    /// libtorch threads on CPU; 0: all cores but one, which stays free for pacing calls.
    pub cpu_threads: usize,
    /// Requests speaking at once: their decode steps run as one batched GPT forward, and a
    /// key/value slot is preallocated for each (32 + max text + 1 + max audio tokens long).
    pub max_batch: usize,
    /// Requests whose chunks the vocoder renders in one forward; 0: measured at start, the
    /// batch up to `max_batch` cheapest per chunk (a batch holds back its most urgent chunk
    /// until the whole forward is done, so a larger one must save a tenth per chunk), and
    /// apart for first chunks (small windows batch better). N sets both.
    pub vocoder_batch: usize,
    pub temperature: f64,
    pub top_k: i64,
    pub top_p: f64,
    pub repetition_penalty: f64,
    pub length_penalty: f64,
    pub speed: f64,
    /// Tokens per streamed chunk, and for the first chunk (smaller: earlier first audio).
    pub stream_chunk_tokens: usize,
    pub first_chunk_tokens: usize,
    pub stream_mode: StreamModeSetting,
    /// pypinyin's pinyin tables (`tools/fetch_text_data`); missing: Chinese is read
    /// character by character, approximately.
    pub chinese_dictionary: PathBuf,
    pub gpt_dtype: GptDtype,
    /// unidic-lite's compiled MeCab dictionary (`tools/fetch_text_data`); without it Japanese
    /// romaji are approximate.
    pub japanese_dictionary: PathBuf,
    /// Target time from a request to its first audio: a new request's deadline in the scheduler.
    pub first_audio_ms: u64,
    /// How long a request may wait for admission (from when its listener waits for it) before
    /// it is refused as busy.
    pub admit_within_ms: u64,
    /// Share of the engine's measured capacity the admitted calls may use (0.1 to 1.0).
    pub max_load: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSocketConfig {
    pub listen: SocketAddr,
    /// A connection that has not sent its UUID within this time is closed.
    pub uuid_timeout_ms: u64,
    /// Once a message has started, the rest must arrive within this time.
    pub payload_timeout_ms: u64,
    /// Largest message payload accepted from a peer, in bytes.
    pub max_payload_bytes: usize,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgiConfig {
    pub listen: SocketAddr,
    /// `stream` (EXEC AudioSocket back to this daemon) or `file` (spool files + STREAM FILE).
    pub mode: AgiMode,
    /// host:port Asterisk must dial for `EXEC AudioSocket` in stream mode.
    pub audiosocket_address: String,
    /// Where file mode writes audio; must be readable by Asterisk.
    pub spool_dir: PathBuf,
    /// File mode format: `ulaw` (8 kHz µ-law) or `sln16` (16 kHz slin).
    pub file_format: SpoolFormat,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Longest wait for Asterisk's reply to a command (beyond the audio a command plays).
    pub reply_timeout_ms: u64,
}

/// How AGI speech reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgiMode {
    Stream,
    File,
}

/// The audio format of file mode's spool files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolFormat {
    Ulaw,
    Sln16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// HTTP control API; an empty string disables it.
    #[serde(deserialize_with = "optional_addr")]
    pub listen: Option<SocketAddr>,
    /// Connections served at once.
    pub max_connections: usize,
}

/// `""` is None; anything else must be a socket address.
fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("'{text}' is not host:port ({e})")))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Peak level speech is limited to, in dBFS (G.711 clips harshly near full scale).
    pub peak_dbfs: f64,
    /// Fade applied at the end of speech, in milliseconds.
    pub fade_out_ms: u32,
}

/// What a call with no queued speech hears when test calls are on: a greeting, then its DTMF
/// digits read back. Off by default: a real call must never hear it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestCallConfig {
    pub enabled: bool,
    /// Only calls whose UUID starts with this (lowercase hex) are test calls; empty: any.
    pub uuid_prefix: String,
    pub greeting: String,
    pub voice: String,
    pub language: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/xtts_v2"),
            device: DeviceSetting::Auto,
            speakers_dir: PathBuf::from("speakers"),
            default_voice: "default".into(),
            default_language: "en".into(),
            queue_limit: 64,
            cpu_threads: 0,
            max_batch: 8,
            vocoder_batch: 0,
            temperature: 0.75,
            top_k: 50,
            top_p: 0.85,
            repetition_penalty: 10.0,
            length_penalty: 1.0,
            speed: 1.0,
            stream_chunk_tokens: 20,
            first_chunk_tokens: 8,
            stream_mode: StreamModeSetting::Windowed,
            gpt_dtype: GptDtype::Float32,
            chinese_dictionary: PathBuf::from("models/text/pypinyin"),
            japanese_dictionary: PathBuf::from("models/text/unidic-lite"),
            first_audio_ms: 250,
            admit_within_ms: 2000,
            max_load: 0.85,
        }
    }
}

impl EngineConfig {
    /// The configured sampling, which every request starts from.
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            length_penalty: self.length_penalty,
            do_sample: true,
            seed: None,
        }
    }
}

impl Default for AudioSocketConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".parse().unwrap(),
            uuid_timeout_ms: 2000,
            payload_timeout_ms: 200,
            max_payload_bytes: 32_000,
            max_connections: 512,
        }
    }
}

impl Default for AgiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4573".parse().unwrap(),
            mode: AgiMode::Stream,
            audiosocket_address: "127.0.0.1:9092".into(),
            spool_dir: PathBuf::from("/var/spool/xttsd"),
            file_format: SpoolFormat::Ulaw,
            max_connections: 512,
            reply_timeout_ms: 10_000,
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:9093".parse().unwrap()),
            max_connections: 64,
        }
    }
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            peak_dbfs: -3.0,
            fade_out_ms: 10,
        }
    }
}

impl Default for TestCallConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            uuid_prefix: String::new(),
            greeting: "Hello, this is the x t t s test line. Press any keys and I will read them back.".into(),
            voice: String::new(),
            language: String::new(),
        }
    }
}

/// Voicebots: the per-call WebSocket on the control listener, and bots xttsd dials itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoicebotConfig {
    /// Serve `GET /v1/calls/{call_id}/ws` on the control listener.
    pub enabled: bool,
    /// Bearer token bots must present; required when the control listener is not loopback.
    pub token: String,
    /// DTMF digits that clear the bot's speech (barge-in) before the bot is told of them.
    pub barge_in_digits: String,
    /// Largest message a bot may send, in bytes.
    pub max_message_bytes: usize,
    /// Longest text of one `speak`, in characters.
    pub max_text_chars: usize,
    /// Text received and not yet synthesized, per call, beyond which `speak` is refused.
    pub max_buffered_chars: usize,
    /// From this much buffered text the bot is asked to pause (`backpressure`).
    pub pause_chars: usize,
    /// Caller audio frames queued for a slow bot before frames are dropped.
    pub audio_buffer_frames: usize,
    /// Dialling a bot gives up after this long.
    pub connect_timeout_ms: u64,
    /// A bot (from `bots`) that every AudioSocket call with nothing queued is dialled out to;
    /// empty: none.
    pub audiosocket_bot: String,
    /// Bots xttsd dials: `[voicebot.bots.NAME] url = "ws://host:port/path/{call_id}"`, token = "".
    pub bots: std::collections::BTreeMap<String, BotConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// `ws://` URL; `{call_id}` is replaced by the call's UUID.
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: String,
}

impl Default for VoicebotConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token: String::new(),
            barge_in_digits: String::new(),
            max_message_bytes: 65_536,
            max_text_chars: 4000,
            max_buffered_chars: 8000,
            pause_chars: 4000,
            audio_buffer_frames: 100,
            connect_timeout_ms: 2000,
            audiosocket_bot: String::new(),
            bots: Default::default(),
        }
    }
}

/// The prompt cache and the prompt files rendered into it at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptsConfig {
    /// Where rendered prompts are kept (Ogg Opus); empty string disables the cache.
    pub cache_dir: PathBuf,
    /// Size bound of the cache directory in MiB; least recently used prompts go first.
    pub cache_max_mb: u64,
    /// Seed given to prompts that are cached without one (prompt files, `cache=refresh`),
    /// so a menu sounds the same on every call.
    pub seed: u64,
    /// Prompt files (`NAME<TAB>TEXT[<TAB>key=value...]` lines) rendered into the cache at start.
    pub files: Vec<PathBuf>,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("cache/prompts"),
            cache_max_mb: 256,
            seed: 1,
            files: Vec::new(),
        }
    }
}

impl VoicebotConfig {
    fn check(&self, control_listen: Option<SocketAddr>) -> Result<()> {
        if let Some(addr) = control_listen {
            anyhow::ensure!(
                !self.enabled || addr.ip().is_loopback() || !self.token.is_empty(),
                "voicebot.token must be set when control.listen ({addr}) is not a loopback address"
            );
        }
        anyhow::ensure!(
            self.barge_in_digits
                .chars()
                .all(|d| matches!(d, '0'..='9' | '*' | '#' | 'A'..='D')),
            "voicebot.barge_in_digits may hold only 0-9, *, #, A-D, not '{}'",
            self.barge_in_digits
        );
        anyhow::ensure!(
            self.max_message_bytes >= 1024,
            "voicebot.max_message_bytes must be at least 1024"
        );
        anyhow::ensure!(self.max_text_chars > 0, "voicebot.max_text_chars must be at least 1");
        anyhow::ensure!(
            self.pause_chars > 0 && self.pause_chars <= self.max_buffered_chars,
            "voicebot.pause_chars must be between 1 and voicebot.max_buffered_chars"
        );
        anyhow::ensure!(
            self.audio_buffer_frames > 0,
            "voicebot.audio_buffer_frames must be at least 1"
        );
        for (name, bot) in &self.bots {
            anyhow::ensure!(
                bot.url.starts_with("ws://"),
                "voicebot.bots.{name}.url must be a ws:// URL, not '{}'",
                bot.url
            );
        }
        anyhow::ensure!(
            self.audiosocket_bot.is_empty() || self.bots.contains_key(&self.audiosocket_bot),
            "voicebot.audiosocket_bot '{}' is not one of voicebot.bots",
            self.audiosocket_bot
        );
        Ok(())
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("{}: invalid configuration", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner().message()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Every value that would make calls fail fails the start, naming its key. (The default
    /// voice and language need the model: `serve` checks them once it has loaded.)
    fn check(&self) -> Result<()> {
        let engine = &self.engine;
        anyhow::ensure!(
            engine.stream_chunk_tokens > 0,
            "engine.stream_chunk_tokens must be at least 1"
        );
        anyhow::ensure!(
            engine.first_chunk_tokens > 0,
            "engine.first_chunk_tokens must be at least 1"
        );
        if engine.stream_mode == StreamModeSetting::Windowed {
            let holdback = StreamOptions::windowed().holdback;
            anyhow::ensure!(
                engine.first_chunk_tokens > holdback,
                "engine.first_chunk_tokens must be above the streaming vocoder's hold-back of {holdback} tokens, got {}",
                engine.first_chunk_tokens
            );
        }
        anyhow::ensure!(engine.queue_limit > 0, "engine.queue_limit must be at least 1");
        anyhow::ensure!(engine.max_batch > 0, "engine.max_batch must be at least 1");
        anyhow::ensure!(
            (0.1..=1.0).contains(&engine.max_load),
            "engine.max_load must be between 0.1 and 1.0"
        );
        // The configured values pass the same checks as a request's own.
        anyhow::ensure!(
            SPEED_RANGE.contains(&engine.speed),
            "engine.speed must be between {} and {}, got {}",
            SPEED_RANGE.start(),
            SPEED_RANGE.end(),
            engine.speed
        );
        engine.sampling().validate().context("engine")?;
        anyhow::ensure!(
            (LARGEST_FRAME_BYTES..=65_535).contains(&self.audiosocket.max_payload_bytes),
            "audiosocket.max_payload_bytes must be between {LARGEST_FRAME_BYTES} (a 20 ms frame at 48 kHz) and 65535, got {}",
            self.audiosocket.max_payload_bytes
        );
        anyhow::ensure!(
            (LOWEST_PEAK_DBFS..=0.0).contains(&self.audio.peak_dbfs),
            "audio.peak_dbfs must be between {LOWEST_PEAK_DBFS} and 0, got {}",
            self.audio.peak_dbfs
        );
        anyhow::ensure!(
            self.test_call
                .uuid_prefix
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-'),
            "test_call.uuid_prefix must be hex digits (the start of a UUID), got '{}'",
            self.test_call.uuid_prefix
        );
        for (key, n) in [
            ("audiosocket.max_connections", self.audiosocket.max_connections),
            ("agi.max_connections", self.agi.max_connections),
            ("control.max_connections", self.control.max_connections),
            ("limits.max_text_chars", self.limits.max_text_chars),
            ("limits.max_jobs_per_call", self.limits.max_jobs_per_call),
            ("limits.max_pending_jobs", self.limits.max_pending_jobs),
        ] {
            anyhow::ensure!(n > 0, "{key} must be at least 1");
        }
        anyhow::ensure!(self.agi.reply_timeout_ms > 0, "agi.reply_timeout_ms must be at least 1");
        self.voicebot.check(self.control.listen)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.audiosocket.listen.port(), 9092);
        assert_eq!(cfg.agi.listen.port(), 4573);
        assert_eq!(cfg.engine.repetition_penalty, 10.0);
    }

    /// The shipped config.toml documents every key with its default value.
    #[test]
    fn shipped_config_states_the_defaults() {
        let shipped = Config::from_file(Path::new("config.toml")).unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[agi]\nlisten = \"127.0.0.1:1\"\nmdoe = \"file\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("mdoe"), "{err:#}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::from_toml("[agi]\nmode = \"tape\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("agi.mode"), "{err:#}");
        let err = Config::from_toml("[engine]\nspeed = 3.0\n").unwrap_err();
        assert!(format!("{err:#}").contains("speed must be between"), "{err:#}");
        let err = Config::from_toml("[engine]\ntop_p = 0.0\n").unwrap_err();
        assert!(format!("{err:#}").contains("top_p"), "{err:#}");
    }

    /// Values that passed the start and then failed every call.
    #[test]
    fn values_that_would_fail_calls_fail_the_start() {
        for (toml, key) in [
            ("[engine]\nfirst_chunk_tokens = 5\n", "engine.first_chunk_tokens"),
            ("[engine]\nfirst_chunk_tokens = 3\n", "engine.first_chunk_tokens"),
            (
                "[audiosocket]\nmax_payload_bytes = 320\n",
                "audiosocket.max_payload_bytes",
            ),
            ("[audio]\npeak_dbfs = -80.0\n", "audio.peak_dbfs"),
            ("[engine]\ngpt_dtype = \"float64\"\n", "engine.gpt_dtype"),
            ("[control]\nlisten = \"localhost\"\n", "listen"),
            ("[daemon]\nallow_from = [\"10.0.0.300/8\"]\n", "allow_from"),
            ("[agi]\nfile_format = \"mp3\"\n", "file_format"),
            ("[limits]\nmax_text_chars = 0\n", "limits.max_text_chars"),
        ] {
            let err = Config::from_toml(toml).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{toml}: {err:#}");
        }
        // The reference stream mode has no hold-back: a small first chunk is fine there.
        Config::from_toml("[engine]\nstream_mode = \"reference\"\nfirst_chunk_tokens = 3\n").unwrap();
    }

    #[test]
    fn typed_values_parse() {
        let cfg = Config::from_toml(
            "[control]\nlisten = \"\"\n[agi]\nmode = \"file\"\nfile_format = \"sln16\"\n\
             [daemon]\nallow_from = [\"10.0.0.0/8\", \"::1/128\"]\nlog_format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(cfg.control.listen, None);
        assert_eq!((cfg.agi.mode, cfg.agi.file_format), (AgiMode::File, SpoolFormat::Sln16));
        assert_eq!(cfg.daemon.allow_from.len(), 2);
        assert_eq!(cfg.daemon.log_format, LogFormat::Json);
    }

    #[test]
    fn test_calls_are_off_unless_asked_for() {
        assert!(!Config::default().test_call.enabled);
    }

    #[test]
    fn voicebot_off_loopback_needs_a_token() {
        let err = Config::from_toml("[control]\nlisten = \"0.0.0.0:9093\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("voicebot.token"), "{err:#}");
        Config::from_toml("[control]\nlisten = \"0.0.0.0:9093\"\n[voicebot]\ntoken = \"s3cret\"\n").unwrap();
        Config::from_toml("[control]\nlisten = \"0.0.0.0:9093\"\n[voicebot]\nenabled = false\n").unwrap();
        Config::from_toml("[control]\nlisten = \"[::1]:9093\"\n").unwrap();
    }

    #[test]
    fn voicebot_bots_are_checked() {
        let cfg = Config::from_toml(
            "[voicebot]\naudiosocket_bot = \"sales\"\n[voicebot.bots.sales]\nurl = \"ws://127.0.0.1:8080/call/{call_id}\"\n",
        )
        .unwrap();
        assert_eq!(cfg.voicebot.bots["sales"].url, "ws://127.0.0.1:8080/call/{call_id}");
        let err = Config::from_toml("[voicebot]\naudiosocket_bot = \"nobody\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("voicebot.audiosocket_bot"), "{err:#}");
        let err = Config::from_toml("[voicebot.bots.x]\nurl = \"http://a\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("voicebot.bots.x.url"), "{err:#}");
    }
}

/// When the built-in voice speaks instead of XTTS (`[fallback]` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackPolicy {
    /// The XTTS model is not installed (or the default voice has no clip).
    pub when_absent: bool,
    /// XTTS failed to load or its worker has stopped.
    pub when_down: bool,
    /// XTTS refuses for capacity: the caller hears the built-in voice instead of a busy result.
    pub when_busy: bool,
}

impl Default for FallbackPolicy {
    fn default() -> Self {
        Self {
            when_absent: true,
            when_down: true,
            when_busy: true,
        }
    }
}

/// `[builtin]` in config.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinVoiceConfig {
    /// The eSpeak NG program (installed by tools/setup from the distribution's `espeak-ng`).
    pub program: PathBuf,
    /// Speaking rate at speed 1.0, in words per minute.
    pub words_per_minute: u32,
    /// An eSpeak NG voice variant appended to every language (`f3`, `m2`, ...); empty: none.
    pub variant: String,
    /// Sentences synthesized at once (each is one short-lived process).
    pub concurrency: usize,
}

impl Default for BuiltinVoiceConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from("espeak-ng"),
            // eSpeak NG's own default rate is 175; a little slower reads better on a phone line.
            words_per_minute: 165,
            variant: String::new(),
            concurrency: 4,
        }
    }
}
