//! The built-in voice: eSpeak NG, a formant synthesizer that needs no model download and runs
//! far faster than real time on one CPU core. It speaks when the XTTS model is absent, down or
//! busy (see [`crate::engine::FallbackPolicy`]), behind the same engine interface, so
//! AudioSocket, AGI and the control API use it unchanged.
//!
//! eSpeak NG runs as a separate process, one per sentence: a crash or hang stays outside the
//! daemon, cancellation is a kill, and no GPL code is linked into xttsd. Text goes in on stdin
//! (never as an argument, so nothing in it is read as an option) and WAV comes out on stdout.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::audio::resample_all;
use crate::engine::{next_live_job, Health, JobQueue, SpeechBackend, SpeechRequest, Validator};
use crate::xtts::text::split_sentences;

/// The engine's sample rate, which the built-in voice is resampled to (as XTTS speaks).
pub const SAMPLE_RATE: u32 = 24_000;
/// A sentence that takes longer than this to synthesize is abandoned (eSpeak takes milliseconds).
const SENTENCE_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::config::BuiltinVoiceConfig;

/// The eSpeak NG voice for each language XTTS speaks (XTTS's codes).
const LANGUAGES: &[(&str, &str)] = &[
    ("en", "en-us"),
    ("es", "es"),
    ("fr", "fr-fr"),
    ("de", "de"),
    ("it", "it"),
    ("pt", "pt"),
    ("pl", "pl"),
    ("tr", "tr"),
    ("ru", "ru"),
    ("nl", "nl"),
    ("cs", "cs"),
    ("ar", "ar"),
    ("zh-cn", "cmn"),
    ("ja", "ja"),
    ("hu", "hu"),
    ("ko", "ko"),
    ("hi", "hi"),
];

/// The eSpeak NG voice for an XTTS language code (`pt-BR` reads as `pt`, `zh` as `zh-cn`).
pub fn espeak_language(lang: &str) -> Option<&'static str> {
    let lang = lang.trim().to_ascii_lowercase();
    let base = match lang.as_str() {
        "zh" | "zh-cn" | "zh-hans" => "zh-cn",
        other => other.split(['-', '_']).next().unwrap_or(other),
    };
    LANGUAGES
        .iter()
        .find(|(code, _)| *code == base)
        .map(|(_, voice)| *voice)
}

/// Languages the built-in voice speaks, by XTTS code.
pub fn languages() -> Vec<String> {
    LANGUAGES.iter().map(|(code, _)| code.to_string()).collect()
}

/// The built-in voice. Cheap to clone: each sentence is its own process.
#[derive(Debug, Clone)]
pub struct BuiltinVoice {
    cfg: BuiltinVoiceConfig,
}

impl BuiltinVoice {
    /// Checks that the program runs and speaks, so a missing package fails at start, not on a call.
    pub fn new(cfg: &BuiltinVoiceConfig) -> Result<Self> {
        anyhow::ensure!(
            cfg.words_per_minute >= 80 && cfg.words_per_minute <= 450,
            "builtin.words_per_minute must be between 80 and 450"
        );
        anyhow::ensure!(cfg.concurrency >= 1, "builtin.concurrency must be at least 1");
        anyhow::ensure!(
            cfg.variant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "builtin.variant '{}' is not an eSpeak NG variant name",
            cfg.variant
        );
        let voice = Self { cfg: cfg.clone() };
        let probe = voice.synthesize("ok", "en", 1.0).with_context(|| {
            format!(
                "the built-in voice ({}) cannot speak; install eSpeak NG (tools/setup does: apt-get install espeak-ng)",
                cfg.program.display()
            )
        })?;
        anyhow::ensure!(!probe.is_empty(), "{} produced no audio", cfg.program.display());
        Ok(voice)
    }

