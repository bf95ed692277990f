//! Starting the engines a configuration asks for: XTTS on its worker thread, and the built-in
//! voice (eSpeak NG) beside it as `[fallback]` says; then the start-time checks that need the
//! loaded engine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::builtin_voice::BuiltinVoice;
use crate::check;
use crate::config::Config;
use crate::engine::xtts_backend::{XttsBackend, XttsBackendConfig};
use crate::engine::{Engine, SpeechOptions, SpeechRequest};

/// Starts XTTS and the built-in voice as `[fallback]` says: XTTS with the built-in voice
/// standing in when it is down or busy, or the built-in voice alone while XTTS is absent.
pub fn start_engines(config: &Config) -> Result<Engine> {
    let policy = config.fallback;
    let wanted = policy.when_absent || policy.when_down || policy.when_busy;
    let builtin = if wanted { start_builtin_voice(config) } else { None };
    let model_dir = &config.engine.model_dir;
    let missing = check::missing_model_files(model_dir);
    if !missing.is_empty() {
        let why = format!(
            "no XTTS model: {} lacks {}. {}",
            model_dir.display(),
            missing.join(", "),
            check::download_hint(model_dir)
        );
        return match builtin {
            Some(builtin) if policy.when_absent => {
                tracing::warn!("{why}");
                tracing::warn!("the built-in voice (eSpeak NG) answers every call until the model is installed");
                Ok(builtin)
            }
            _ => Err(anyhow::anyhow!(why)),
        };
    }
    let (xtts, default_voice_usable) = match start_xtts(config) {
        Ok(started) => started,
        Err(e) => {
            return match builtin {
                Some(builtin) if policy.when_down => {
                    tracing::error!("XTTS failed to load: {e:#}");
                    tracing::warn!("the built-in voice (eSpeak NG) answers every call");
                    Ok(builtin)
                }
                _ => Err(e),
            };
        }
    };
    let Some(builtin) = builtin else {
        return Ok(xtts);
    };
    let absent_voices = if default_voice_usable {
        Vec::new()
    } else {
        let voice = &config.engine.default_voice;
        tracing::warn!(
            "the default voice '{voice}' has no clip ({}/{voice}.wav); the built-in voice speaks for it",
            config.engine.speakers_dir.display()
        );
        vec![voice.clone()]
    };
    xtts.with_fallback(builtin, policy, absent_voices)
}

/// Loads XTTS on its worker thread and warms up the default voice; says whether that voice
/// is usable.
fn start_xtts(config: &Config) -> Result<(Engine, bool)> {
    let synth_cfg = XttsBackendConfig::from_engine(&config.engine);
    let (default_voice, default_lang) = (
        config.engine.default_voice.clone(),
        config.engine.default_language.clone(),
    );
    let usable = Arc::new(AtomicBool::new(false));
    let usable_in_worker = usable.clone();
    let engine = Engine::spawn(
        move || {
            let mut synth = XttsBackend::load(&synth_cfg)?;
            match synth.warm_up(&default_voice, &default_lang) {
                Ok(()) => usable_in_worker.store(true, Ordering::Relaxed),
                Err(e) => tracing::warn!("default voice '{default_voice}' is not usable yet: {e:#}"),
            }
            let validator = synth.validator();
            Ok((synth, validator))
        },
        config.engine.queue_limit,
    )?;
    Ok((engine, usable.load(Ordering::Relaxed)))
}

/// The built-in voice's engine, or None (logged) when eSpeak NG cannot run.
fn start_builtin_voice(config: &Config) -> Option<Engine> {
    let voice = match BuiltinVoice::new(&config.builtin) {
        Ok(voice) => voice,
        Err(e) => {
            tracing::warn!("no built-in voice: {e:#}");
            return None;
        }
    };
    let validator = voice.validator();
    let started = Engine::spawn(move || Ok((voice, validator)), config.engine.queue_limit);
    match started {
        Ok(engine) => Some(engine.named("builtin")),
        Err(e) => {
            tracing::warn!("no built-in voice: {e:#}");
            None
        }
    }
}

/// The configured default voice and language, and the test call's, must be ones the loaded
/// engine speaks: otherwise every call that relies on them would fail.
pub fn check_defaults(config: &Config, engine: &Engine) -> Result<()> {
    let probe = |voice: &str, lang: &str| {
        engine.validate(&SpeechRequest {
            text: "test".into(),
            voice: voice.into(),
            lang: lang.into(),
            options: SpeechOptions::default(),
        })
    };
    let (voice, lang) = (&config.engine.default_voice, &config.engine.default_language);
    probe(voice, &config.engine.default_language).context("engine.default_voice")?;
    probe(voice, lang).context("engine.default_language")?;
    let test = &config.test_call;
    if test.enabled {
        let pick = |own: &String, default: &String| if own.is_empty() { default.clone() } else { own.clone() };
        probe(&pick(&test.voice, voice), lang).context("test_call.voice")?;
        probe(voice, &pick(&test.language, lang)).context("test_call.language")?;
    }
    Ok(())
}
