//! `xttsd call`: a client that behaves as Asterisk does, for testing a deployment without a
//! phone. It connects to a running daemon, records what comes back to a WAV and prints the
//! time to first audio frame, frame count, pacing jitter and gaps.

pub mod agi;
pub mod audiosocket;
pub mod report;

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `audiosocket://HOST:PORT` or `agi://HOST:PORT/say?voice=NAME&lang=xx`
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        if args.url.starts_with("audiosocket://") {
            audiosocket::run(args).await
        } else if args.url.starts_with("agi://") {
            agi::run(args).await
        } else {
            anyhow::bail!(
                "unsupported URL '{}': use audiosocket://HOST:PORT or agi://HOST:PORT/say?...",
                args.url
            )
        }
    })
}