    /// Speaks one piece of text at `speed` (1.0 normal): 24 kHz mono samples.
    pub fn synthesize(&self, text: &str, lang: &str, speed: f64) -> Result<Vec<f32>> {
        let language = espeak_language(lang).ok_or_else(|| anyhow!("the built-in voice does not speak '{lang}'"))?;
        let voice = match self.cfg.variant.as_str() {
            "" => language.to_string(),
            variant => format!("{language}+{variant}"),
        };
        let wpm = ((self.cfg.words_per_minute as f64) * speed).round().clamp(80.0, 450.0) as u32;
        let mut child = Command::new(&self.cfg.program)
            .args(["-b", "1", "-v", &voice, "-s", &wpm.to_string(), "--stdout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.cfg.program.display()))?;
        let wav = run_to_end(&mut child, text.as_bytes(), SENTENCE_TIMEOUT)?;
        let (rate, samples) = parse_wav(&wav)?;
        resample_all(&samples, rate, SAMPLE_RATE)
    }

    /// Speaks a request sentence by sentence, handing each sentence's audio to `emit`.
    fn speak_sentences(&self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        let speed = req.options.speed.unwrap_or(1.0);
        let lang = if espeak_language(&req.lang).is_some() {
            req.lang.as_str()
        } else {
            "en"
        };
        for sentence in split_sentences(&req.text, lang) {
            if sentence.trim().is_empty() {
                continue;
            }
            let audio = self.synthesize(&sentence, lang, speed)?;
            if !emit(audio) {
                break;
            }
        }
        Ok(())
    }

    /// A check of requests before they are queued: a language it speaks and some text. Any
    /// voice name is accepted: the built-in voice stands in for every cloned one.
    pub fn validator(&self) -> Validator {
        Arc::new(|req: &SpeechRequest| {
            anyhow::ensure!(!req.text.trim().is_empty(), "text is empty");
            anyhow::ensure!(
                espeak_language(&req.lang).is_some(),
                "unknown language '{}' (known: {})",
                req.lang,
                languages().join(", ")
            );
            if let Some(speed) = req.options.speed {
                anyhow::ensure!(
                    crate::engine::SPEED_RANGE.contains(&speed),
                    "speed must be between {} and {}, got {speed}",
                    crate::engine::SPEED_RANGE.start(),
                    crate::engine::SPEED_RANGE.end()
                );
            }
            Ok(())
        })
    }
}

/// Writes `input` to the child's stdin, reads its stdout to the end, and waits for it, killing
/// it past `limit`. Fails with its stderr when it exits non-zero.
fn run_to_end(child: &mut Child, input: &[u8], limit: Duration) -> Result<Vec<u8>> {
    let started = Instant::now();
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let input = input.to_vec();
    // Written from a thread: a long text could fill the pipe while we are not yet reading.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("eSpeak NG took longer than {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = writer.join();
    let out = reader
        .join()
        .map_err(|_| anyhow!("reading eSpeak NG's output failed"))?;
    if !status.success() {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        bail!("eSpeak NG failed ({status}): {}", err.trim());
    }
    Ok(out)
}

/// eSpeak NG's WAV on stdout: 16-bit mono PCM whose header may give an unknown (maximal)
/// length, since it is written before the audio. Reads the format chunk and takes every byte
/// after the data chunk's header.
fn parse_wav(bytes: &[u8]) -> Result<(u32, Vec<f32>)> {
    anyhow::ensure!(
        bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV stream"
    );
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into()?) as usize;
        let body = at + 8;
        if id == b"data" {
            let (tag, channels, rate, bits) = format.ok_or_else(|| anyhow!("WAV data before its format"))?;
            anyhow::ensure!(tag == 1 && bits == 16 && channels >= 1, "WAV is not 16-bit PCM");
            let end = body.saturating_add(size).min(bytes.len());
            let frame = 2 * channels as usize;
            let samples = bytes[body..end]
                .chunks_exact(frame)
                .map(|f| i16::from_le_bytes([f[0], f[1]]) as f32 / 32768.0)
                .collect();
            return Ok((rate, samples));
        }
        if id == b"fmt " {
            anyhow::ensure!(body + 16 <= bytes.len(), "WAV format chunk cut short");
            let f = &bytes[body..body + 16];
            format = Some((
                u16::from_le_bytes([f[0], f[1]]),
                u16::from_le_bytes([f[2], f[3]]),
                u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
                u16::from_le_bytes([f[14], f[15]]),
            ));
        }
        at = body.saturating_add(size + (size & 1));
    }
    bail!("WAV stream without audio")
}

/// Bounds the sentences synthesized at once.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn take(&self) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    fn give(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }
}

impl SpeechBackend for BuiltinVoice {
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn speak(&mut self, req: &SpeechRequest, emit: &mut dyn FnMut(Vec<f32>) -> bool) -> Result<()> {
        self.speak_sentences(req, emit)
    }

