//! `xttsd serve`: the daemon. Loads the model, starts the engine worker, then the AudioSocket,
//! FastAGI and control servers, and runs until SIGINT or SIGTERM, which drain it: listeners stop
//! accepting, speaking calls get `daemon.drain_timeout_ms` to finish, then every call still up
//! is ended cleanly and the daemon exits once every connection task has ended. SIGHUP re-reads
//! nothing that needs it: voices are looked up on disk at each request.
//!
//! Under systemd (`Type=notify`) it reports READY=1 once the model is loaded and every listener
//! is bound, STOPPING=1 when the drain begins, and WATCHDOG=1 pings while the engine beats.
//! When an engine thread dies the daemon drains as on SIGTERM and exits non-zero, so systemd
//! restarts it with a fresh engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::agi::{AgiContext, SharedAgiContext};
use crate::audiosocket::{AudioSocketContext, SharedAudioSocketContext};
use crate::calls::{CallLimits, CallRegistry};
use crate::config::Config;
use crate::control::ControlContext;
use crate::engine::Engine;
use crate::listener::Gate;
use crate::prompt_cache::PromptCache;
use crate::shutdown::Shutdown;
use crate::speech_api::SpeechApiContext;
use crate::startup::{check_defaults, start_engines};
use crate::voicebot::{Bots, SharedBots};

/// The daemon's parts, made once from the configuration and the engine. Each server is
/// handed only what it needs (its context), never this whole.
pub struct Services {
    pub config: Config,
    pub engine: Engine,
    pub calls: CallRegistry,
    /// Drain and end of every call; every connection task is tracked by it.
    pub shutdown: Shutdown,
    /// `[prompts]`'s cache; None when off.
    pub cache: Option<Arc<PromptCache>>,
    pub bots: SharedBots,
}

pub type SharedServices = Arc<Services>;

impl Services {
    /// The parts of a daemon with this configuration and engine: a call registry bounded
    /// by `[limits]`, the prompt cache, and a shutdown not begun.
    pub fn new(config: Config, engine: Engine) -> SharedServices {
        let calls = CallRegistry::with_limits(CallLimits::from(&config.limits));
        let cache = PromptCache::shared(&config);
        let bots = Arc::new(Bots {
            config: config.voicebot.clone(),
            engine_config: config.engine.clone(),
            audio: config.audio.clone(),
            engine: engine.clone(),
            cache: cache.clone(),
            calls: calls.clone(),
        });
        Arc::new(Services {
            config,
            engine,
            calls,
            shutdown: Shutdown::new(),
            cache,
            bots,
        })
    }

    /// A listener's gate: its connection limit and the daemon's allow list.
    fn gate(&self, name: &'static str, max_connections: usize) -> Gate {
        Gate::new(name, max_connections, &self.config.daemon.allow_from)
    }

    /// What the AudioSocket server is given.
    pub fn audiosocket(&self) -> SharedAudioSocketContext {
        let cfg = &self.config;
        Arc::new(AudioSocketContext {
            config: cfg.audiosocket.clone(),
            test_call: cfg.test_call.clone(),
            engine_config: cfg.engine.clone(),
            audio: cfg.audio.clone(),
            engine: self.engine.clone(),
            cache: self.cache.clone(),
            calls: self.calls.clone(),
            shutdown: self.shutdown.clone(),
            gate: self.gate("audiosocket", cfg.audiosocket.max_connections),
            bots: self.bots.clone(),
        })
    }

    /// What the FastAGI server is given.
    pub fn agi(&self) -> SharedAgiContext {
        let cfg = &self.config;
        Arc::new(AgiContext {
            config: cfg.agi.clone(),
            engine_config: cfg.engine.clone(),
            max_text_chars: cfg.limits.max_text_chars,
            audio: cfg.audio.clone(),
            engine: self.engine.clone(),
            cache: self.cache.clone(),
            calls: self.calls.clone(),
            shutdown: self.shutdown.clone(),
            gate: self.gate("agi", cfg.agi.max_connections),
            bots: self.bots.clone(),
        })
    }

    /// What the control API is given.
    pub fn control(&self) -> ControlContext {
        let cfg = &self.config;
        ControlContext {
            engine_config: cfg.engine.clone(),
            max_text_chars: cfg.limits.max_text_chars,
            engine: self.engine.clone(),
            calls: self.calls.clone(),
            shutdown: self.shutdown.clone(),
            gate: self.gate("control", cfg.control.max_connections),
            bots: self.bots.clone(),
        }
    }

