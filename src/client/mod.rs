//! `xttsd call`: a client that behaves as Asterisk does, for testing a deployment without a
//! phone. It connects to a running daemon, records what comes back to a WAV and prints the
//! time to first audio frame, frame count, pacing jitter and gaps.

pub mod agi;
pub mod audiosocket;
pub mod bot;
pub mod report;

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `audiosocket://HOST:PORT`, `agi://HOST:PORT/say?voice=NAME&lang=xx`, or the control
    /// API `ws://HOST:PORT` to act only as the bot of call `--uuid` (Asterisk makes the call).
    pub url: String,
    /// Call UUID sent on the AudioSocket (random when omitted).
    #[arg(long)]
    pub uuid: Option<String>,
    /// DTMF digits to press once audio starts, e.g. `12#`.
    #[arg(long, default_value = "")]
    pub dtmf: String,
    /// Text to speak (AGI: passed as agi_arg_1).
    #[arg(long)]
    pub text: Option<String>,
    /// Where to write what was heard (WAV, at the call's rate).
    #[arg(long, default_value = "call.wav")]
    pub out: PathBuf,
    /// Hang up after this many seconds of call time (the caller hangs up mid-speech).
    #[arg(long)]
    pub hangup_after: Option<f64>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// With an audiosocket:// call: also be its voicebot, over the control API at this
    /// `ws://HOST:PORT`. The bot streams `--text` at LLM speed, prints its events, stops when
    /// a key is pressed (`--dtmf`) and hangs up when done.
    #[arg(long)]
    pub bot: Option<String>,
    /// Bearer token for the voicebot socket (`voicebot.token`).
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        if args.url.starts_with("ws://") {
            run_bot_only(&args).await
        } else if args.url.starts_with("audiosocket://") && args.bot.is_some() {
            run_bot_call(args).await
        } else if args.url.starts_with("audiosocket://") {
            audiosocket::run(args).await
        } else if args.url.starts_with("agi://") {
            agi::run(args).await
        } else {
            anyhow::bail!(
                "unsupported URL '{}': use audiosocket://HOST:PORT, agi://HOST:PORT/say?... or ws://HOST:PORT",
                args.url
            )
        }
    })
}

fn bot_options(args: &Args) -> bot::BotOptions {
    let mut opts = bot::BotOptions::default();
    if let Some(text) = &args.text {
        opts.text = text.clone();
    }
    opts
}

/// `xttsd call ws://HOST:PORT --uuid UUID`: the bot of a call Asterisk makes.
async fn run_bot_only(args: &Args) -> anyhow::Result<()> {
    let uuid = args
        .uuid
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--uuid is needed: the UUID the dialplan passes to AudioSocket"))?;
    let uuid = uuid::Uuid::parse_str(uuid).map_err(|e| anyhow::anyhow!("--uuid '{uuid}': {e}"))?;
    let ws = bot::connect(&args.url, uuid, args.token.as_deref()).await?;
    println!("bot of call {uuid}: waiting for the call's media");
    bot::drive(ws, &bot_options(args)).await?;
    Ok(())
}

/// `xttsd call audiosocket://… --bot ws://…`: both ends of a voicebot call at once.
async fn run_bot_call(mut args: Args) -> anyhow::Result<()> {
    let control = args.bot.take().expect("checked by the caller");
    let uuid = match &args.uuid {
        Some(text) => uuid::Uuid::parse_str(text).map_err(|e| anyhow::anyhow!("--uuid '{text}': {e}"))?,
        None => uuid::Uuid::new_v4(),
    };
    args.uuid = Some(uuid.to_string());
    // The bot first, so its greeting is made before the call connects.
    let ws = bot::connect(&control, uuid, args.token.as_deref()).await?;
    let opts = bot_options(&args);
    let bot = tokio::spawn(async move { bot::drive(ws, &opts).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    audiosocket::run(args).await?;
    let report = bot.await??;
    println!("bot saw {} events", report.events.len());
    Ok(())
}
