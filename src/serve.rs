//! `xttsd serve`: the daemon. Loads the model, starts the engine worker, then the AudioSocket,
//! FastAGI and control servers, and runs until SIGINT or SIGTERM, which drain it: listeners stop
//! accepting, speaking calls get `daemon.drain_timeout_ms` to finish, then every call still up
//! is ended cleanly and the daemon exits once every connection task has ended. SIGHUP re-reads
//! nothing that needs it: voices are looked up on disk at each request.
//!
//! Under systemd (`Type=notify`) it reports READY=1 once the model is loaded and every listener
//! is bound, STOPPING=1 when the drain begins, and WATCHDOG=1 pings while it runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::builtin_voice::BuiltinVoice;
use crate::calls::CallRegistry;
use crate::check;
use crate::config::Config;
use crate::engine::xtts_backend::{XttsBackend, XttsBackendConfig};
use crate::engine::{Engine, SpeechOptions, SpeechRequest};
use crate::listener::Gate;
use crate::shutdown::Shutdown;

/// What every server of the daemon shares.
pub struct Services {
    pub config: Config,
    pub engine: Engine,
    pub calls: CallRegistry,
    /// Drain and end of every call; every connection task is tracked by it.
    pub shutdown: Shutdown,
}

pub type SharedServices = Arc<Services>;

impl Services {
    /// The services of a daemon with this configuration and engine: a call registry bounded
    /// by `[limits]`, and a shutdown not begun.
    pub fn new(config: Config, engine: Engine) -> SharedServices {
        let calls = CallRegistry::with_limits(config.limits.calls());
        Arc::new(Services {
            config,
            engine,
            calls,
            shutdown: Shutdown::new(),
        })
    }

    /// A listener's gate: its connection limit and the daemon's allow list.
    pub fn gate(&self, name: &'static str, max_connections: usize) -> Gate {
        Gate::new(name, max_connections, &self.config.daemon.allow_from)
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
    servers.spawn(crate::audiosocket::serve(audiosocket, services.clone()));
    servers.spawn(crate::agi::serve(agi, services.clone()));
    if let Some(control) = control {
        servers.spawn(crate::control::serve(control, services.clone()));
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
    let watchdog = tokio::spawn(watchdog());
    let _prewarm = crate::prompts::start_prewarm(&services.engine, cfg);
    tracing::info!("xttsd ready");
    notify(&[sd_notify::NotifyState::Ready]);
    wait_for_stop_signal().await;
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
    tracing::info!("stopped");
    Ok(())
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

/// Pings systemd's watchdog at half its interval while the runtime is responsive.
async fn watchdog() {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return std::future::pending().await;
    }
    let mut timer = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        timer.tick().await;
        notify(&[sd_notify::NotifyState::Watchdog]);
    }
}
