//! `gymrelay restore --from DIR`: puts a backup (from `gymrelay backup`) in place as the store
//! of a stopped relay, at `storage.path`, and checks that it opens.

use std::path::PathBuf;

use crate::config::{default_file, ConfigError};
use crate::store::{RestoreError, Store};
use crate::Config;

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup's directory, as `gymrelay backup --to` wrote it.
    #[arg(long)]
    pub from: PathBuf,
    /// Config file whose storage.path receives the backup; without it ./gymrelay.toml if
    /// present, else built-in defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A restore that did not happen, naming the option or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum RestoreCliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--from {0}")]
    From(RestoreError),
    #[error("storage.path {0}")]
    Target(RestoreError),
}

pub async fn run(args: RestoreArgs) -> Result<(), RestoreCliError> {
    let config = Config::load(default_file(args.config).as_deref())?;
    let settings = config.storage.store_settings();
    let pending = Store::restore(&args.from, &settings)
        .await
        .map_err(|e| match e {
            RestoreError::NotABackup { .. } => RestoreCliError::From(e),
            _ => RestoreCliError::Target(e),
        })?;
    let total: usize = pending.iter().map(|(_, n)| n).sum();
    let by_studio: Vec<String> = pending
        .iter()
        .map(|(studio, n)| format!("{studio} {n}"))
        .collect();
    println!(
        "restored {} into {}: {total} event(s) waiting{}; start the relay to deliver them",
        args.from.display(),
        settings.path.display(),
        if by_studio.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_studio.join(", "))
        },
    );
    Ok(())
}
