//! `cargo bench --bench reconcile`: what a reconcile sweep costs live webhooks. One relay, and
//! per simulated Open API latency two studios side by side that differ only in that one of them
//! sweeps its customers all along (`emit_all`, started again each time it ends) while both get
//! the same steady webhooks for random customers, each event needing a fetch. Each studio's http
//! sink is a receiver in this process; only the live events (the ids this bench sent) are timed,
//! from sending the webhook to its arrival at the receiver. The goal, from the issue: live p50
//! and p99 within 2x of the studio without a sweep, the sweep still ending, and no 429.
//!
//! GYMRELAY_BENCH_SECS sets the measured window (default 45: a sweep of 20,000 customers at
//! 150 ms takes about 35 s, one page after the other), GYMRELAY_BENCH_LATENCIES_MS the
//! Open API's answer times (default 10,150; GYMRELAY_BENCH_LATENCY_MS one of them only),
//! GYMRELAY_BENCH_RATE the webhooks per second per studio (default 10), GYMRELAY_BENCH_CUSTOMERS
//! each studio's customers (default 20,000), GYMRELAY_BENCH_BUDGET the per-endpoint budget, the
//! simulator applying the vendor's rule at the same number (default the product's 900/min), and
//! GYMRELAY_BENCH_SINK_MS how long the receiver takes to answer each POST (default 0, loopback
//! only; a receiver across a network takes its round trip).

mod support;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use gymrelay::event::now_millis;
use gymrelay::reconcile::{Finished, Progress, Sweep, SweepRecord, PAGE_SIZE};
use gymrelay::simulate::{OpenApiSim, RecordedRequest, SimOptions, SimStudio};
use gymrelay::Relay;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use support::*;

const DEFAULT_LATENCIES_MS: &str = "10,150";
const DEFAULT_BUDGET: u32 = 900;
/// Live event types, each needing `GET /v1/customers/{id}`.
const LIVE_TYPES: [&str; 4] = [
    "CUSTOMER_UPDATED",
    "CUSTOMER_CHECKIN",
    "CUSTOMER_CHECKOUT",
    "CUSTOMER_CREATED",
];
const ADMIN_TOKEN: &str = "bench";
/// How often the sweeps' state is read, and an ended one started again.
const POLL: Duration = Duration::from_millis(100);
/// Pages each sweep has done before the first live webhook, so that it is in full swing; it
/// gives up waiting after `WARM_UP_AT_MOST`.
const WARM_UP_PAGES: u64 = 3;
const WARM_UP_AT_MOST: Duration = Duration::from_secs(30);
/// What a ratio must stay within.
const GOAL: f64 = 2.0;

struct Settings {
    rate: u64,
    customers: u32,
    budget: u32,
    duration: Duration,
    sink_answers_after: Duration,
}

/// Studios come in pairs, the quiet one first: `studios[2k]` and `studios[2k + 1]`.
struct Studio {
    id: String,
    latency_ms: u64,
    sweeps: bool,
}

/// What one run saw.
struct Run {
    /// Live events: studio index, event id, when its webhook was sent.
    sent: Vec<(usize, String, Instant)>,
    arrived: HashMap<String, Instant>,
    requests: Vec<RecordedRequest>,
    /// Each sweeping studio's sweeps at the start and the end of the window.
    at_start: Vec<Option<Tally>>,
    at_end: Vec<Option<Tally>>,
    window: Duration,
    /// The window, in the reconcile record's clock (milliseconds since the epoch).
    window_ms: (i64, i64),
}

fn main() {
    let latencies = match std::env::var("GYMRELAY_BENCH_LATENCY_MS") {
        Ok(_) => vec![env_or("GYMRELAY_BENCH_LATENCY_MS", 10)],
        Err(_) => latencies_ms(DEFAULT_LATENCIES_MS),
    };
    let settings = Settings {
        rate: env_or("GYMRELAY_BENCH_RATE", 10u64).max(1),
        customers: env_or("GYMRELAY_BENCH_CUSTOMERS", 20_000),
        budget: env_or("GYMRELAY_BENCH_BUDGET", DEFAULT_BUDGET),
        duration: seconds(45),
        sink_answers_after: Duration::from_millis(env_or("GYMRELAY_BENCH_SINK_MS", 0)),
    };
    let studios: Vec<Studio> = latencies
        .iter()
        .flat_map(|&latency_ms| {
            [("quiet", false), ("sweeping", true)].map(|(name, sweeps)| Studio {
                id: format!("{name}-{latency_ms}"),
                latency_ms,
                sweeps,
            })
        })
        .collect();
    let run = actix_web::rt::System::new().block_on(measure(&settings, &studios));
    report(&settings, &studios, &run);
}

