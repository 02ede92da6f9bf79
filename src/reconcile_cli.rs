//! `gymrelay reconcile --studio S [--emit-all] [--no-wait]`: asks the running relay to sweep a
//! studio's customers (see `POST /api/studios/{id}/reconcile`) and follows it to the end.

use std::time::Duration;

use serde_json::Value;

use crate::admin_client::{AdminApi, AdminArgs, CliError};

/// How often the sweep's progress is asked for.
const POLL_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[arg(long)]
    pub studio: String,
    /// Emit every customer, changed or not (also on a studio's first sweep, which otherwise
    /// only records a baseline).
    #[arg(long)]
    pub emit_all: bool,
    /// Return once the sweep is started instead of following it to the end.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub async fn run(args: ReconcileArgs) -> Result<(), CliError> {
    let api = AdminApi::connect(args.admin)?;
    let path = format!("/api/studios/{}/reconcile", args.studio);
    let emit_all = args.emit_all.to_string();
    let started = api
        .call_with("POST", &path, &[("emit_all", &emit_all)])
        .await?;
    let running = &started["running"];
    let started_ms = running["started_ms"].as_i64();
    if running["baseline"] == true && !args.emit_all {
        println!(
            "studio {}: first sweep: it records a baseline and emits nothing (--emit-all to emit every customer)",
            args.studio
        );
    }
    if args.no_wait {
        println!("studio {}: reconcile sweep started", args.studio);
        return Ok(());
    }
    // Another sweep can start as soon as ours ends (one asked for meanwhile, or `every`):
    // ours is the one that started when we asked.
    let ours = |sweep: &Value| started_ms.is_some() && sweep["started_ms"].as_i64() == started_ms;
    let mut shown_pages = None;
    loop {
        actix_web::rt::time::sleep(POLL_EVERY).await;
        let now = api.call("GET", &path).await?;
        if ours(&now["running"]) {
            let pages = now["running"]["progress"]["pages"].as_u64();
            if pages != shown_pages {
                shown_pages = pages;
                eprintln!("{}", progress_line(&now["running"]));
            }
            continue;
        }
        if ours(&now["last"]) {
            println!(
                "studio {}: reconcile finished: {}",
                args.studio,
                progress_line(&now["last"])
            );
            return Ok(());
        }
        let reason = match now["failure"].as_str() {
            Some(failure) => format!("the sweep was given up: {failure}"),
            None => "the sweep ended without finishing, and another one has started since".into(),
        };
        return Err(CliError::Request { url: path, reason });
    }
}

fn progress_line(sweep: &Value) -> String {
    let p = &sweep["progress"];
    format!(
        "{} page(s), {} customer(s): {} added, {} changed, {} deleted; {} event(s) emitted, {} request(s)",
        p["pages"], p["customers"], p["added"], p["changed"], p["deleted"], p["emitted"], p["requests"]
    )
}
