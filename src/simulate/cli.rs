//! `gymrelay simulate`: the stand-in vendor on its own, for trying a relay by hand.

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::error::ErrorKind;

use super::latency::Latency;
use super::open_api::{OpenApiSim, SimOptions};
use super::sender::{send_events, SendPlan, SendReport};
use super::studio::SimStudio;

/// Studios served when none are given, matching the demo tenant files.
const DEFAULT_STUDIOS: &[(&str, &str)] = &[
    ("berlin-mitte", "demo-openapi-berlin"),
    ("hamburg-altona", "demo-openapi-hamburg"),
];

/// Shown under `gymrelay simulate --help`: the routes that are not the vendor's.
const CONTROL_HELP: &str = "\
Changing customers (to try reconcile by hand), with the studio's Open API key as x-api-key:
  PATCH  /{studio}/v1/customers/{id}  JSON object body: fields to set (the id stays)
                                      200 with the new record, 404 if none, 400 if not an object
  POST   /{studio}/v1/customers       JSON object body: a new customer above every id so far
                                      201 with the new record
  DELETE /{studio}/v1/customers/{id}  204, 404 if none
GET /v1/customers/{id} and the list show the change at once. These writes are not counted
against --vendor-limit and do not wait for --latency.";

/// Options of `gymrelay simulate`.
#[derive(Clone, clap::Args)]
#[command(after_help = CONTROL_HELP)]
pub struct SimulateArgs {
    /// Address of the simulated Open API; every studio lives under /{studio_id}.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// A studio and its Open API key; repeat for more. Default: berlin-mitte and hamburg-altona
    /// with the keys demo-openapi-berlin and demo-openapi-hamburg.
    #[arg(long = "studio", value_name = "ID:OPEN_API_KEY", value_parser = StudioParser)]
    pub studios: Vec<SimStudio>,
    /// Apply the vendor's rate rule: more than N requests per endpoint within the window locks
    /// that endpoint (429) for a full window.
    #[arg(long, value_name = "N")]
    pub vendor_limit: Option<u32>,
    /// Window of the vendor's rate rule, in seconds (the vendor uses 60).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub vendor_window: u64,
    /// How long every studio takes to answer: fixed (150ms) or uniform in a range (10ms..300ms).
    /// Real Open API round trips take 100-300 ms; the default answers at once.
    #[arg(long, value_name = "MIN[..MAX]", default_value_t = Latency::default())]
    pub latency: Latency,
    /// Also fire webhook notifications at this relay URL, e.g. http://127.0.0.1:8080/webhook.
    #[arg(long, value_name = "URL")]
    pub send_to: Option<String>,
    /// The studio's webhook key to send with.
    #[arg(
        long,
        value_name = "KEY",
        env = "GYMRELAY_SIMULATE_WEBHOOK_KEY",
        hide_env_values = true
    )]
    pub webhook_key: Option<String>,
    /// Number of notifications to send, resends included.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Notifications per second; 0 sends as fast as possible, one at a time.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Share of sends that repeat an earlier notification, as vendor redeliveries do.
    #[arg(long, default_value_t = 0.1)]
    pub duplicates: f64,
    /// Seed for the event mix and uuids.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop once every notification is sent instead of serving until Ctrl-C.
    #[arg(long, requires = "send_to")]
    pub exit_after_send: bool,
}

/// Keeps the webhook key out of debug output.
impl fmt::Debug for SimulateArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulateArgs")
            .field("listen", &self.listen)
            .field("studios", &self.studios)
            .field("vendor_limit", &self.vendor_limit)
            .field("vendor_window", &self.vendor_window)
            .field("latency", &self.latency)
            .field("send_to", &self.send_to)
            .field(
                "webhook_key",
                &self.webhook_key.as_ref().map(|_| "<redacted>"),
            )
            .field("count", &self.count)
            .field("rate", &self.rate)
            .field("duplicates", &self.duplicates)
            .field("seed", &self.seed)
            .field("exit_after_send", &self.exit_after_send)
            .finish()
    }
}

