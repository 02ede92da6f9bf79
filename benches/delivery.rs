//! `cargo bench --bench delivery`: webhook -> sink latency, side by side in one relay, for
//! studios that differ only in `open_api.max_in_flight`, against a simulated Open API that
//! answers in a fixed time (default 10 ms). Webhooks arrive at a steady rate within the budget;
//! each studio's http sink is a receiver in this process that notes when each event arrives.
//!
//! GYMRELAY_BENCH_SECS sets the length (default 20), GYMRELAY_BENCH_LATENCY_MS the Open API's
//! answer time, GYMRELAY_BENCH_RATE the webhooks per second per studio (default 10).

mod support;

use std::time::{Duration, Instant};

use gymrelay::simulate::{OpenApiSim, SimOptions, SimStudio};
use gymrelay::Relay;
use support::*;

/// The studios compared: name and max_in_flight.
const STUDIOS: [(&str, u32); 2] = [("one-at-a-time", 1), ("in-flight-16", 16)];

fn main() {
    let latency = Duration::from_millis(env_or("GYMRELAY_BENCH_LATENCY_MS", 10));
    let rate = env_or("GYMRELAY_BENCH_RATE", 10u64).max(1);
    let duration = seconds(20);
    actix_web::rt::System::new().block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let sims = STUDIOS
            .iter()
            .map(|(id, _)| SimStudio::new(*id, format!("openapi-{id}")).with_latency(latency, latency))
            .collect();
        let sim = OpenApiSim::start_with("127.0.0.1:0".parse().unwrap(), sims, SimOptions::default())
            .await
            .expect("simulated Open API");
        let (receiver_addr, receiver_handle, arrivals) = start_receiver(Duration::ZERO);

        for (id, in_flight) in STUDIOS {
            let extra = format!("max_in_flight = {in_flight}\n");
            write_http_tenant(dir.path(), id, &sim.base_url(id), 1000, &extra, receiver_addr);
        }
        let relay = Relay::start(&config_in(dir.path())).await.expect("relay");
        let url = format!("http://{}/webhook", relay.addr());
        let handle = relay.handle();
        let running = actix_web::rt::spawn(relay.run());

        let client = awc::Client::default();
        let mut sent: Vec<(usize, String, Instant)> = Vec::new();
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < duration {
            for (s, (id, _)) in STUDIOS.iter().enumerate() {
                let uuid = format!("{id}-{n}");
                let body = notification(&uuid, "CUSTOMER_UPDATED", 1 + n % 5000);
                let at = Instant::now();
                let answer = client
                    .post(&url)
                    .insert_header(("x-api-key", format!("key-{id}")))
                    .send_body(body)
                    .await
                    .expect("relay answers");
                assert_eq!(answer.status(), 200);
                sent.push((s, uuid, at));
            }
            n += 1;
            let next = started + Duration::from_secs_f64(n as f64 / rate as f64);
            actix_web::rt::time::sleep_until(next.into()).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while arrivals.lock().unwrap().len() < sent.len() && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }

        let arrived = arrivals.lock().unwrap().clone();
        println!(
            "delivery: webhook -> http sink, Open API answering in {} ms, {rate} webhooks/s per studio for {} s",
            latency.as_millis(),
            duration.as_secs()
        );
        println!("{:>16} {:>9} {:>9} {:>9} {:>9} {:>9}", "studio", "events", "p50 ms", "p90 ms", "p99 ms", "max ms");
        for (s, (id, _)) in STUDIOS.iter().enumerate() {
            let (histogram, missing) = sink_latencies(
                sent.iter()
                    .filter(|(i, _, _)| *i == s)
                    .map(|(_, uuid, at)| (uuid.as_str(), *at)),
                &arrived,
            );
            let ms = |q: f64| quantile_ms(&histogram, q);
            println!(
                "{id:>16} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}{}",
                histogram.len(),
                ms(0.5),
                ms(0.9),
                ms(0.99),
                histogram.max() as f64 / 1000.0,
                if missing > 0 { format!("  ({missing} not delivered)") } else { String::new() }
            );
        }
        handle.stop().await;
        let _ = running.await;
        receiver_handle.stop(false).await;
        sim.stop().await;
    });
}