async fn measure(settings: &Settings, studios: &[Studio]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let sims = studios
        .iter()
        .map(|s| {
            let latency = Duration::from_millis(s.latency_ms);
            SimStudio::new(&s.id, format!("openapi-{}", s.id))
                .with_customers(settings.customers)
                .with_latency(latency, latency)
        })
        .collect();
    let options = SimOptions {
        vendor_limit: Some(settings.budget),
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with("127.0.0.1:0".parse().unwrap(), sims, options)
        .await
        .expect("simulated Open API");
    let (receiver, receiver_handle, arrivals) = start_receiver(settings.sink_answers_after);
    // The same file for both studios of a pair: only the sweep tells them apart.
    for s in studios {
        let base_url = sim.base_url(&s.id);
        write_http_tenant(dir.path(), &s.id, &base_url, settings.budget, "", receiver);
    }
    let mut config = config_in(dir.path());
    config.admin.token = Some(SecretString::from(ADMIN_TOKEN));
    let relay = Relay::start(&config).await.expect("relay");
    let url = format!("http://{}/webhook", relay.addr());
    let admin = format!("http://{}/api/studios", relay.admin_addr());
    let handle = relay.handle();
    let running = actix_web::rt::spawn(relay.run());

    let stop_sweeping = Rc::new(Cell::new(false));
    let tallies: Vec<Option<Rc<RefCell<Tally>>>> = studios
        .iter()
        .map(|s| {
            s.sweeps.then(|| {
                let tally = Rc::default();
                actix_web::rt::spawn(keep_sweeping(
                    format!("{admin}/{}/reconcile", s.id),
                    Rc::clone(&tally),
                    Rc::clone(&stop_sweeping),
                ));
                tally
            })
        })
        .collect();
    let tallied = || -> Vec<Option<Tally>> {
        let copy = |t: &Rc<RefCell<Tally>>| t.borrow().clone();
        tallies.iter().map(|t| t.as_ref().map(copy)).collect()
    };
    let warm_up = Instant::now();
    while tallied()
        .iter()
        .flatten()
        .any(|t| t.pages() < WARM_UP_PAGES)
        && warm_up.elapsed() < WARM_UP_AT_MOST
    {
        actix_web::rt::time::sleep(POLL).await;
    }

    let client = awc::Client::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut sent = Vec::new();
    let at_start = tallied();
    let (started, started_ms) = (Instant::now(), now_millis());
    let mut n = 0u64;
    while started.elapsed() < settings.duration {
        let event_type = LIVE_TYPES[rng.gen_range(0..LIVE_TYPES.len())];
        let customer = rng.gen_range(1..=u64::from(settings.customers));
        // Which studio of a pair goes first alternates, so neither always waits for the other.
        for pair in (0..studios.len()).step_by(2) {
            for k in 0..2 {
                let s = pair + (k + n as usize) % 2;
                let id = &studios[s].id;
                let uuid = format!("live-{id}-{n}");
                let at = Instant::now();
                let answer = client
                    .post(&url)
                    .insert_header(("x-api-key", format!("key-{id}")))
                    .send_body(notification(&uuid, event_type, customer))
                    .await
                    .expect("relay answers");
                assert_eq!(answer.status(), 200, "the relay refused a webhook");
                sent.push((s, uuid, at));
            }
        }
        n += 1;
        let next = started + Duration::from_secs_f64(n as f64 / settings.rate as f64);
        actix_web::rt::time::sleep_until(next.into()).await;
    }
    let window = started.elapsed();
    let window_ms = (started_ms, now_millis());
    let at_end = tallied();
    stop_sweeping.set(true);

    let all_arrived = || {
        let received = arrivals.lock().unwrap();
        sent.iter().all(|(_, uuid, _)| received.contains_key(uuid))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !all_arrived() && Instant::now() < deadline {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = arrivals.lock().unwrap().clone();
    let requests = sim.requests();
    handle.stop().await;
    let _ = running.await;
    receiver_handle.stop(false).await;
    sim.stop().await;
    Run {
        sent,
        arrived,
        requests,
        at_start,
        at_end,
        window,
        window_ms,
    }
}

fn report(settings: &Settings, studios: &[Studio], run: &Run) {
    let Settings {
        rate,
        customers,
        budget,
        sink_answers_after,
        ..
    } = settings;
    println!(
        "reconcile: live webhooks -> http sink beside a sweep (emit_all, {customers} customers, \
         started again as it ends); {rate} webhooks/s per studio for {:.0} s; budget \
         {budget}/min per endpoint, the simulator's limit the same; the sink answers after {} ms",
        run.window.as_secs_f64(),
        sink_answers_after.as_millis()
    );
    println!();
    println!("latency  studio         live events  p50 ms  p90 ms  p99 ms  max ms  429s");
    // Per studio: p50, p99, 429s.
    let mut rows = Vec::new();
    for (s, studio) in studios.iter().enumerate() {
        let (histogram, missing) = sink_latencies(
            run.sent
                .iter()
                .filter(|(i, _, _)| *i == s)
                .map(|(_, uuid, at)| (uuid.as_str(), *at)),
            &run.arrived,
        );
        let ms = |q: f64| quantile_ms(&histogram, q);
        let too_many = run
            .requests
            .iter()
            .filter(|r| r.studio == studio.id && r.status == 429)
            .count();
        let missing = match missing {
            0 => String::new(),
            n => format!("  ({n} not delivered)"),
        };
        println!(
            "{:>4} ms  {:<13}  {:>11}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.2}  {:>4}{missing}",
            studio.latency_ms,
            studio.id,
            histogram.len(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            histogram.max() as f64 / 1000.0,
            too_many,
        );
        rows.push((ms(0.5), ms(0.99), too_many));
    }

    println!();
    println!("the sweep during the window (sweeps that ended in it, and how long each took)");
    println!("latency  studio         pages  pages/s  events emitted  ended  a sweep at this pace");
    let pages_per_sweep = u64::from(*customers).div_ceil(PAGE_SIZE as u64);
    let (from_ms, to_ms) = run.window_ms;
    let ended_in_window = |t: &Tally| -> Vec<f64> {
        t.ended
            .iter()
            .filter(|f| (from_ms..=to_ms).contains(&f.finished_ms))
            .map(|f| (f.finished_ms - f.started_ms) as f64 / 1000.0)
            .collect()
    };
    for (s, studio) in studios.iter().enumerate() {
        let (Some(start), Some(end)) = (&run.at_start[s], &run.at_end[s]) else {
            continue;
        };
        let pages = end.pages() - start.pages();
        let per_second = pages as f64 / run.window.as_secs_f64();
        let ended = ended_in_window(end);
        let took: Vec<String> = ended.iter().map(|s| format!("{s:.1} s")).collect();
        let pace = match per_second > 0.0 {
            true => format!("{:.0} s", pages_per_sweep as f64 / per_second),
            false => "never ends".to_owned(),
        };
        println!(
            "{:>4} ms  {:<13}  {:>5}  {:>7.1}  {:>14}  {:>5}  {pace}{}",
            studio.latency_ms,
            studio.id,
            pages,
            per_second,
            end.emitted() - start.emitted(),
            ended.len(),
            match took.is_empty() {
                true => String::new(),
                false => format!(" (took {})", took.join(", ")),
            }
        );
        if let Some(failure) = &end.failure {
            println!("         the sweep was given up: {failure}");
        }
    }

    println!();
    println!(
        "latency  p50 sweeping/quiet  p99 sweeping/quiet  goal (<= {GOAL}x, a sweep ends, no 429)"
    );
    for (pair, rows) in (0..studios.len()).step_by(2).zip(rows.chunks(2)) {
        let (quiet, sweeping) = (rows[0], rows[1]);
        let (p50, p99) = (sweeping.0 / quiet.0, sweeping.1 / quiet.1);
        let ended = run.at_end[pair + 1]
            .as_ref()
            .is_some_and(|t| !ended_in_window(t).is_empty());
        let mut missed = Vec::new();
        if p50 > GOAL || p99 > GOAL {
            missed.push(format!("latency over {GOAL}x"));
        }
        if !ended {
            missed.push("no sweep ended in the window".to_owned());
        }
        if quiet.2 + sweeping.2 > 0 {
            missed.push("429s".to_owned());
        }
        let verdict = match missed.is_empty() {
            true => "met".to_owned(),
            false => format!("not met: {}", missed.join(", ")),
        };
        println!(
            "{:>4} ms  {p50:>18.2}  {p99:>18.2}  {verdict}",
            studios[pair].latency_ms
        );
    }
}

/// What the bench saw of one studio's sweeps.
#[derive(Clone, Default)]
struct Tally {
    /// Sweeps that ended, in order.
    ended: Vec<Finished>,
    running: Option<Sweep>,
    failure: Option<String>,
}

impl Tally {
    fn note(&mut self, record: SweepRecord) {
        if let Some(last) = record.last {
            if self.ended.last().map(|e| e.finished_ms) != Some(last.finished_ms) {
                self.ended.push(last);
            }
        }
        self.running = record.running;
        self.failure = record.failure;
    }

    fn pages(&self) -> u64 {
        self.sum(|p| p.pages)
    }

    fn emitted(&self) -> u64 {
        self.sum(|p| p.emitted)
    }

    /// Over every sweep this bench started, the one under way included.
    fn sum(&self, of: impl Fn(&Progress) -> u64) -> u64 {
        let ended: u64 = self.ended.iter().map(|f| of(&f.progress)).sum();
        ended + self.running.as_ref().map_or(0, |s| of(&s.progress))
    }
}

/// Keeps a sweep of the studio at `url` (its reconcile API) under way until `stop`: starts one
/// whenever none is, and notes in `tally` what each did.
async fn keep_sweeping(url: String, tally: Rc<RefCell<Tally>>, stop: Rc<Cell<bool>>) {
    let client = awc::Client::default();
    while !stop.get() {
        let mut answer = client
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin API answers");
        let record: SweepRecord = answer.json().await.expect("a reconcile record");
        let idle = record.running.is_none();
        tally.borrow_mut().note(record);
        if idle && !stop.get() {
            let answer = client
                .post(format!("{url}?emit_all=true"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("admin API answers");
            let status = answer.status();
            assert!(status.is_success(), "starting a sweep: {status}");
        }
        actix_web::rt::time::sleep(POLL).await;
    }
}