/// Parses `ID:OPEN_API_KEY` without echoing the value in errors, as clap's default would: it
/// holds a key.
#[derive(Clone)]
struct StudioParser;

impl clap::builder::TypedValueParser for StudioParser {
    type Value = SimStudio;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<SimStudio, clap::Error> {
        let invalid = |message: String| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n")).with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("--studio must be UTF-8".to_owned()))?;
        text.parse()
            .map_err(|e| invalid(format!("invalid --studio value: {e}")))
    }
}

/// Serves the Open API until Ctrl-C, optionally sending notifications meanwhile.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let plan = match (&args.send_to, &args.webhook_key) {
        (Some(url), Some(key)) => Some(SendPlan {
            relay_url: url.clone(),
            webhook_key: key.clone(),
            count: args.count,
            per_second: args.rate,
            duplicate_ratio: args.duplicates,
            seed: args.seed,
        }),
        (Some(_), None) => {
            bail!("--send-to needs --webhook-key (or GYMRELAY_SIMULATE_WEBHOOK_KEY)")
        }
        (None, _) => None,
    };
    if !(0.0..=1.0).contains(&args.duplicates) {
        bail!("--duplicates must be between 0 and 1");
    }
    if !args.rate.is_finite() || args.rate < 0.0 {
        bail!("--rate must be 0 or a positive number");
    }

    let studios = if args.studios.is_empty() {
        DEFAULT_STUDIOS
            .iter()
            .map(|(id, key)| SimStudio::new(*id, *key))
            .collect()
    } else {
        args.studios.clone()
    };
    let studios: Vec<SimStudio> = studios
        .into_iter()
        .map(|s| s.with_latency(args.latency.min(), args.latency.max()))
        .collect();
    let ids: Vec<String> = studios.iter().map(|s| s.id.clone()).collect();
    let options = SimOptions {
        vendor_limit: args.vendor_limit,
        limit_window: Duration::from_secs(args.vendor_window.max(1)),
        // Nothing here reads the log, and the simulator may run for days.
        record_requests: false,
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with(args.listen, studios, options)
        .await
        .with_context(|| format!("starting the Open API simulator on {}", args.listen))?;

    println!(
        "simulated PerfectGym Next Open API on http://{}",
        sim.addr()
    );
    for id in &ids {
        println!("  {id:<20} base_url = {}", sim.base_url(id));
    }
    println!("  customers can be changed with PATCH, POST and DELETE (see --help)");
    if let Some(limit) = args.vendor_limit {
        println!(
            "  vendor limit: {limit} requests per endpoint per {} s",
            args.vendor_window.max(1)
        );
    }
    if !args.latency.is_zero() {
        println!("  latency: {} per answer", args.latency);
    }

    let result = serve(plan, args.exit_after_send).await;
    sim.stop().await;
    result
}

async fn serve(plan: Option<SendPlan>, exit_after_send: bool) -> anyhow::Result<()> {
    if let Some(plan) = plan {
        println!(
            "sending {} notifications to {} at {}",
            plan.count,
            plan.relay_url,
            if plan.per_second > 0.0 {
                format!("{}/s", plan.per_second)
            } else {
                "full speed".to_owned()
            }
        );
        tokio::select! {
            report = send_events(&plan) => print_report(&report),
            stopped = tokio::signal::ctrl_c() => {
                return stopped.context("waiting for Ctrl-C");
            }
        }
        if exit_after_send {
            return Ok(());
        }
    }
    println!("Ctrl-C to stop");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
}

fn print_report(report: &SendReport) {
    println!(
        "sent {}: {} accepted, {} duplicates, {} rejected, {} transport errors",
        report.sent, report.accepted, report.duplicates, report.rejected, report.errors
    );
}
