//! `xttsd serve`: the daemon. Loads the model, starts the engine worker, then the AudioSocket,
//! FastAGI and control servers, and runs until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::calls::CallRegistry;
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
    let synth_cfg = SynthesizerConfig::from_engine(&config.engine);
    let (default_voice, default_lang) = (
        config.engine.default_voice.clone(),
        config.engine.default_language.clone(),
    );
    let engine = Engine::spawn(
        move || {
            let mut synth = Synthesizer::load(&synth_cfg)?;
            if let Err(e) = synth.warm_up(&default_voice, &default_lang) {
                tracing::warn!("default voice '{default_voice}' is not usable yet: {e:#}");
            }
            let validator = synth.validator();
            Ok((synth, validator))
        },
        config.engine.queue_limit,
    )?;
    let services = Arc::new(Services {
        config,
        engine,
        calls: CallRegistry::new(),
    });
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve_all(services))
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
    // Prompt files are rendered into the cache in the background, below calls in priority.
    let _prewarm = crate::prompts::start_prewarm(&services.engine, cfg);
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
