use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gymrelay::{Config, Relay};

/// Receives PerfectGym Next webhooks for many studios, enriches them from each studio's
/// Open API and hands them to your application.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
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
    /// Run the relay with a simulated PerfectGym Next (two studios) for a first look.
    Demo(gymrelay::demo::DemoArgs),
    /// Run the stand-in PerfectGym Next on its own (Open API and webhook sender).
    Simulate(gymrelay::simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's own output is the point; its relay only speaks up when something is wrong.
    init_logging(match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    });
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Check(args) => gymrelay::check::run(args).await.map_err(Into::into),
            Command::Demo(args) => gymrelay::demo::run(args).await.map_err(Into::into),
            Command::Simulate(args) => gymrelay::simulate::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gymrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let file = config.or_else(|| {
        let default = PathBuf::from("gymrelay.toml");
        default.exists().then_some(default)
    });
    let config = Config::load(file.as_deref())?;
    let relay = Relay::start(&config).await?;
    relay.run().await.context("server failed")
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
