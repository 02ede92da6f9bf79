//! `gymrelay dead-letters list|replay`: talks to the running relay's admin API (sled allows
//! one process per data directory, so the CLI cannot open the store itself).

use serde_json::Value;

use crate::admin_client::CliError;
use crate::admin_client::{AdminApi, AdminArgs};

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub admin: AdminArgs,
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

pub async fn run(args: DeadLettersArgs) -> Result<(), CliError> {
    let api = AdminApi::connect(args.admin)?;
    match args.action {
        Action::List { studio } => {
            let query = studio.map(|s| format!("?studio={s}")).unwrap_or_default();
            let answer = api
                .call("GET", &format!("/api/dead-letters{query}"))
                .await?;
            print_list(&answer);
        }
        Action::Replay { id, studio } => {
            let path = match (id, studio) {
                (Some(id), _) => format!("/api/dead-letters/{id}/replay"),
                (None, Some(studio)) => format!("/api/studios/{studio}/dead-letters/replay"),
                (None, None) => unreachable!("clap requires one"),
            };
            let answer = api.call("POST", &path).await?;
            let replayed = answer["replayed"].as_array().map_or(0, Vec::len);
            for id in answer["replayed"].as_array().into_iter().flatten() {
                println!("replayed {}", id.as_str().unwrap_or_default());
            }
            println!("{replayed} dead letter(s) replayed");
        }
    }
    Ok(())
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
