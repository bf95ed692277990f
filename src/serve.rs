//! `xttsd serve`: the daemon. Loads the model, starts the engine worker, then the AudioSocket,
//! FastAGI and control servers, and runs until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::builtin_voice::BuiltinVoice;
use crate::calls::CallRegistry;
use crate::check;
use crate::config::Config;
use crate::engine::Engine;
use crate::synth::{Synthesizer, SynthesizerConfig};

/// What every server of the daemon shares.
pub struct Services {
    pub config: Config,
    pub engine: Engine,
    pub calls: CallRegistry,
}

pub type SharedServices = Arc<Services>;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's configuration file.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let config = Config::from_file(&args.config)?;
    let engine = start_engines(&config)?;
    let services = Arc::new(Services {
        config,
        engine,
        calls: CallRegistry::new(),
    });
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve_all(services))
}

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
    let synth_cfg = SynthesizerConfig::from_engine(&config.engine);
    let (default_voice, default_lang) = (
        config.engine.default_voice.clone(),
        config.engine.default_language.clone(),
    );
    let usable = Arc::new(AtomicBool::new(false));
    let usable_in_worker = usable.clone();
    let engine = Engine::spawn(
        move || {
            let mut synth = Synthesizer::load(&synth_cfg)?;
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

/// Binds every configured listener, then serves until a shutdown signal.
pub async fn serve_all(services: SharedServices) -> Result<()> {
    let cfg = &services.config;
    let audiosocket = bind(&cfg.audiosocket.listen.to_string(), "audiosocket").await?;
    let agi = bind(&cfg.agi.listen.to_string(), "agi").await?;
    let control = match cfg.control.listen.as_str() {
        "" => None,
        addr => Some(bind(addr, "control").await?),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::audiosocket::serve(audiosocket, services.clone()));
    tasks.spawn(crate::agi::serve(agi, services.clone()));
    if let Some(control) = control {
        tasks.spawn(crate::control::serve(control, services.clone()));
    }
    tracing::info!("xttsd ready");
    tokio::select! {
        done = tasks.join_next() => {
            // A server only returns on a fatal listener error.
            match done {
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(e.into()),
                _ => {}
            }
        }
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn bind(addr: &str, what: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what}: cannot listen on {addr}"))?;
    tracing::info!(%addr, "{what} listening");
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
