//! `gymrelay erase --studio S --customer ID`: asks the running relay to remove what it keeps of
//! one member (see `POST /api/studios/{id}/erase`), and prints what was removed.

use crate::admin_client::{AdminApi, AdminArgs, CliError};

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[arg(long)]
    pub studio: String,
    /// The member's customer id (the `entityId` of their CUSTOMER_* and CONTRACT_* events).
    #[arg(long)]
    pub customer: i64,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub async fn run(args: EraseArgs) -> Result<(), CliError> {
    let api = AdminApi::connect(args.admin)?;
    let path = format!("/api/studios/{}/erase", args.studio);
    let customer = args.customer.to_string();
    let answer = api
        .call_with("POST", &path, &[("customer", &customer)])
        .await?;
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
