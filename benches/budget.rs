//! `cargo bench --bench budget`: one studio with a backlog of three minutes' worth of events
//! against the simulated Open API applying the vendor's rule (more than the budget in any
//! sliding 60 s window => 429 for a minute). Prints the fetches in each full minute against
//! the budget and the number of 429s. Takes a little over two minutes.

mod support;

use std::time::{Duration, Instant};

use gymrelay::simulate::{OpenApiSim, SimOptions, SimStudio};
use gymrelay::Relay;
use support::*;

/// High so that the run is short; the window is the vendor's minute regardless.
const BUDGET: u32 = 3000;

fn main() {
    actix_web::rt::System::new().block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = OpenApiSim::start_with(
            "127.0.0.1:0".parse().unwrap(),
            vec![SimStudio::new("studio-0", "openapi-0")],
            SimOptions {
                vendor_limit: Some(BUDGET),
                ..SimOptions::default()
            },
        )
        .await
        .expect("simulated Open API");
        write_tenants(dir.path(), 1, BUDGET, |id| sim.base_url(id));
        let config = config_in(dir.path());
        let relay = Relay::start(&config).await.expect("relay");
        let url = format!("http://{}/webhook", relay.addr());
        actix_web::rt::spawn(relay.run());

        // Three minutes' worth, distinct customers so no request is shared.
        let backlog = BUDGET as usize * 3;
        let client = awc::Client::default();
        let started = Instant::now();
        for chunk in (0..backlog).collect::<Vec<_>>().chunks(64) {
            let sends = chunk.iter().map(|i| {
                let body = notification(&format!("budget-{i}"), "CUSTOMER_UPDATED", 1 + *i as u64);
                client
                    .post(&url)
                    .insert_header(("x-api-key", "key-0"))
                    .send_body(body)
            });
            for answer in futures_util::future::join_all(sends).await {
                assert_eq!(answer.expect("relay answers").status(), 200);
            }
        }
        println!(
            "budget: {backlog} events queued in {:.1} s; budget {BUDGET}/min per endpoint",
            started.elapsed().as_secs_f64()
        );

        let deadline = Instant::now() + Duration::from_secs(200);
        while sim.requests().len() < backlog && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(500)).await;
        }
        let requests = sim.requests();
        let first = requests.first().map(|r| r.at).expect("fetches happened");
        let too_many = requests.iter().filter(|r| r.status == 429).count();
        let mut per_minute = vec![0u32; 4];
        for r in &requests {
            let minute = (r.at - first).as_secs() / 60;
            if let Some(count) = per_minute.get_mut(minute as usize) {
                *count += 1;
            }
        }
        let last = requests.last().map(|r| r.at - first).unwrap_or_default();
        println!(
            "fetches: {} in {:.1} s; per minute from the first fetch: {:?}",
            requests.len(),
            last.as_secs_f64(),
            per_minute
        );
        // The first minute is the initial burst; minutes 2 and 3 are the steady drain.
        let steady = f64::from(per_minute[1]);
        println!(
            "achieved (second minute): {:.0}/min = {:.1} % of budget; 429s: {too_many}",
            steady,
            100.0 * steady / f64::from(BUDGET)
        );
        sim.stop().await;
    });
}
