//! `xttsd check`: everything the daemon needs, checked before it is started, one line per
//! finding. Errors stop a start or fail calls; warnings are degraded service (the built-in
//! voice speaking for an absent model, approximate Chinese). Exits non-zero on any error.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::builtin_voice::BuiltinVoice;
use crate::config::{AgiMode, Config, DeviceSetting};

/// The released XTTS v2 files the daemon cannot run without.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.pth", "vocab.json"];

/// Shortest clip that clones a voice at all, and the length the model is made for.
const MIN_CLIP_SECS: f64 = 3.0;
const GOOD_CLIP_SECS: f64 = 6.0;
/// Below this RMS level a clip is silence or a broken recording.
const MIN_CLIP_RMS_DBFS: f64 = -45.0;
/// Below this rate a clip has lost the voice's upper band (the model hears it at 22.05 kHz).
const MIN_CLIP_RATE: u32 = 16_000;

/// The required model files missing from `dir`.
pub fn missing_model_files(dir: &Path) -> Vec<&'static str> {
    MODEL_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect()
}

/// How to get the model into `dir`.
pub fn download_hint(dir: &Path) -> String {
    format!(
        "Download the released XTTS v2 files (1.9 GB, Coqui Public Model License: non-commercial) with: \
         mkdir -p {dir} && for f in config.json model.pth vocab.json speakers_xtts.pth; do \
         curl -L -o {dir}/$f https://huggingface.co/coqui/XTTS-v2/resolve/main/$f; done",
        dir = dir.display()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warning,
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub level: Level,
    /// What it is about: a config key or a file.
    pub subject: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "{level}: {}: {}", self.subject, self.message)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, level: Level, subject: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding {
            level,
            subject: subject.into(),
            message: message.into(),
        });
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Error)
    }

    /// Whether anything with `subject` was found at `level`.
    pub fn has(&self, level: Level, subject: &str) -> bool {
        self.findings.iter().any(|f| f.level == level && f.subject == subject)
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's configuration file.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let report = check(&args.config);
    for finding in &report.findings {
        println!("{finding}");
    }
    let errors = report.errors().count();
    anyhow::ensure!(errors == 0, "{errors} problem(s) found");
    Ok(())
}

/// Checks the configuration file and everything it points at.
pub fn check(config_path: &Path) -> Report {
    let mut report = Report::default();
    let config = match Config::from_file(config_path) {
        Ok(config) => config,
        Err(e) => {
            report.add(Level::Error, config_path.display().to_string(), format!("{e:#}"));
            return report;
        }
    };
    report.add(Level::Ok, config_path.display().to_string(), "configuration is valid");
    let builtin_ok = check_builtin_voice(&config, &mut report);
    check_model(&config, builtin_ok, &mut report);
    check_voices(&config, builtin_ok, &mut report);
    check_language_data(&config, &mut report);
    check_spool_dir(&config, &mut report);
    check_ports(&config, &mut report);
    check_device(&config, &mut report);
    report
}

fn check_builtin_voice(config: &Config, report: &mut Report) -> bool {
    let policy = config.fallback;
    let wanted = policy.when_absent || policy.when_down || policy.when_busy;
    match BuiltinVoice::new(&config.builtin) {
        Ok(_) => {
            report.add(Level::Ok, "builtin.program", "the built-in voice speaks");
            true
        }
        Err(e) => {
            let level = if wanted { Level::Error } else { Level::Warning };
            report.add(level, "builtin.program", format!("{e:#}"));
            false
        }
    }
}

fn check_model(config: &Config, builtin_ok: bool, report: &mut Report) {
    let dir = &config.engine.model_dir;
    let missing = missing_model_files(dir);
    if missing.len() == MODEL_FILES.len() {
        let level = if builtin_ok && config.fallback.when_absent {
            Level::Warning
        } else {
            Level::Error
        };
        report.add(
            level,
            "engine.model_dir",
            format!(
                "no XTTS model in {} (the built-in voice {}). {}",
                dir.display(),
                if level == Level::Warning {
                    "answers calls until then"
                } else {
                    "cannot stand in"
                },
                download_hint(dir)
            ),
        );
        return;
    }
    for file in &missing {
        report.add(
            Level::Error,
            dir.join(file).display().to_string(),
            format!("missing. {}", download_hint(dir)),
        );
    }
    let config_json = dir.join("config.json");
    if config_json.is_file() {
        if let Err(e) = crate::xtts::config::XttsConfig::from_file(&config_json) {
            report.add(Level::Error, config_json.display().to_string(), format!("{e:#}"));
        }
    }
    if missing.is_empty() {
        report.add(
            Level::Ok,
            "engine.model_dir",
            format!("{} holds the XTTS model files", dir.display()),
        );
    }
}

fn check_voices(config: &Config, builtin_ok: bool, report: &mut Report) {
    let dir = &config.engine.speakers_dir;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            report.add(Level::Error, "engine.speakers_dir", format!("{}: {e}", dir.display()));
            return;
        }
    };
    let mut clips: Vec<PathBuf> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Ok(inside) = std::fs::read_dir(&path) {
                clips.extend(inside.flatten().map(|e| e.path()).filter(|p| is_wav(p)));
            }
        } else if is_wav(&path) {
            clips.push(path);
        }
    }
    clips.sort();
    for clip in &clips {
        check_clip(clip, report);
    }
    let voice = &config.engine.default_voice;
    let has_default = dir.join(format!("{voice}.wav")).is_file() || dir.join(voice).is_dir();
    let studio = config.engine.model_dir.join("speakers_xtts.pth").is_file();
    if !has_default && !studio {
        let level = if builtin_ok && config.fallback.when_absent {
            Level::Warning
        } else {
            Level::Error
        };
        report.add(
            level,
            "engine.default_voice",
            format!(
                "'{voice}' has no clip: record ~6 s of one clean speaker as {}{}",
                dir.join(format!("{voice}.wav")).display(),
                if level == Level::Warning {
                    "; the built-in voice speaks for it until then"
                } else {
                    ""
                }
            ),
        );
    }
}

