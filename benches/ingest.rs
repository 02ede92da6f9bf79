//! `cargo bench --bench ingest`: the durable relay against a ceiling server (same route, key
//! lookup and validation, no storage) under the same keep-alive load, side by side in one run.
//!
//! GYMRELAY_BENCH_SECS sets each phase's length (default 10; the memory goal is for a 60 s flood).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use gymrelay::event::Notification;
use gymrelay::registry::{hash_key, load_dir};
use gymrelay::tenant::StudioId;
use secrecy::ExposeSecret;
use support::*;

const STUDIOS: usize = 10;
const CONNECTIONS: usize = 32;

type Keys = HashMap<[u8; 32], StudioId>;

/// The ceiling: what the relay does before storage, and nothing after.
async fn ceiling(req: HttpRequest, body: web::Bytes, keys: web::Data<Keys>) -> HttpResponse {
    let known = req
        .headers()
        .get("x-api-key")
        .and_then(|k| keys.get(&hash_key(k.as_bytes())));
    if known.is_none() {
        return HttpResponse::Unauthorized().json(serde_json::json!({"error": "unknown key"}));
    }
    match Notification::parse(&body) {
        Ok(n) => HttpResponse::Ok().json(serde_json::json!({"status": "accepted", "uuid": n.uuid})),
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({"error": e.0})),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sim_addr = start_sim_thread(STUDIOS);
    // Each relay has its own data and tenants: the durable run leaves a backlog that waits for
    // the Open API budget, and events behind it in the same studios would wait too.
    let relay_dir = |name: &str| {
        let root = dir.path().join(name);
        write_tenants(&root, STUDIOS, 900, |id| format!("http://{sim_addr}/{id}"));
        root
    };
    let (durable_dir, delivering_dir) = (relay_dir("durable"), relay_dir("delivering"));
    let durable = BenchRelay::start(config_in(&durable_dir));

    let keys: Keys = load_dir(&durable_dir.join("tenants"))
        .expect("tenants")
        .tenants
        .iter()
        .flat_map(|t| {
            t.webhook_keys
                .iter()
                .map(|k| (hash_key(k.expose_secret().as_bytes()), t.id.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let keys = web::Data::new(keys);
            let ceiling = HttpServer::new(move || {
                App::new()
                    .app_data(keys.clone())
                    .app_data(web::PayloadConfig::new(64 * 1024))
                    .route("/webhook", web::post().to(ceiling))
            })
            .bind("127.0.0.1:0")
            .expect("bind ceiling");
            tx.send(ceiling.addrs()[0]).expect("report address");
            let _ = ceiling.run().await;
        })
    });
    let ceiling_addr: SocketAddr = rx.recv().expect("ceiling started");
    let secs = seconds(10);
    let load = |addr, run: &'static str, event_type: &'static str| {
        run_load(addr, CONNECTIONS, secs, move |c, n| {
            let uuid = format!("{run}-{c}-{n}");
            let studio = (c + n as usize) % STUDIOS;
            let customer = 1 + (c as u64 * 7919 + n) % 2000;
            (
                notification(&uuid, event_type, customer),
                format!("key-{studio}"),
            )
        })
    };
    println!(
        "ingest: {CONNECTIONS} keep-alive connections, {} s per run, {STUDIOS} studios, loopback, {} cores",
        secs.as_secs(),
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    // 1. The ceiling. 2. The relay as in production: every event needs an Open API fetch, so
    // enrichment and delivery run at the studios' budgets (900/min per endpoint) behind the
    // ingest. 3. The worst case for the shared two cores: events that need no fetch, so every
    // one is also delivered (file sink, one fsync per batch) while the load runs, by a relay of
    // its own.
    let ceiling_report = load(ceiling_addr, "ceiling", "CUSTOMER_UPDATED");
    let durable_report = load(durable.addr, "durable", "CUSTOMER_UPDATED");
    let disk = disk_bytes(&durable_dir.join("data")) as f64 / 1048576.0;
    let queued = backlog(durable.admin);
    // Started only now, so the durable run's peak memory is that of one relay.
    let delivering = BenchRelay::start(config_in(&delivering_dir));
    let delivering_report = load(delivering.addr, "delivering", "CUSTOMER_DELETED");
    let disk_after = disk_bytes(&delivering_dir.join("data")) as f64 / 1048576.0;
    let undelivered = backlog(delivering.admin);
    durable.stop();
    delivering.stop();
    println!(
        "{:<10} {:>11} {:>8} {:>8} {:>8} {:>7} {:>14} {:>9}",
        "", "accepted/s", "p50 ms", "p99 ms", "max ms", "failed", "peak RSS MiB", "disk MiB"
    );
    for (name, r, disk) in [
        ("ceiling", &ceiling_report, 0.0),
        ("durable", &durable_report, disk),
        ("delivering", &delivering_report, disk_after),
    ] {
        println!(
            "{:<10} {:>11.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>14.1} {:>9.1}",
            name,
            r.per_second(),
            r.percentile_ms(0.5),
            r.percentile_ms(0.99),
            r.percentile_ms(1.0),
            r.failed,
            r.peak_rss_mib,
            disk
        );
    }
    let held_before = delivering_report
        .rss_samples_kib
        .first()
        .copied()
        .unwrap_or(0) as f64
        / 1024.0;
    println!(
        "delivering: its peak RSS includes the durable relay's {held_before:.1} MiB held before it started; it added {:.1} MiB",
        delivering_report.peak_rss_mib - held_before
    );
    println!(
        "not yet delivered when the load stopped: durable {queued:.0} of {} (they wait for the budget), delivering {undelivered:.0} of {}",
        durable_report.ok, delivering_report.ok
    );
    println!(
        "ratio durable/ceiling: {:.2}",
        durable_report.per_second() / ceiling_report.per_second()
    );
    println!(
        "ratio delivering/ceiling: {:.2}",
        delivering_report.per_second() / ceiling_report.per_second()
    );
}
