//! File mode: synthesise sentence by sentence into spool files Asterisk can read and play
//! each with `STREAM FILE` while the next one is being synthesised. A file is deleted once
//! played, and every file not yet played is deleted when the session stops for any reason;
//! files a crash left behind are swept when the daemon starts. Encoding and file I/O run on
//! the blocking pool, never on the threads that pace calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::codec::{AgiLine, Command};
use super::conn::{Conn, Outcome, Stop};
use super::plan::Plan;
use super::transcode::FileFormat;
use super::SharedAgiContext;
use crate::calls::FailReason;
use crate::config::AudioConfig;
use crate::engine::{Engine, SpeechEvent, SpeechRequest};
use crate::metrics::METRICS;
use crate::prompt_cache::{self, CacheMode, PromptCache};

/// Every spool file's name starts with this (and only spool files' names do).
const SPOOL_PREFIX: &str = "xttsd-";

/// Splits text into sentences for synthesis one at a time, with the text front-end's
/// splitter (which knows "Dr. Smith" and "3.5" are not sentence ends).
pub fn split_sentences(text: &str) -> Vec<String> {
    let sentences = crate::xtts::text::sentences(text);
    if sentences.is_empty() && !text.trim().is_empty() {
        return vec![text.trim().to_string()];
    }
    sentences
}

/// Removes the spool files in `dir` (left by a crash: a running daemon deletes its own);
/// returns how many.
pub fn sweep_spool(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// A file in the spool directory, deleted when dropped.
#[derive(Debug)]
pub struct SpoolFile {
    /// The path as it is now (temporary name while being written).
    path: PathBuf,
    /// The name Asterisk gets: the final path without its extension.
    stem: PathBuf,
    /// Length of the audio in milliseconds.
    pub ms: u64,
}

impl SpoolFile {
    /// Writes `bytes` under a temporary name and renames it into place, so Asterisk never
    /// sees a partial file.
    pub fn write(dir: &Path, name: &str, format: FileFormat, bytes: &[u8]) -> Result<SpoolFile> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create spool dir {}", dir.display()))?;
        let stem = dir.join(name);
        let mut file = SpoolFile {
            path: dir.join(format!("{name}.part")),
            stem,
            ms: (bytes.len() / format.bytes_per_sample()) as u64 * 1000 / format.sample_rate() as u64,
        };
        std::fs::write(&file.path, bytes).with_context(|| format!("cannot write {}", file.path.display()))?;
        let target = file.stem.with_extension(format.extension());
        std::fs::rename(&file.path, &target)
            .with_context(|| format!("cannot rename {} to {}", file.path.display(), target.display()))?;
        file.path = target;
        Ok(file)
    }

    /// What STREAM FILE takes: the path without extension.
    pub fn stem(&self) -> String {
        self.stem.to_string_lossy().into_owned()
    }
}

fn remove_spool_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove spool file");
        }
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || remove_spool_file(&path))),
            Err(_) => remove_spool_file(&path),
        }
    }
}

