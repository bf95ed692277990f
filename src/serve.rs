//! `xttsd serve`: the daemon.

use std::sync::Arc;

use crate::calls::CallRegistry;
use crate::config::Config;
use crate::engine::Engine;

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
    pub config: std::path::PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