    /// What the speech API (served beside the control API) is given.
    pub fn speech_api(&self) -> SpeechApiContext {
        SpeechApiContext {
            engine_config: self.config.engine.clone(),
            audio: self.config.audio.clone(),
            engine: self.engine.clone(),
            cache: self.cache.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's configuration file.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let config = Config::from_file(&args.config)?;
    let engine = start_engines(&config)?;
    check_defaults(&config, &engine)?;
    let services = Services::new(config, engine);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(serve_all(services))
}

/// Binds every configured listener, then serves until a shutdown signal and drains.
pub async fn serve_all(services: SharedServices) -> Result<()> {
    let cfg = &services.config;
    let audiosocket = bind(cfg.audiosocket.listen, "audiosocket").await?;
    let agi = bind(cfg.agi.listen, "agi").await?;
    let control = match cfg.control.listen {
        None => None,
        Some(addr) => Some(bind(addr, "control").await?),
    };
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(crate::audiosocket::serve(audiosocket, services.audiosocket()));
    servers.spawn(crate::agi::serve(agi, services.agi()));
    if let Some(control) = control {
        servers.spawn(crate::control::serve(
            control,
            services.control(),
            services.speech_api(),
        ));
    }
    let sweeper = {
        let shutdown = services.shutdown.clone();
        tokio::spawn(
            services
                .calls
                .clone()
                .sweep_every(Duration::from_secs(1), async move { shutdown.draining().await }),
        )
    };
    let watchdog = tokio::spawn(watchdog(services.engine.clone()));
    let _prewarm = crate::prompts::start_prewarm(&services.engine, cfg);
    tracing::info!("xttsd ready");
    notify(&[sd_notify::NotifyState::Ready]);
    let stop = tokio::select! {
        _ = wait_for_stop_signal() => Stop::Signal,
        _ = engine_died(&services.engine) => Stop::EngineDied,
    };
    let deadline = cfg.daemon.drain_timeout();
    tracing::info!(calls = services.calls.live_count(), ?deadline, "draining");
    notify(&[sd_notify::NotifyState::Stopping]);
    drain(&services, deadline).await;
    // A second signal during the drain ends every call at once.
    tokio::select! {
        _ = services.shutdown.wait() => {}
        _ = wait_for_stop_signal() => {
            tracing::warn!("second signal: ending every call now");
            services.shutdown.end_now();
        }
    }
    // Calls end within a few seconds of the deadline (a write times out after 2 s); past
    // that, exit anyway rather than hang the restart.
    if tokio::time::timeout(Duration::from_secs(10), services.shutdown.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = services.shutdown.running(),
            "connections still open after the drain; exiting"
        );
    }
    while servers.join_next().await.is_some() {}
    sweeper.abort();
    watchdog.abort();
    let engine = services.engine.clone();
    let _ = tokio::task::spawn_blocking(move || engine.close(Duration::from_secs(5))).await;
    match stop {
        Stop::Signal => {
            tracing::info!("stopped");
            Ok(())
        }
        // Exiting non-zero has systemd (Restart=on-failure) start a fresh engine.
        Stop::EngineDied => anyhow::bail!("the engine stopped; exiting for a restart"),
    }
}

/// Why the daemon stops.
enum Stop {
    /// SIGINT or SIGTERM.
    Signal,
    /// An engine thread died: every later call would fail, so the daemon drains and exits.
    EngineDied,
}

/// Resolves once a thread of the engine has died.
async fn engine_died(engine: &Engine) {
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        poll.tick().await;
        if !engine.is_alive() {
            tracing::error!("the engine is down: draining the calls up, then exiting for a restart");
            return;
        }
    }
}

/// Stops accepting and starts the deadline for the calls still up.
pub async fn drain(services: &Services, deadline: Duration) {
    services.shutdown.begin(deadline);
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{what}: cannot listen on {addr}"))?;
    tracing::info!(%addr, "{what} listening");
    Ok(listener)
}

/// Resolves on SIGINT or SIGTERM; logs SIGHUP (voices are read from disk on use, so there is
/// nothing to reload).
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => tracing::info!(
                "SIGHUP: nothing to reload; voice clips are looked up in the speakers directory at each request"
            ),
        }
    }
}

fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// Pings systemd's watchdog at half its interval while the runtime is responsive and the
/// engine beats: a stuck engine thread stops the pings, and systemd restarts the daemon.
async fn watchdog(engine: Engine) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return std::future::pending().await;
    }
    let mut timer = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        timer.tick().await;
        let beat = engine.heartbeat();
        if beat.is_healthy() {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(
                alive = beat.alive,
                since_last_beat = ?beat.since_last_beat,
                "the engine is not beating: watchdog pings withheld"
            );
        }
    }
}
