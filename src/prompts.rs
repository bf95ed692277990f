//! Prompt files: the fixed phrases of a dialplan, rendered ahead of time.
//!
//! One prompt per line: `NAME<TAB>TEXT`, then optional `<TAB>key=value` fields: `voice=`,
//! `lang=`, and any request option (`seed=`, `speed=`, `temperature=`, ...). `#` starts a
//! comment line; blank lines are skipped. TEXT may be SSML (`<speak>...`). A prompt without a
//! seed gets `[prompts] seed`, so it sounds the same every time it is rendered.
//!
//! The daemon renders the files `[prompts] files` names into the prompt cache at start, in the
//! background, one prompt at a time and marked as not urgent, so live calls come first.
//! `xttsd render PROMPTS --out DIR --format ulaw|sln16|wav` writes them as an Asterisk sound
//! set (`DIR/NAME.ulaw`, ...) for sites that prefer `Playback()`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::sync::mpsc;

use crate::audio::{g711, wav};
use crate::config::{Config, EngineConfig};
use crate::engine::{Engine, EngineError, SpeechOptions, SpeechRequest};
use crate::prompt_cache::{is_deterministic, CacheMode, PromptCache};
use crate::speech_api::{render_pieces, ssml_pieces, Piece, RenderError};

/// How far ahead of its playback a pre-rendered prompt says it is asked: the engine gives
/// such requests none of the steps reserved for callers waiting for their first audio.
const NOT_URGENT: Duration = Duration::from_secs(3600);
/// Wait before asking again when the engine is busy with calls.
const BUSY_BACKOFF: Duration = Duration::from_secs(2);

/// One line of a prompt file.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub name: String,
    pub request: SpeechRequest,
}

/// Parses a prompt file's text; `origin` names it in errors (`FILE:LINE: ...`).
pub fn parse(text: &str, origin: &str, engine: &EngineConfig, fixed_seed: u64) -> Result<Vec<Prompt>> {
    let mut prompts: Vec<Prompt> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{origin}:{}", i + 1);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let name = fields.next().unwrap_or("").trim();
        check_name(name).with_context(at)?;
        let text = fields.next().map(str::trim).unwrap_or("");
        ensure!(
            !text.is_empty(),
            "{}: prompt '{name}' has no text (NAME<TAB>TEXT)",
            at()
        );
        let mut request = SpeechRequest {
            text: text.to_string(),
            voice: engine.default_voice.clone(),
            lang: engine.default_language.clone(),
            options: SpeechOptions::default(),
        };
        for field in fields.filter(|f| !f.trim().is_empty()) {
            let (key, value) = field
                .split_once('=')
                .with_context(|| format!("{}: '{field}' is not key=value", at()))?;
            match key.trim() {
                "voice" => request.voice = value.trim().to_string(),
                "lang" => request.lang = value.trim().to_string(),
                option => request.options.set(option, value).with_context(at)?,
            }
        }
        if !is_deterministic(&request, &engine.sampling()) {
            request.options.seed = Some(fixed_seed);
        }
        request.options.plays_in = NOT_URGENT;
        ensure!(
            !prompts.iter().any(|p| p.name == name),
            "{}: prompt '{name}' is named twice",
            at()
        );
        prompts.push(Prompt {
            name: name.to_string(),
            request,
        });
    }
    Ok(prompts)
}

/// Prompt names become file names: letters, digits, `_`, `-`, `.` and `/` (a sub-folder),
/// never absolute or leaving the output folder.
fn check_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "a prompt line starts with an empty name");
    ensure!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
            && !name.starts_with('/')
            && !name
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == ".."),
        "prompt name '{name}' must be letters, digits, _ - . and / (sub-folders), not absolute or with ..",
    );
    Ok(())
}

/// Reads and parses a prompt file.
pub fn read(path: &Path, cfg: &Config) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read prompt file", path.display()))?;
    parse(&text, &path.display().to_string(), &cfg.engine, cfg.prompts.seed)
}

/// The pieces a prompt is spoken as (several for SSML).
pub fn pieces(prompt: &Prompt, cfg: &Config) -> Result<Vec<Piece>> {
    if prompt.request.text.starts_with("<speak") {
        ssml_pieces(&prompt.request, cfg.engine.speed).with_context(|| format!("prompt '{}'", prompt.name))
    } else {
        Ok(vec![Piece::Speak(prompt.request.clone())])
    }
}

