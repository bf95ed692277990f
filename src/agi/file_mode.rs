//! File mode: synthesise sentence by sentence into spool files Asterisk can read and play
//! each with `STREAM FILE` while the next one is being synthesised. A file is deleted once
//! played, and every file not yet played is deleted when the session stops for any reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::codec::Command;
use super::session::{Conn, Outcome, Plan, Stop};
use super::transcode::FileFormat;
use crate::engine::{Engine, SpeechEvent, SpeechRequest};
use crate::prompt_cache::PromptCache;
use crate::serve::SharedServices;

/// Splits text into sentences for synthesis one at a time.
// A plain splitter on sentence punctuation; the text front-end's `split_sentences` replaces it.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let ends = match c {
            '.' | '!' | '?' | '…' => chars.peek().is_none_or(|n| n.is_whitespace()),
            '。' | '！' | '？' => true,
            _ => false,
        };
        if ends {
            push_trimmed(&mut sentences, &mut current);
        }
    }
    push_trimmed(&mut sentences, &mut current);
    sentences
}

fn push_trimmed(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    current.clear();
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

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove spool file");
            }
        }
    }
}

/// Aborts the synthesis task when the session stops; its unplayed files go with it.
struct AbortOnDrop(JoinHandle<Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Plays the plan's text as spool files. Interrupted by an escape digit or a hangup.
pub async fn play(
    conn: &mut Conn,
    services: &SharedServices,
    plan: &Plan,
    format: FileFormat,
) -> Result<Outcome, Stop> {
    let sentences = split_sentences(&plan.request.text);
    // One finished file may wait while the next sentence is synthesised.
    let (tx, mut files) = mpsc::channel::<SpoolFile>(1);
    let mut producer = AbortOnDrop(tokio::spawn(produce(
        services.clone(),
        plan.request.clone(),
        sentences,
        format,
        tx,
    )));
    let mut played_ms = 0;
    loop {
        let file = tokio::select! {
            file = files.recv() => file,
            stop = conn.unsolicited() => return Err(stop),
        };
        let Some(file) = file else { break };
        let command = if plan.control {
            Command::new("CONTROL STREAM FILE", [file.stem(), plan.escape_digits.clone()])
        } else {
            Command::new("STREAM FILE", [file.stem(), plan.escape_digits.clone()])
        };
        let reply = conn.command(command).await?;
        drop(file);
        let endpos_ms = |reply: &super::codec::AgiLine| match reply {
            super::codec::AgiLine::Reply { endpos: Some(n), .. } if *n > 0 => {
                if plan.control {
                    *n as u64
                } else {
                    *n as u64 * 1000 / format.sample_rate() as u64
                }
            }
            _ => 0,
        };
        played_ms += endpos_ms(&reply);
        match reply.result_code() {
            Some(0) => {}
            Some(code) if code > 0 => {
                let digit = u8::try_from(code).ok().map(char::from);
                return Ok(Outcome {
                    status: "INTERRUPTED",
                    digit,
                    played_ms,
                    error: String::new(),
                });
            }
            _ => {
                return Err(Stop::Failed(format!(
                    "Asterisk could not play the spool file: {reply:?}"
                )))
            }
        }
    }
    // All files played, or synthesis ended early: its result tells which.
    match (&mut producer.0).await {
        Ok(Ok(())) => Ok(Outcome {
            status: "SUCCESS",
            digit: None,
            played_ms,
            error: String::new(),
        }),
        Ok(Err(e)) => Err(Stop::Failed(format!("synthesis failed: {e:#}"))),
        Err(e) => Err(Stop::Failed(format!("synthesis task failed: {e}"))),
    }
}

/// Synthesises each sentence into a spool file and hands it over, in order.
async fn produce(
    services: SharedServices,
    base: SpeechRequest,
    sentences: Vec<String>,
    format: FileFormat,
    files: mpsc::Sender<SpoolFile>,
) -> Result<()> {
    let (engine, spool_dir, audio) = (&services.engine, &services.config.agi.spool_dir, &services.config.audio);
    let cache = PromptCache::shared(&services.config);
    let session = Uuid::new_v4();
    for (i, sentence) in sentences.into_iter().enumerate() {
        let request = SpeechRequest {
            text: sentence,
            ..base.clone()
        };
        let samples = synthesize(engine, cache.as_ref(), request).await?;
        if samples.is_empty() {
            continue;
        }
        let bytes = format.encode(&samples, engine.sample_rate(), audio)?;
        let file = SpoolFile::write(spool_dir, &format!("xttsd-{session}-{i:03}"), format, &bytes)?;
        if files.send(file).await.is_err() {
            return Ok(()); // the session stopped; the file was dropped (deleted) with the message
        }
    }
    Ok(())
}

/// The whole audio of one request.
async fn synthesize(engine: &Engine, cache: Option<&Arc<PromptCache>>, request: SpeechRequest) -> Result<Vec<f32>> {
    let mut speech = crate::prompt_cache::speak(cache, engine, request, crate::prompt_cache::CacheMode::Auto)?;
    let mut samples = Vec::new();
    loop {
        match speech.next().await {
            Some(SpeechEvent::Audio(chunk)) => samples.extend_from_slice(&chunk),
            Some(SpeechEvent::Done) => return Ok(samples),
            Some(SpeechEvent::Failed(reason)) => anyhow::bail!(reason),
            None => anyhow::bail!("the engine stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_end_punctuation() {
        assert_eq!(
            split_sentences("Hello there. How are you?  Fine!Great... 3.5 apples. 你好。再见"),
            vec![
                "Hello there.",
                "How are you?",
                "Fine!Great...",
                "3.5 apples.",
                "你好。",
                "再见"
            ]
        );
        assert!(split_sentences("  ").is_empty());
        assert_eq!(split_sentences("no stop"), vec!["no stop"]);
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
