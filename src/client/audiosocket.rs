//! The AudioSocket side of `xttsd call`.

pub async fn run(_args: super::Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