fn is_wav(path: &Path) -> bool {
    path.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav"))
}

/// A voice clip's rate, length and level.
fn check_clip(path: &Path, report: &mut Report) {
    let subject = path.display().to_string();
    let reader = match hound::WavReader::open(path) {
        Ok(reader) => reader,
        Err(e) => {
            report.add(Level::Error, subject, format!("not a readable WAV file: {e}"));
            return;
        }
    };
    let spec = reader.spec();
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f64;
            reader
                .into_samples::<i32>()
                .filter_map(|s| s.ok())
                .map(|s| s as f64 / scale)
                .collect()
        }
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .filter_map(|s| s.ok())
            .map(f64::from)
            .collect(),
    };
    let channels = spec.channels.max(1) as usize;
    let secs = samples.len() as f64 / channels as f64 / spec.sample_rate.max(1) as f64;
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    let rms_dbfs = 20.0 * rms.max(1e-10).log10();
    let summary = format!(
        "{secs:.1} s, {} Hz, {channels} channel(s), RMS {rms_dbfs:.1} dBFS",
        spec.sample_rate
    );
    if secs < MIN_CLIP_SECS {
        report.add(
            Level::Error,
            subject,
            format!(
                "{summary}: too short to clone a voice (at least {MIN_CLIP_SECS} s, best {GOOD_CLIP_SECS} s or more)"
            ),
        );
    } else if rms_dbfs < MIN_CLIP_RMS_DBFS {
        report.add(
            Level::Error,
            subject,
            format!("{summary}: silent or nearly so (below {MIN_CLIP_RMS_DBFS} dBFS)"),
        );
    } else if spec.sample_rate < MIN_CLIP_RATE {
        report.add(
            Level::Warning,
            subject,
            format!("{summary}: below {MIN_CLIP_RATE} Hz the voice loses its upper band; record at 22.05 kHz or more"),
        );
    } else if secs < GOOD_CLIP_SECS {
        report.add(
            Level::Warning,
            subject,
            format!("{summary}: short; {GOOD_CLIP_SECS} s or more clones better"),
        );
    } else {
        report.add(Level::Ok, subject, summary);
    }
}

fn check_language_data(config: &Config, report: &mut Report) {
    let sets = [
        (
            "engine.chinese_dictionary",
            &config.engine.chinese_dictionary,
            &["pinyin_dict.json", "phrases_dict.json"][..],
            "Chinese",
        ),
        (
            "engine.japanese_dictionary",
            &config.engine.japanese_dictionary,
            &["sys.dic", "matrix.bin", "char.bin", "unk.dic"][..],
            "Japanese",
        ),
    ];
    for (key, dir, files, language) in sets {
        if !dir.exists() {
            report.add(
                Level::Warning,
                key,
                format!(
                    "{} is missing: {language} is read approximately (tools/fetch_text_data fetches it)",
                    dir.display()
                ),
            );
            continue;
        }
        let missing: Vec<&str> = files.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
        if missing.is_empty() {
            report.add(Level::Ok, key, format!("{} present", dir.display()));
        } else {
            report.add(
                Level::Error,
                key,
                format!(
                    "{} lacks {} (re-run tools/fetch_text_data)",
                    dir.display(),
                    missing.join(", ")
                ),
            );
        }
    }
}

fn check_spool_dir(config: &Config, report: &mut Report) {
    let dir = &config.agi.spool_dir;
    // Stream mode only needs it when a request asks for mode=file.
    let level = if config.agi.mode == AgiMode::File {
        Level::Error
    } else {
        Level::Warning
    };
    if !dir.is_dir() {
        report.add(
            level,
            "agi.spool_dir",
            format!("{} does not exist (file mode writes its audio there)", dir.display()),
        );
        return;
    }
    let probe = dir.join(format!(".xttsd-check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            report.add(Level::Ok, "agi.spool_dir", format!("{} is writable", dir.display()));
        }
        Err(e) => report.add(
            level,
            "agi.spool_dir",
            format!("{} is not writable: {e}", dir.display()),
        ),
    }
}

fn check_ports(config: &Config, report: &mut Report) {
    let mut listeners: Vec<(&str, SocketAddr)> = vec![
        ("audiosocket.listen", config.audiosocket.listen),
        ("agi.listen", config.agi.listen),
    ];
    if let Some(control) = config.control.listen {
        listeners.push(("control.listen", control));
    }
    for (key, addr) in listeners {
        match TcpListener::bind(addr) {
            Ok(_) => report.add(Level::Ok, key, format!("{addr} is free")),
            Err(e) => report.add(
                Level::Error,
                key,
                format!("cannot listen on {addr}: {e} (is xttsd already running?)"),
            ),
        }
    }
}

fn check_device(config: &Config, report: &mut Report) {
    let cuda = tch::Cuda::is_available();
    let count = if cuda { tch::Cuda::device_count() } else { 0 };
    match (config.engine.device, cuda) {
        (DeviceSetting::Cuda, false) => report.add(
            Level::Error,
            "engine.device",
            "cuda is configured but libtorch sees no usable CUDA device",
        ),
        (_, true) => report.add(Level::Ok, "engine.device", format!("{count} CUDA device(s) visible")),
        (DeviceSetting::Auto, false) => report.add(
            Level::Warning,
            "engine.device",
            "no CUDA device visible: XTTS runs on the CPU (slow; the built-in voice is unaffected)",
        ),
        _ => report.add(Level::Ok, "engine.device", "cpu"),
    }
}
