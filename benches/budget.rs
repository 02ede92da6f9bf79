//! `cargo bench --bench budget`: how much of its Open API budget a studio gets to use when the
//! Open API takes its time to answer, as the real one does (100-300 ms).
//!
//! One relay, one run, studios side by side whose simulated Open API answers in 0, 150 and
//! 400 ms (`GYMRELAY_BENCH_LATENCIES_MS=0,150,400`), each with the same per-endpoint budget
//! (`GYMRELAY_BENCH_BUDGET`, default the product's 900/min) and the simulator applying the
//! vendor's rule at that number (more than it in any sliding 60 s window: 429 for a minute).
//! Each studio has three minutes' worth of events for distinct customers queued up front, so it
//! never runs dry and no fetch is shared. The table gives, per latency, the fetches in each full
//! minute from that studio's first fetch, the second (steady) minute's share of the budget and
//! the 429s. The goal: at least 0.95 of the budget at every latency, and no 429.
//!
//! A relay that waits for each answer before the next request is capped by the latency (one in
//! flight at 400 ms is 150 a minute) however its limiter is tuned; `GYMRELAY_BENCH_MAX_IN_FLIGHT`
//! sets `open_api.max_in_flight` in the tenant files for relays that have it. Takes a little
//! over two minutes.

mod support;

use std::time::{Duration, Instant};

use gymrelay::simulate::{OpenApiSim, RecordedRequest, SimOptions, SimStudio};
use support::*;

/// The product's default `open_api.requests_per_minute`.
const DEFAULT_BUDGET: u32 = 900;
const DEFAULT_LATENCIES_MS: &str = "0,150,400";
/// What the product must reach at every latency.
const GOAL: f64 = 0.95;
const MINUTE: Duration = Duration::from_secs(60);
/// Full minutes measured per studio: the first holds the start, the second is the steady one.
const MINUTES: u32 = 2;
/// Events queued per POST round, sent concurrently.
const SEND_ROUND: usize = 64;

fn main() {
    let latencies = latencies_ms(DEFAULT_LATENCIES_MS);
    let budget: u32 = env_or("GYMRELAY_BENCH_BUDGET", DEFAULT_BUDGET);
    let dir = tempfile::tempdir().expect("temp dir");
    let system = actix_web::rt::System::new();
    let sim = system.block_on(start_sim(&latencies, budget));
    write_tenants(dir.path(), latencies.len(), budget, |id| sim.base_url(id));
    let relay = BenchRelay::start(config_in(dir.path()));
    let requests = system.block_on(async {
        let per_studio = budget as usize * 3;
        let started = Instant::now();
        queue_backlog(relay.addr, latencies.len(), per_studio).await;
        println!(
            "budget: {budget}/min per endpoint, the vendor's limit the same; {per_studio} events \
             queued per studio in {:.1} s; max_in_flight: {}",
            started.elapsed().as_secs_f64(),
            max_in_flight().map_or("not set".to_owned(), |m| m.to_string()),
        );
        wait_for_full_minutes(&sim, latencies.len()).await;
        let requests = sim.requests();
        // The relay stops first, while the simulator still answers the fetches it has in flight.
        stop_elsewhere(relay).await;
        sim.stop().await;
        requests
    });

    println!();
    println!(
        "latency  minute 1  minute 2  share of budget (minute 2)  429s  goal (>= {GOAL}, no 429)"
    );
    for (i, ms) in latencies.iter().enumerate() {
        let studio = Measured::of(&requests, &studio_id(i));
        let share = f64::from(studio.per_minute[1]) / f64::from(budget);
        let met = share >= GOAL && studio.too_many == 0;
        println!(
            "{:>4} ms  {:>8}  {:>8}  {:>26.2}  {:>4}  {}",
            ms,
            studio.per_minute[0],
            studio.per_minute[1],
            share,
            studio.too_many,
            if met { "met" } else { "not met" }
        );
    }
}

/// `BenchRelay::stop` runs a runtime of its own, which cannot start on this one's thread.
async fn stop_elsewhere(relay: BenchRelay) {
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        relay.stop();
        let _ = done.send(());
    });
    let _ = stopped.await;
}

fn studio_id(i: usize) -> String {
    format!("studio-{i}")
}

/// Studio `studio-<i>` answers after `latencies[i]` ms, every time.
async fn start_sim(latencies: &[u64], budget: u32) -> OpenApiSim {
    let studios = latencies
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let latency = Duration::from_millis(*ms);
            SimStudio::new(studio_id(i), format!("openapi-{i}")).with_latency(latency, latency)
        })
        .collect();
    let options = SimOptions {
        vendor_limit: Some(budget),
        ..SimOptions::default()
    };
    OpenApiSim::start_with("127.0.0.1:0".parse().unwrap(), studios, options)
        .await
        .expect("simulated Open API")
}

/// CUSTOMER_UPDATED for customers 1..=per_studio of every studio, the studios interleaved so
/// that their backlogs fill at the same pace.
async fn queue_backlog(relay: std::net::SocketAddr, studios: usize, per_studio: usize) {
    let url = format!("http://{relay}/webhook");
    let client = awc::Client::default();
    let all: Vec<(usize, usize)> = (0..per_studio)
        .flat_map(|n| (0..studios).map(move |s| (s, n)))
        .collect();
    for round in all.chunks(SEND_ROUND) {
        let sends = round.iter().map(|&(s, n)| {
            let body = notification(&format!("budget-{s}-{n}"), "CUSTOMER_UPDATED", 1 + n as u64);
            client
                .post(&url)
                .insert_header(("x-api-key", format!("key-{s}")))
                .send_body(body)
        });
        for answer in futures_util::future::join_all(sends).await {
            let status = answer.expect("relay answers").status();
            // A 401 here is a tenant file the relay refused (see the relay's log).
            assert_eq!(status, 200, "the relay refused an event");
        }
    }
}

/// Until every studio has fetched for `MINUTES` full minutes, or long past when one never
/// starts.
async fn wait_for_full_minutes(sim: &OpenApiSim, studios: usize) {
    let span = MINUTE * MINUTES + Duration::from_secs(1);
    let give_up = Instant::now() + span + MINUTE;
    while Instant::now() < give_up {
        let requests = sim.requests();
        let firsts: Option<Vec<Instant>> = (0..studios)
            .map(|i| first_fetch(&requests, &studio_id(i)))
            .collect();
        if let Some(latest) = firsts.and_then(|f| f.into_iter().max()) {
            if latest.elapsed() >= span {
                return;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    println!("a studio never fetched; its row is empty");
}

fn first_fetch(requests: &[RecordedRequest], studio: &str) -> Option<Instant> {
    requests.iter().find(|r| r.studio == studio).map(|r| r.at)
}

/// One studio's fetches, counted from its own first fetch.
struct Measured {
    per_minute: [u32; MINUTES as usize],
    too_many: usize,
}

impl Measured {
    fn of(requests: &[RecordedRequest], studio: &str) -> Measured {
        let mut measured = Measured {
            per_minute: [0; MINUTES as usize],
            too_many: 0,
        };
        let Some(first) = first_fetch(requests, studio) else {
            return measured;
        };
        for r in requests.iter().filter(|r| r.studio == studio) {
            let minute = ((r.at - first).as_secs() / MINUTE.as_secs()) as usize;
            if let Some(count) = measured.per_minute.get_mut(minute) {
                *count += 1;
            }
            if r.status == 429 {
                measured.too_many += 1;
            }
        }
        measured
    }
}
