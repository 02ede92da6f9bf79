//! `gymrelay backup --to DIR`: asks the running relay for a copy of its store (see
//! `POST /api/backup`); `gymrelay restore --from DIR` puts it in place.

use std::path::PathBuf;

use crate::admin_client::{AdminApi, AdminArgs, CliError};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// A new or empty directory on the relay's machine.
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub async fn run(args: BackupArgs) -> Result<(), CliError> {
    let api = AdminApi::connect(args.admin)?;
    // The relay resolves a relative path against its own working directory, not ours.
    let to = std::path::absolute(&args.to).unwrap_or(args.to);
    let to = to.display().to_string();
    let answer = api.call_with("POST", "/api/backup", &[("to", &to)]).await?;
    println!(
        "backed up to {} in {:.2} s ({} bytes); `gymrelay restore --from` that directory puts it in place",
        answer["path"].as_str().unwrap_or_default(),
        answer["seconds"].as_f64().unwrap_or_default(),
        answer["bytes_on_disk"],
    );
    Ok(())
}