/// Renders one prompt at `rate`, waiting while the engine is busy with calls.
pub async fn render(
    engine: &Engine,
    cache: Option<&Arc<PromptCache>>,
    pieces: &[Piece],
    rate: u32,
    cfg: &Config,
) -> Result<Vec<i16>> {
    loop {
        let (tx, mut rx) = mpsc::channel(64);
        let rendering = render_pieces(engine, cache, pieces.to_vec(), rate, &cfg.audio, CacheMode::Auto, tx);
        let collecting = async {
            let mut pcm = Vec::new();
            while let Some(part) = rx.recv().await {
                pcm.extend(part);
            }
            pcm
        };
        let (result, pcm) = tokio::join!(rendering, collecting);
        match result {
            Ok(()) => return Ok(pcm),
            Err(RenderError::Refused(EngineError::Busy(_))) => tokio::time::sleep(BUSY_BACKOFF).await,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Renders every prompt of the configured files into the cache, one at a time; problems are
/// logged. Returns the prompts rendered.
pub async fn prewarm(engine: Engine, cache: Arc<PromptCache>, cfg: Config) -> usize {
    let mut done = 0;
    for path in &cfg.prompts.files {
        let prompts = match read(path, &cfg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("prompts not rendered: {e:#}");
                continue;
            }
        };
        for prompt in prompts {
            let rendered = async {
                let pieces = pieces(&prompt, &cfg)?;
                render(&engine, Some(&cache), &pieces, engine.sample_rate(), &cfg).await
            };
            match rendered.await {
                Ok(_) => done += 1,
                Err(e) => tracing::warn!(prompt = %prompt.name, file = %path.display(), "prompt not rendered: {e:#}"),
            }
        }
    }
    tracing::info!(prompts = done, "prompt files rendered into the cache");
    done
}

/// Starts [`prewarm`] in the background when there are prompt files and a cache.
pub fn start_prewarm(engine: &Engine, cfg: &Config) -> Option<tokio::task::JoinHandle<usize>> {
    if cfg.prompts.files.is_empty() {
        return None;
    }
    let Some(cache) = PromptCache::shared(cfg) else {
        tracing::warn!("[prompts] files are not rendered ahead: the prompt cache is disabled");
        return None;
    };
    Some(tokio::spawn(prewarm(engine.clone(), cache, cfg.clone())))
}

/// Asterisk sound-file formats `xttsd render` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundFormat {
    /// `.ulaw`: 8 kHz G.711 µ-law.
    Ulaw,
    /// `.sln16`: 16 kHz 16-bit little-endian.
    Sln16,
    /// `.wav`: 8 kHz 16-bit mono, as Asterisk's format_wav reads it.
    Wav,
}

impl SoundFormat {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "ulaw" => Self::Ulaw,
            "sln16" => Self::Sln16,
            "wav" => Self::Wav,
            other => bail!("--format must be ulaw, sln16 or wav, not '{other}'"),
        })
    }

    pub fn rate(self) -> u32 {
        match self {
            Self::Sln16 => 16000,
            Self::Ulaw | Self::Wav => 8000,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Ulaw => "ulaw",
            Self::Sln16 => "sln16",
            Self::Wav => "wav",
        }
    }

    pub fn encode(self, pcm: &[i16]) -> Result<Vec<u8>> {
        Ok(match self {
            Self::Ulaw => g711::ulaw_encode_all(pcm),
            Self::Sln16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
            Self::Wav => wav::wav_bytes(self.rate(), pcm)?,
        })
    }
}

