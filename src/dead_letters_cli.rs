//! `gymrelay dead-letters list|replay`: talks to the running relay's admin API (sled allows
//! one process per data directory, so the CLI cannot open the store itself).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::{Config, ConfigError};

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: Action,
    /// Config file of the running relay (for the admin address and token).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Admin API base URL; default: from the config's [admin] listen.
    #[arg(long, global = true)]
    pub admin_url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List dead letters with their reason and attempts.
    List {
        #[arg(long)]
        studio: Option<String>,
    },
    /// Put dead letters back into their studio's inbox: one by id, or all of a studio.
    Replay {
        /// Dead-letter id as listed (`<studio>:<n>`).
        #[arg(required_unless_present = "studio", conflicts_with = "studio")]
        id: Option<String>,
        #[arg(long)]
        studio: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the config has no [admin] token; the admin API needs one")]
    NoToken,
    #[error("admin API at {url}: {reason}")]
    Request { url: String, reason: String },
}

pub async fn run(args: DeadLettersArgs) -> Result<(), CliError> {
    let config = Config::load(crate::config::default_file(args.config).as_deref())?;
    let token = config.admin.token.as_ref().ok_or(CliError::NoToken)?;
    let base = args
        .admin_url
        .unwrap_or_else(|| format!("http://{}", reachable(config.admin.listen)));
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .bearer_auth(token.expose_secret())
        .finish();
    match args.action {
        Action::List { studio } => {
            let query = studio.map(|s| format!("?studio={s}")).unwrap_or_default();
            let answer = call(&client, "GET", &format!("{base}/api/dead-letters{query}")).await?;
            print_list(&answer);
        }
        Action::Replay { id, studio } => {
            let path = match (id, studio) {
                (Some(id), _) => format!("/api/dead-letters/{id}/replay"),
                (None, Some(studio)) => format!("/api/studios/{studio}/dead-letters/replay"),
                (None, None) => unreachable!("clap requires one"),
            };
            let answer = call(&client, "POST", &format!("{base}{path}")).await?;
            let replayed = answer["replayed"].as_array().map_or(0, Vec::len);
            for id in answer["replayed"].as_array().into_iter().flatten() {
                println!("replayed {}", id.as_str().unwrap_or_default());
            }
            println!("{replayed} dead letter(s) replayed");
        }
    }
    Ok(())
}

/// A wildcard listen address is reached through loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    }
}

async fn call(client: &awc::Client, method: &str, url: &str) -> Result<Value, CliError> {
    let fail = |reason: String| CliError::Request {
        url: url.to_string(),
        reason,
    };
    let request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    let mut response = request.send().await.map_err(|e| fail(e.to_string()))?;
    let body = response.body().await.map_err(|e| fail(e.to_string()))?;
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !response.status().is_success() {
        let reason = json["error"].as_str().unwrap_or("no reason given");
        return Err(fail(format!("{}: {reason}", response.status())));
    }
    Ok(json)
}

fn print_list(answer: &Value) {
    let letters = answer["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for l in &letters {
        let event = &l["event"];
        println!(
            "{}  {}  {}  entity {}  stage {}  attempts {}\n    {}",
            l["id"].as_str().unwrap_or_default(),
            event["event_type"].as_str().unwrap_or_default(),
            event["id"].as_str().unwrap_or_default(),
            event["entity_id"],
            l["stage"].as_str().unwrap_or_default(),
            event["attempts"].as_array().map_or(0, Vec::len),
            l["reason"].as_str().unwrap_or_default(),
        );
    }
    println!("{} dead letter(s)", letters.len());
}