    /// Requests run side by side (each sentence is a process of its own), up to
    /// `concurrency` at once, so one long text never holds up the other calls.
    fn serve(&mut self, jobs: &mut JobQueue, health: &Arc<Health>) {
        let slots = Arc::new(Slots {
            free: Mutex::new(self.cfg.concurrency),
            freed: Condvar::new(),
        });
        while let Some(job) = next_live_job(jobs, health) {
            slots.take();
            let (voice, held) = (self.clone(), slots.clone());
            let spawned = std::thread::Builder::new().name("builtin-voice".into()).spawn(move || {
                let result = voice.speak_sentences(&job.req, &mut |samples| job.send_audio(samples));
                job.finish(result);
                held.give();
            });
            if let Err(e) = spawned {
                tracing::error!("cannot start a built-in voice thread: {e}");
                slots.give();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_xtts_language_has_a_voice() {
        for lang in [
            "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "ja", "hu", "ko", "hi",
        ] {
            assert!(espeak_language(lang).is_some(), "{lang}");
        }
        assert_eq!(espeak_language("pt-BR"), Some("pt"));
        assert_eq!(espeak_language("zh"), Some("cmn"));
        assert_eq!(espeak_language("xx"), None);
    }

    #[test]
    fn wav_with_an_open_ended_data_chunk_is_read_to_the_end() {
        let mut wav = b"RIFF\xff\xff\xff\x7fWAVEfmt ".to_vec();
        wav.extend(16u32.to_le_bytes());
        wav.extend(1u16.to_le_bytes()); // PCM
        wav.extend(1u16.to_le_bytes()); // mono
        wav.extend(22_050u32.to_le_bytes());
        wav.extend((22_050u32 * 2).to_le_bytes());
        wav.extend(2u16.to_le_bytes());
        wav.extend(16u16.to_le_bytes());
        wav.extend(b"data\xff\xff\xff\x7f");
        for s in [0i16, 16_384, -16_384] {
            wav.extend(s.to_le_bytes());
        }
        let (rate, samples) = parse_wav(&wav).unwrap();
        assert_eq!(rate, 22_050);
        assert_eq!(samples, vec![0.0, 0.5, -0.5]);
        assert!(parse_wav(b"RIFF....WAVE").is_err());
        assert!(parse_wav(b"garbage").is_err());
    }

    #[test]
    fn bad_settings_are_refused_before_any_process_runs() {
        let cfg = BuiltinVoiceConfig {
            variant: "f3 --evil".into(),
            ..Default::default()
        };
        assert!(BuiltinVoice::new(&cfg).unwrap_err().to_string().contains("variant"));
        let cfg = BuiltinVoiceConfig {
            program: "/nonexistent/espeak-ng".into(),
            ..Default::default()
        };
        let err = format!("{:#}", BuiltinVoice::new(&cfg).unwrap_err());
        assert!(err.contains("apt-get install espeak-ng"), "{err}");
    }

    /// Needs eSpeak NG (tools/setup installs it).
    #[test]
    fn speaks_english_as_audible_speech_faster_than_real_time() {
        let voice = BuiltinVoice::new(&BuiltinVoiceConfig::default()).unwrap();
        let text = "Thank you for calling. Your call is important to us.";
        let started = Instant::now();
        let audio = voice.synthesize(text, "en", 1.0).unwrap();
        let took = started.elapsed().as_secs_f64();
        let secs = audio.len() as f64 / SAMPLE_RATE as f64;
        assert!((2.0..8.0).contains(&secs), "{secs} s of audio for ten words");
        assert!(took < secs, "synthesis took {took} s for {secs} s of audio");
        let rms = (audio.iter().map(|s| (s * s) as f64).sum::<f64>() / audio.len() as f64).sqrt();
        assert!(rms > 0.02, "speech level {rms}");
        // Faster speech is shorter.
        let fast = voice.synthesize(text, "en", 2.0).unwrap();
        assert!(fast.len() * 10 < audio.len() * 7, "{} vs {}", fast.len(), audio.len());
    }

    /// Text that looks like options or markup is spoken, never obeyed.
    #[test]
    fn text_is_never_read_as_options() {
        let voice = BuiltinVoice::new(&BuiltinVoiceConfig::default()).unwrap();
        // Read as options, this would print a version line, which is no WAV.
        let audio = voice.synthesize("--version <speak>hello</speak>", "en", 1.0).unwrap();
        assert!(audio.len() > SAMPLE_RATE as usize / 2);
    }
}