/// Renders every prompt of `prompts` into `out/NAME.EXT`, each file appearing only once
/// complete. Returns the files written.
pub async fn render_set(
    engine: &Engine,
    cache: Option<&Arc<PromptCache>>,
    prompts: &[Prompt],
    out: &Path,
    format: SoundFormat,
    cfg: &Config,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for prompt in prompts {
        let pieces = pieces(prompt, cfg)?;
        for piece in &pieces {
            if let Piece::Speak(req) = piece {
                engine
                    .validate(req)
                    .with_context(|| format!("prompt '{}'", prompt.name))?;
            }
        }
        let pcm = render(engine, cache, &pieces, format.rate(), cfg)
            .await
            .with_context(|| format!("prompt '{}'", prompt.name))?;
        let path = out.join(format!("{}.{}", prompt.name, format.extension()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        }
        let tmp = path.with_extension(format!("{}.part", format.extension()));
        std::fs::write(&tmp, format.encode(&pcm)?).with_context(|| format!("{}: cannot write", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `xttsd render`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A prompt file: NAME<TAB>TEXT[<TAB>key=value...] per line.
    pub prompts: PathBuf,
    /// Folder the sound files are written to (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// ulaw (8 kHz G.711), sln16 (16 kHz linear) or wav (8 kHz 16-bit).
    #[arg(long, default_value = "ulaw")]
    pub format: String,
    /// The daemon's configuration (model, voices, [audio], [prompts] cache).
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let format = SoundFormat::parse(&args.format)?;
    let cfg = if args.config.exists() {
        Config::from_file(&args.config)?
    } else {
        Config::default()
    };
    let prompts = read(&args.prompts, &cfg)?;
    ensure!(!prompts.is_empty(), "{}: no prompts", args.prompts.display());
    let engine = start_engine(&cfg)?;
    let rt = tokio::runtime::Runtime::new()?;
    let written = rt.block_on(async {
        let cache = PromptCache::shared(&cfg);
        render_set(&engine, cache.as_ref(), &prompts, &args.out, format, &cfg).await
    })?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The engines as `xttsd serve` starts them (XTTS, and the built-in voice as `[fallback]` says).
fn start_engine(cfg: &Config) -> Result<Engine> {
    crate::startup::start_engines(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SpeechBackend;
    use std::sync::Mutex;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn prompt_lines_parse_with_fields_and_comments() {
        let text = "# menu\n\nwelcome\tWelcome to the shop.\n\
                    menu/sales\tPress 1 for sales.\tvoice=anna\tlang=de\tspeed=0.9\tseed=5\r\n\
                    greedy\tHi\tgreedy=1\n";
        let p = parse(text, "menu.txt", &cfg().engine, 7).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "welcome");
        assert_eq!(p[0].request.text, "Welcome to the shop.");
        assert_eq!(
            (p[0].request.voice.as_str(), p[0].request.lang.as_str()),
            ("default", "en")
        );
        assert_eq!(
            p[0].request.options.seed,
            Some(7),
            "an unseeded prompt gets the fixed seed"
        );
        assert_eq!(p[1].name, "menu/sales");
        assert_eq!(
            (p[1].request.voice.as_str(), p[1].request.lang.as_str()),
            ("anna", "de")
        );
        assert_eq!(
            (p[1].request.options.speed, p[1].request.options.seed),
            (Some(0.9), Some(5))
        );
        assert_eq!(p[2].request.options.seed, None, "greedy is deterministic already");
        assert!(p.iter().all(|p| p.request.options.plays_in == NOT_URGENT));
    }

    #[test]
    fn bad_prompt_lines_name_file_and_line() {
        let e = |text: &str| format!("{:#}", parse(text, "menu.txt", &cfg().engine, 1).unwrap_err());
        assert!(
            e("ok\tHi\nbad\n").starts_with("menu.txt:2: prompt 'bad' has no text"),
            "{}",
            e("ok\tHi\nbad\n")
        );
        assert!(e("a\tHi\tspeed=fast\n").contains("menu.txt:1"));
        assert!(e("a\tHi\tpitch=2\n").contains("unknown option 'pitch'"));
        assert!(e("a\tHi\tvoice\n").contains("'voice' is not key=value"));
        assert!(e("../x\tHi\n").contains("prompt name '../x'"));
        assert!(e("/etc/x\tHi\n").contains("prompt name"));
        assert!(e("a\tHi\na\tHo\n").contains("menu.txt:2: prompt 'a' is named twice"));
    }

    struct Tone(Arc<Mutex<Vec<SpeechRequest>>>);

    impl SpeechBackend for Tone {
        fn sample_rate(&self) -> u32 {
            24000
        }
        fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
            self.0.lock().unwrap().push(req.clone());
            emit((0..4800).map(|i| 0.5 * (i as f32 * 0.2).sin()).collect());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_sound_set_is_written_and_prewarming_fills_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let engine = Engine::start(Tone(seen.clone()), |_: &SpeechRequest| Ok(()), 4);
        let mut cfg = cfg();
        cfg.prompts.cache_dir = dir.path().join("cache");
        let file = dir.path().join("menu.txt");
        std::fs::write(
            &file,
            "welcome\tWelcome.\nmenu/one\t<speak>Press <break time=\"100ms\"/> one</speak>\n",
        )
        .unwrap();
        cfg.prompts.files = vec![file.clone()];
        let cache = PromptCache::shared(&cfg).unwrap();
        assert_eq!(start_prewarm(&engine, &cfg).unwrap().await.unwrap(), 2);
        assert_eq!(seen.lock().unwrap().len(), 3, "welcome, and the two SSML segments");
        // Stored once each synthesis ends (in the background).
        for _ in 0..200 {
            if cache.stats().stored == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.stats().stored, 3);

        let prompts = read(&file, &cfg).unwrap();
        let out = dir.path().join("sounds");
        for format in [SoundFormat::Ulaw, SoundFormat::Sln16, SoundFormat::Wav] {
            let written = render_set(&engine, Some(&cache), &prompts, &out, format, &cfg)
                .await
                .unwrap();
            assert_eq!(
                written,
                vec![
                    out.join(format!("welcome.{}", format.extension())),
                    out.join(format!("menu/one.{}", format.extension()))
                ]
            );
            let bytes = std::fs::read(&written[0]).unwrap();
            let per_sample = if format == SoundFormat::Ulaw { 1 } else { 2 };
            let header = if format == SoundFormat::Wav { 44 } else { 0 };
            // 200 ms of speech, padded to a whole 20 ms frame.
            assert_eq!((bytes.len() - header) / per_sample, format.rate() as usize / 5);
            let two_segments_and_a_pause = std::fs::read(&written[1]).unwrap().len() - header;
            assert_eq!(two_segments_and_a_pause / per_sample, format.rate() as usize / 2);
        }
        assert_eq!(seen.lock().unwrap().len(), 3, "the sound set comes from the cache");
        assert!(std::fs::read_dir(out.join("menu")).unwrap().all(|e| !e
            .unwrap()
            .path()
            .to_string_lossy()
            .ends_with(".part")));
    }
}
