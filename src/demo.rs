//! `gymrelay demo`: the relay and a simulated PerfectGym Next with two studios in one process,
//! printing each enriched event as the file sinks receive it.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::simulate::{send_events, OpenApiSim, SendPlan, SimOptions, SimStudio};
use crate::Relay;

/// The two demo studios: id, webhook key, Open API key.
const STUDIOS: [(&str, &str, &str); 2] = [
    ("berlin-mitte", "demo-webhook-berlin", "demo-openapi-berlin"),
    (
        "hamburg-altona",
        "demo-webhook-hamburg",
        "demo-openapi-hamburg",
    ),
];

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its tenants, data and output (recreated on each run).
    #[arg(long, default_value = "gymrelay-demo")]
    pub dir: PathBuf,
    /// Address of the relay's webhook listener.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Webhooks per second per studio.
    #[arg(long, default_value_t = 3.0)]
    pub rate: f64,
    /// Stop after this many delivered events (default: run until Ctrl-C).
    #[arg(long)]
    pub stop_after: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("simulated Open API: {0}")]
    Simulator(std::io::Error),
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    prepare_dir(&dir)?;
    let sim_studios = STUDIOS
        .iter()
        .map(|(id, _, key)| SimStudio::new(*id, *key))
        .collect();
    let options = SimOptions {
        // Nothing here reads the log, and a demo may be left running.
        record_requests: false,
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), sim_studios, options)
        .await
        .map_err(DemoError::Simulator)?;
    let outputs = write_tenants(&dir, &sim)?;

    let mut config = Config::default();
    config.http.listen = args.listen;
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.storage.path = dir.join("data");
    config.tenants.dir = dir.join("tenants");
    let relay = Relay::start(&config).await?;
    let webhook_url = format!("http://{}/webhook", relay.addr());
    let admin_url = format!("http://{}", relay.admin_addr());
    let handle = relay.handle();
    let relay_task = actix_web::rt::spawn(relay.run());

    println!("gymrelay demo");
    println!("  relay:     POST {webhook_url}");
    println!("  metrics:   {admin_url}/metrics");
    println!("  open api:  http://{} (simulated, 2 studios)", sim.addr());
    println!("  tenants:   {}", dir.join("tenants").display());
    for path in outputs.values() {
        println!("  output:    {}", path.display());
    }
    println!("  Ctrl-C to stop\n");

    let senders: Vec<_> = STUDIOS
        .iter()
        .enumerate()
        .map(|(i, (_, webhook_key, _))| {
            let plan = SendPlan {
                relay_url: webhook_url.clone(),
                webhook_key: webhook_key.to_string(),
                count: usize::MAX / 2,
                per_second: args.rate,
                duplicate_ratio: 0.1,
                seed: i as u64 + 42,
            };
            actix_web::rt::spawn(async move { send_events(&plan).await })
        })
        .collect();

    let delivered = tail(&outputs, args.stop_after).await;

    for sender in &senders {
        sender.abort();
    }
    handle.stop().await;
    let _ = relay_task.await;
    sim.stop().await;
    println!(
        "\n{delivered} enriched events delivered; NDJSON files are in {}",
        dir.join("out").display()
    );
    Ok(())
}

fn prepare_dir(dir: &Path) -> Result<(), DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    for sub in ["data", "out", "tenants"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        std::fs::create_dir_all(&path).map_err(io(&path))?;
    }
    Ok(())
}

/// Writes one tenant file per demo studio; returns each studio's output file.
fn write_tenants(dir: &Path, sim: &OpenApiSim) -> Result<HashMap<String, PathBuf>, DemoError> {
    let mut outputs = HashMap::new();
    for (id, webhook_key, open_api_key) in STUDIOS {
        let out = dir.join("out").join(format!("{id}.ndjson"));
        let text = format!(
            "name = {name:?}\nwebhook_api_keys = [{webhook_key:?}]\n\n[open_api]\nbase_url = {url:?}\napi_key = {open_api_key:?}\nrequests_per_minute = 900\n\n[[sinks]]\ntype = \"file\"\npath = {out:?}\n",
            name = id,
            url = sim.base_url(id),
            out = out.display().to_string(),
        );
        let path = dir.join("tenants").join(format!("{id}.toml"));
        std::fs::write(&path, text).map_err(|source| DemoError::Io { path, source })?;
        outputs.insert(id.to_string(), out);
    }
    Ok(outputs)
}

/// Prints new lines of the output files until Ctrl-C or `stop_after` events.
async fn tail(outputs: &HashMap<String, PathBuf>, stop_after: Option<usize>) -> usize {
    let mut offsets: HashMap<&PathBuf, u64> = HashMap::new();
    let mut delivered = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return delivered,
            _ = actix_web::rt::time::sleep(Duration::from_millis(200)) => {}
        }
        for path in outputs.values() {
            let offset = offsets.entry(path).or_insert(0);
            for line in new_lines(path, offset) {
                delivered += 1;
                println!("{}", describe(&line));
                if stop_after.is_some_and(|n| delivered >= n) {
                    return delivered;
                }
            }
        }
    }
}

fn new_lines(path: &Path, offset: &mut u64) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut text = String::new();
    if file.seek(SeekFrom::Start(*offset)).is_err() || file.read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    // Only whole lines; a partial last line is read again next time.
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    *offset += complete as u64;
    text[..complete].lines().map(str::to_string).collect()
}

/// One line per event: studio, type, entity, outcome and a glimpse of the fetched entity.
fn describe(line: &str) -> String {
    let Ok(event) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let status = s(&event["enrichment"]["status"]);
    let detail = match status.as_str() {
        "fetched" => format!(
            "{} -> {}",
            s(&event["enrichment"]["request"]),
            glimpse(&event["entity"])
        ),
        "not_found" => format!("{} -> 404", s(&event["enrichment"]["request"])),
        _ => s(&event["enrichment"]["reason"]),
    };
    format!(
        "{:<15} {:<42} entity {:<6} {:<9} {}",
        s(&event["studio"]),
        s(&event["type"]),
        event["entityId"].to_string(),
        status,
        detail
    )
}

fn glimpse(entity: &Value) -> String {
    match entity {
        Value::Array(items) => format!("{} items", items.len()),
        Value::Object(map) => {
            let field = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
            if map.contains_key("firstName") {
                format!(
                    "{} {} ({})",
                    field("firstName"),
                    field("lastName"),
                    field("status")
                )
            } else if let Some(status) = map.get("bookingStatus").and_then(Value::as_str) {
                format!("booking {status}")
            } else {
                format!("{} fields", map.len())
            }
        }
        other => other.to_string(),
    }
}