/// Aborts the synthesis task when the session stops; its unplayed files go with it.
struct AbortOnDrop(JoinHandle<Result<(), (FailReason, String)>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Plays the plan's text as spool files. Interrupted by an escape digit or a hangup; at the
/// drain deadline it stops before the next file.
pub async fn play(conn: &mut Conn, ctx: &SharedAgiContext, plan: &Plan) -> Result<Outcome, Stop> {
    let format = FileFormat::from(ctx.config.file_format);
    let sentences = split_sentences(&plan.request.text);
    // One finished file may wait while the next sentence is synthesised.
    let (tx, mut files) = mpsc::channel::<(SpoolFile, &'static str)>(1);
    let mut producer = AbortOnDrop(tokio::spawn(produce(
        ctx.clone(),
        plan.request.clone(),
        sentences,
        Spool {
            dir: ctx.config.spool_dir.clone(),
            format,
            audio: ctx.audio.clone(),
        },
        Duration::from_millis(ctx.config.reply_timeout_ms),
        tx,
    )));
    let shutdown = ctx.shutdown.clone();
    let mut played_ms = 0;
    // The engine of the files handed over so far (XTTS_ENGINE).
    let mut engine = None;
    loop {
        let file = tokio::select! {
            biased;
            _ = shutdown.ended() => return Err(Stop::Failed(FailReason::Shutdown, "shutdown".into())),
            file = files.recv() => file,
            stop = conn.unsolicited() => return hung_up_or(stop, played_ms, engine),
        };
        let Some((file, spoken_by)) = file else { break };
        engine = Some(spoken_by);
        let command = if plan.control {
            Command::new("CONTROL STREAM FILE", [file.stem(), plan.escape_digits.clone()])
        } else {
            Command::new("STREAM FILE", [file.stem(), plan.escape_digits.clone()])
        };
        let length = Duration::from_millis(file.ms);
        let started = Instant::now();
        let reply = match conn.command_while(command, || started.elapsed() < length).await {
            Ok(reply) => reply,
            Err(stop) => return hung_up_or(stop, played_ms, engine),
        };
        let code = reply.result_code();
        played_ms += match (&reply, code) {
            (AgiLine::Reply { endpos: Some(n), .. }, _) if *n > 0 => {
                if plan.control {
                    *n as u64
                } else {
                    *n as u64 * 1000 / format.sample_rate() as u64
                }
            }
            // Played to its end without saying where that was (CONTROL STREAM FILE does so).
            (_, Some(0)) => file.ms,
            (_, Some(c)) if c > 0 && plan.control => playback_offset(conn).await?,
            _ => 0,
        };
        drop(file);
        match code {
            Some(0) => {}
            Some(code) if code > 0 => {
                let digit = u8::try_from(code).ok().map(char::from);
                return Ok(Outcome::ended("INTERRUPTED", digit, played_ms).spoken_by(engine));
            }
            _ => {
                // -1: the caller hung up (Asterisk follows with HANGUP), or the file is unreadable.
                if conn.hangup_follows().await {
                    return Ok(Outcome::hangup(played_ms).spoken_by(engine));
                }
                return Err(Stop::Failed(
                    FailReason::Asterisk,
                    format!("Asterisk could not play the spool file: {reply:?}"),
                ));
            }
        }
    }
    // All files played, or synthesis ended early: its result tells which.
    match (&mut producer.0).await {
        Ok(Ok(())) => Ok(Outcome::ended("SUCCESS", None, played_ms).spoken_by(engine)),
        Ok(Err((reason, error))) => {
            METRICS.failed(reason);
            let mut outcome = Outcome::failed(reason, format!("synthesis failed: {error}")).spoken_by(engine);
            outcome.played_ms = played_ms;
            Ok(outcome)
        }
        Err(e) => Err(Stop::Failed(FailReason::Engine, format!("synthesis task failed: {e}"))),
    }
}

/// A hangup is a result (with what was played); anything else stops the session.
fn hung_up_or(stop: Stop, played_ms: u64, engine: Option<&'static str>) -> Result<Outcome, Stop> {
    match stop {
        Stop::HungUp => Ok(Outcome::hangup(played_ms).spoken_by(engine)),
        other => Err(other),
    }
}

/// Where `CONTROL STREAM FILE` stopped, in ms (`CPLAYBACKOFFSET`), when its reply said nothing.
async fn playback_offset(conn: &mut Conn) -> Result<u64, Stop> {
    Ok(conn
        .get_variable("CPLAYBACKOFFSET")
        .await?
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0))
}

/// Where and how spool files are written.
struct Spool {
    dir: PathBuf,
    format: FileFormat,
    audio: AudioConfig,
}

/// Synthesises each sentence into a spool file and hands it over, in order. The first
/// sentence is refused at once when the engine is full (the caller hears nothing yet); a later
/// one waits for room, so a busy moment does not cut a prompt that is already playing.
async fn produce(
    ctx: SharedAgiContext,
    base: SpeechRequest,
    sentences: Vec<String>,
    spool: Spool,
    patience: Duration,
    files: mpsc::Sender<(SpoolFile, &'static str)>,
) -> Result<(), (FailReason, String)> {
    let engine = &ctx.engine;
    let cache = ctx.cache.clone();
    let session = Uuid::new_v4();
    let spool = std::sync::Arc::new(spool);
    for (i, sentence) in sentences.into_iter().enumerate() {
        let request = SpeechRequest {
            text: sentence,
            ..base.clone()
        };
        let patience = if i == 0 { Duration::ZERO } else { patience };
        let (samples, spoken_by) = synthesize(engine, cache.as_ref(), request, patience).await?;
        if samples.is_empty() {
            continue;
        }
        let (spool, rate) = (spool.clone(), engine.sample_rate());
        let name = format!("{SPOOL_PREFIX}{session}-{i:03}");
        let file = tokio::task::spawn_blocking(move || {
            let bytes = spool.format.encode(&samples, rate, &spool.audio)?;
            SpoolFile::write(&spool.dir, &name, spool.format, &bytes)
        })
        .await
        .map_err(|e| (FailReason::Engine, format!("writing the spool file: {e}")))?
        .map_err(|e| (FailReason::Engine, format!("{e:#}")))?;
        if files.send((file, spoken_by)).await.is_err() {
            return Ok(()); // the session stopped; the file was dropped (deleted) with the message
        }
    }
    Ok(())
}

/// The whole audio of one request (from the prompt cache when it holds it), and the engine
/// that spoke it.
async fn synthesize(
    engine: &Engine,
    cache: Option<&Arc<PromptCache>>,
    request: SpeechRequest,
    patience: Duration,
) -> Result<(Vec<f32>, &'static str), (FailReason, String)> {
    // A miss of the cache waits for room as a request past it does.
    let queued = if patience.is_zero() {
        prompt_cache::speak(cache, engine, request, CacheMode::Auto)
    } else {
        prompt_cache::speak_within(cache, engine, request, CacheMode::Auto, patience).await
    };
    let mut speech = queued.map_err(|e| (FailReason::of(&e), e.to_string()))?;
    let mut samples = Vec::new();
    let rate = f64::from(engine.sample_rate().max(1));
    let playout = speech.playout();
    loop {
        match speech.next().await {
            Some(SpeechEvent::Audio(chunk)) => {
                // The file plays only once complete: audio is taken as fast as it comes, so the
                // engine sees this listener always about to run dry and never paces it.
                if let Some(playout) = &playout {
                    playout.played(Duration::from_secs_f64(chunk.len() as f64 / rate));
                }
                samples.extend_from_slice(&chunk)
            }
            Some(SpeechEvent::Done) => return Ok((samples, speech.engine())),
            Some(SpeechEvent::Failed(reason)) => return Err((FailReason::Engine, reason)),
            None => return Err((FailReason::Engine, "the engine stopped".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_end_punctuation_but_not_abbreviations() {
        assert_eq!(
            split_sentences("Dr. Smith will see you now. How are you? It costs 3.5 euros."),
            vec!["Dr. Smith will see you now.", "How are you?", "It costs 3.5 euros."]
        );
        assert!(split_sentences("  ").is_empty());
        assert_eq!(split_sentences("no stop"), vec!["no stop"]);
    }

    #[test]
    fn stale_spool_files_are_swept_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xttsd-old-000.ulaw"), b"x").unwrap();
        std::fs::write(dir.path().join("xttsd-old-001.part"), b"x").unwrap();
        std::fs::write(dir.path().join("greeting.ulaw"), b"x").unwrap();
        assert_eq!(sweep_spool(dir.path()), 2);
        assert_eq!(sweep_spool(&dir.path().join("missing")), 0);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec!["greeting.ulaw"]);
    }

    #[test]
    fn spool_file_is_renamed_into_place_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let file = SpoolFile::write(dir.path(), "x-001", FileFormat::Ulaw, &[0xFF; 1600]).unwrap();
        assert_eq!(file.ms, 200);
        assert_eq!(file.stem(), dir.path().join("x-001").to_string_lossy());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["x-001.ulaw"]);
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn spool_write_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let err = SpoolFile::write(&blocker, "x", FileFormat::Sln16, &[0; 4]).unwrap_err();
        assert!(format!("{err:#}").contains("not-a-dir"), "{err:#}");
    }
}
