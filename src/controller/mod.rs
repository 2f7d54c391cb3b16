//! The controller shell (placeholder while the pure core is built).
#[derive(clap::Args)]
pub struct RunArgs {}
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
