//! `gymrelay erase --studio S --customer ID`: asks the running relay to remove what it keeps of
//! one member (see `POST /api/studios/{id}/erase`), and prints what was removed.

use std::path::PathBuf;

use crate::admin_client::{AdminApi, CliError};

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[arg(long)]
    pub studio: String,
    /// The member's customer id (the `entityId` of their CUSTOMER_* and CONTRACT_* events).
    #[arg(long)]
    pub customer: i64,
    /// Config file of the running relay (for the admin address and token).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Admin API base URL; default: from the config's [admin] listen.
    #[arg(long)]
    pub admin_url: Option<String>,
}

pub async fn run(args: EraseArgs) -> Result<(), CliError> {
    let api = AdminApi::connect(args.config, args.admin_url)?;
    let path = format!(
        "/api/studios/{}/erase?customer={}",
        args.studio, args.customer
    );
    let answer = api.call("POST", &path).await?;
    let removed = &answer["removed"];
    println!(
        "studio {}: removed {} dead letter(s) and {} recent-activity entr(ies); {} event(s) still waiting will be delivered with a fresh answer; no Open API answer is stored",
        args.studio,
        removed["dead_letters"],
        removed["recent_activity"],
        answer["pending_events"],
    );
    Ok(())
}
