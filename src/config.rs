//! The daemon's `config.toml`. Every key has a default; an unknown key is an error that
//! names it, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::xtts::sampling::SamplingParams;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub engine: EngineConfig,
    pub audiosocket: AudioSocketConfig,
    pub agi: AgiConfig,
    pub control: ControlConfig,
    pub audio: AudioConfig,
    pub test_call: TestCallConfig,
    pub prompts: PromptsConfig,
}

/// The model and how it samples. Sampling defaults follow the reference's
/// `inference_stream()` (what streaming servers call), not config.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Directory holding config.json, model.pth, vocab.json (and speakers_xtts.pth).
    pub model_dir: PathBuf,
    /// `auto` (CUDA when available), `cpu` or `cuda`.
    pub device: String,
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
    pub temperature: f64,
    pub top_k: i64,
    pub top_p: f64,
    pub repetition_penalty: f64,
    pub length_penalty: f64,
    pub speed: f64,
    /// Tokens per streamed chunk, and for the first chunk (smaller: earlier first audio).
    pub stream_chunk_tokens: usize,
    pub first_chunk_tokens: usize,
    /// `windowed` (constant vocoder cost per chunk) or `reference` (bit-compatible with
    /// the reference's inference_stream, cost grows with the utterance).
    pub stream_mode: String,
    /// pypinyin's pinyin tables (`tools/fetch_text_data`); missing: Chinese is read
    /// character by character, approximately.
    pub chinese_dictionary: PathBuf,
    /// The GPT's float type: `float32` (what parity is proven in), `bfloat16` or `float16`.
    pub gpt_dtype: String,
    /// unidic-lite's compiled MeCab dictionary (`tools/fetch_text_data`); without it Japanese
    /// romaji are approximate.
    pub japanese_dictionary: PathBuf,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgiConfig {
    pub listen: SocketAddr,
    /// `stream` (EXEC AudioSocket back to this daemon) or `file` (spool files + STREAM FILE).
    pub mode: String,
    /// host:port Asterisk must dial for `EXEC AudioSocket` in stream mode.
    pub audiosocket_address: String,
    /// Where file mode writes audio; must be readable by Asterisk.
    pub spool_dir: PathBuf,
    /// File mode format: `ulaw` (8 kHz µ-law) or `sln16` (16 kHz slin).
    pub file_format: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// HTTP control API; empty string disables it.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Peak level speech is limited to, in dBFS (G.711 clips harshly near full scale).
    pub peak_dbfs: f64,
    /// Fade applied at the end of speech, in milliseconds.
    pub fade_out_ms: u32,
}

/// What a call with no queued speech hears: a greeting, then its DTMF digits read back.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestCallConfig {
    pub enabled: bool,
    pub greeting: String,
    pub voice: String,
    pub language: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/xtts_v2"),
            device: "auto".into(),
            speakers_dir: PathBuf::from("speakers"),
            default_voice: "default".into(),
            default_language: "en".into(),
            queue_limit: 64,
            cpu_threads: 0,
            max_batch: 8,
            temperature: 0.75,
            top_k: 50,
            top_p: 0.85,
            repetition_penalty: 10.0,
            length_penalty: 1.0,
            speed: 1.0,
            stream_chunk_tokens: 20,
            first_chunk_tokens: 8,
            stream_mode: "windowed".into(),
            gpt_dtype: "float32".into(),
            chinese_dictionary: PathBuf::from("models/text/pypinyin"),
            japanese_dictionary: PathBuf::from("models/text/unidic-lite"),
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
        }
    }
}

impl Default for AgiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4573".parse().unwrap(),
            mode: "stream".into(),
            audiosocket_address: "127.0.0.1:9092".into(),
            spool_dir: PathBuf::from("/var/spool/xttsd"),
            file_format: "ulaw".into(),
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9093".into(),
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
            enabled: true,
            greeting: "Hello, this is the x t t s test line. Press any keys and I will read them back.".into(),
            voice: String::new(),
            language: String::new(),
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

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("{}: invalid configuration", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text)?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        anyhow::ensure!(
            matches!(self.engine.device.as_str(), "auto" | "cpu" | "cuda"),
            "engine.device must be auto, cpu or cuda, not '{}'",
            self.engine.device
        );
        anyhow::ensure!(
            matches!(self.engine.stream_mode.as_str(), "windowed" | "reference"),
            "engine.stream_mode must be windowed or reference, not '{}'",
            self.engine.stream_mode
        );
        anyhow::ensure!(
            matches!(self.agi.mode.as_str(), "stream" | "file"),
            "agi.mode must be stream or file, not '{}'",
            self.agi.mode
        );
        anyhow::ensure!(
            matches!(self.agi.file_format.as_str(), "ulaw" | "sln16"),
            "agi.file_format must be ulaw or sln16, not '{}'",
            self.agi.file_format
        );
        anyhow::ensure!(
            self.engine.stream_chunk_tokens > 0,
            "engine.stream_chunk_tokens must be at least 1"
        );
        anyhow::ensure!(
            self.engine.first_chunk_tokens > 0,
            "engine.first_chunk_tokens must be at least 1"
        );
        anyhow::ensure!(self.engine.queue_limit > 0, "engine.queue_limit must be at least 1");
        anyhow::ensure!(self.engine.max_batch > 0, "engine.max_batch must be at least 1");
        crate::synth::parse_dtype(&self.engine.gpt_dtype).context("engine.gpt_dtype")?;
        // The configured values pass the same checks as a request's own.
        let speed = crate::engine::SpeechOptions {
            speed: Some(self.engine.speed),
            ..Default::default()
        };
        speed.validate(&self.engine.sampling()).context("engine")?;
        anyhow::ensure!(
            (1..=65_535).contains(&self.audiosocket.max_payload_bytes),
            "audiosocket.max_payload_bytes must be between 1 and 65535"
        );
        anyhow::ensure!(self.audio.peak_dbfs <= 0.0, "audio.peak_dbfs must be at most 0");
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
}
