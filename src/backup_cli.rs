//! `gymrelay backup --to DIR`: asks the running relay for a copy of its store (see
//! `POST /api/backup`); start a relay with `storage.path = DIR` to use it.

use std::path::PathBuf;

use crate::admin_client::{AdminApi, CliError};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// A new or empty directory on the relay's machine.
    #[arg(long)]
    pub to: PathBuf,
    /// Config file of the running relay (for the admin address and token).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Admin API base URL; default: from the config's [admin] listen.
    #[arg(long)]
    pub admin_url: Option<String>,
}

pub async fn run(args: BackupArgs) -> Result<(), CliError> {
    let api = AdminApi::connect(args.config, args.admin_url)?;
    // The relay resolves a relative path against its own working directory, not ours.
    let to = std::path::absolute(&args.to).unwrap_or(args.to);
    let query: String = url_encode(&to.display().to_string());
    let answer = api.call("POST", &format!("/api/backup?to={query}")).await?;
    println!(
        "backed up to {} in {:.2} s ({} bytes); start a relay with storage.path = that directory to use it",
        answer["path"].as_str().unwrap_or_default(),
        answer["seconds"].as_f64().unwrap_or_default(),
        answer["bytes_on_disk"],
    );
    Ok(())
}

/// Percent-encodes what a query value cannot hold as it is.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
