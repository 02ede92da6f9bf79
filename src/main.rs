use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gymrelay::config::{default_file, LogFormat};
use gymrelay::{Config, Relay};

/// Receives PerfectGym Next webhooks for many studios, enriches them from each studio's
/// Open API and hands them to your application.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on stderr (default: [log] format in the config, else text). Filter with RUST_LOG.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// Config file; without it ./gymrelay.toml is used if present, else built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check the config and every tenant file; exit non-zero if anything is wrong.
    Check(gymrelay::check::CheckArgs),
    /// List or replay dead letters of the running relay (through its admin API).
    DeadLetters(gymrelay::dead_letters_cli::DeadLettersArgs),
    /// Copy the running relay's store to a new directory, while it runs.
    Backup(gymrelay::backup_cli::BackupArgs),
    /// Put a backup in place as the store of a stopped relay (at the config's storage.path).
    Restore(gymrelay::restore_cli::RestoreArgs),
    /// Remove what the running relay keeps of one member (a GDPR erasure request).
    Erase(gymrelay::erase_cli::EraseArgs),
    /// Sweep a studio's customers in the Open API and emit what changed since the last sweep
    /// (through the running relay's admin API).
    Reconcile(gymrelay::reconcile_cli::ReconcileArgs),
    /// Run the relay with a simulated PerfectGym Next (two studios) for a first look.
    Demo(gymrelay::demo::DemoArgs),
    /// Run the stand-in PerfectGym Next on its own (Open API and webhook sender).
    Simulate(gymrelay::simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    // `serve` sets up logging itself, once its config says which format; the demo's own output
    // is the point, so its relay only speaks up when something is wrong.
    match cli.command {
        Command::Serve { .. } => {}
        Command::Demo(_) => init_logging(format.unwrap_or_default(), "warn"),
        _ => init_logging(format.unwrap_or_default(), "info"),
    }
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config, format).await,
            Command::Check(args) => gymrelay::check::run(args).await.map_err(Into::into),
            Command::DeadLetters(args) => gymrelay::dead_letters_cli::run(args)
                .await
                .map_err(Into::into),
            Command::Backup(args) => gymrelay::backup_cli::run(args).await.map_err(Into::into),
            Command::Restore(args) => gymrelay::restore_cli::run(args).await.map_err(Into::into),
            Command::Erase(args) => gymrelay::erase_cli::run(args).await.map_err(Into::into),
            Command::Reconcile(args) => {
                gymrelay::reconcile_cli::run(args).await.map_err(Into::into)
            }
            Command::Demo(args) => gymrelay::demo::run(args).await.map_err(Into::into),
            Command::Simulate(args) => gymrelay::simulate::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gymrelay: {e:#}");
            if sync_failed(&e) {
                ExitCode::from(gymrelay::app::SYNC_FAILED_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Whether the relay stopped because a storage sync failed (it is then to be restarted).
fn sync_failed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<gymrelay::app::SyncFailed>())
    })
}

async fn serve(config: Option<PathBuf>, format: Option<LogFormat>) -> anyhow::Result<()> {
    let config = Config::load(default_file(config).as_deref())?;
    init_logging(format.unwrap_or(config.log.format), "info");
    let relay = Relay::start(&config).await?;
    relay.run().await.context("server failed")
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
