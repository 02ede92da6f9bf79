//! `cargo bench --bench scale`: 1,000 tenant files. Start-up time to ready and idle memory,
//! then a paced load spread over all studios (default 10,000 webhooks/s for 60 s; set
//! GYMRELAY_BENCH_RATE and GYMRELAY_BENCH_SECS) with memory sampled along the way.
//! GYMRELAY_BENCH_RETENTION_SECS shortens how long uuids are remembered (default: the
//! configured 7 days), to show memory once pruning keeps the remembered set steady.
//! GYMRELAY_BENCH_BACKLOG_SECS sets how often the backlog is read from `/metrics` (default 5;
//! 0 = never), since each read makes the relay render its metrics for 1,000 studios.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::*;

const STUDIOS: usize = 1000;
const CONNECTIONS: usize = 32;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rate: f64 = std::env::var("GYMRELAY_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000.0);
    let secs = seconds(60);

    let sim_addr = start_sim_thread(STUDIOS);
    let root = dir.path();
    write_tenants(root, STUDIOS, 900, |id| format!("http://{sim_addr}/{id}"));
    let mut config = config_in(root);
    if let Some(secs) = std::env::var("GYMRELAY_BENCH_RETENTION_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        config.storage.retention = Duration::from_secs(secs);
        config.storage.prune_interval = Duration::from_secs(secs.div_ceil(4).max(1));
    }
    let rss_before = rss_kib();
    let started = Instant::now();
    let relay = BenchRelay::start(config);
    let (addr, admin) = (relay.addr, relay.admin);
    while !ureq::get(&format!("http://{admin}/readyz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        thread::sleep(Duration::from_millis(5));
    }
    let ready_in = started.elapsed();
    thread::sleep(Duration::from_secs(2));
    let idle = rss_kib();
    println!(
        "scale: {STUDIOS} studios ready in {:.0} ms; RSS {:.1} MiB before start, {:.1} MiB idle",
        ready_in.as_secs_f64() * 1000.0,
        rss_before as f64 / 1024.0,
        idle as f64 / 1024.0
    );

    // Undelivered events every few seconds: a bound on sink work that cannot keep up shows as a
    // backlog that keeps growing, where a steady one is only events in flight.
    let backlog_every = std::env::var("GYMRELAY_BENCH_BACKLOG_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(5);
    let backlogs = (backlog_every > 0)
        .then(|| sample_every(Duration::from_secs(backlog_every), move || backlog(admin)));
    let report = run_paced_load(addr, CONNECTIONS, secs, rate, |c, n| {
        let studio = (c * 7919 + n as usize) % STUDIOS;
        // One in ten needs a fetch; the rest are delivered without one.
        let event_type = if n % 10 == 0 {
            "CUSTOMER_UPDATED"
        } else {
            "CUSTOMER_DELETED"
        };
        (
            // Random like the vendor's, so remembered uuids spread over the whole index.
            notification(&uuid::Uuid::new_v4().to_string(), event_type, 1 + n % 2000),
            format!("key-{studio}"),
        )
    });
    println!(
        "load: {:.0} accepted/s (target {rate:.0}), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, failed {}",
        report.per_second(),
        report.percentile_ms(0.5),
        report.percentile_ms(0.99),
        report.percentile_ms(1.0),
        report.failed
    );
    // How far delivery is behind: memory that grows with the backlog is not a leak.
    let backlog = backlog(admin);
    println!("backlog at the end: {backlog:.0} events not yet delivered");
    if let Some(backlogs) = backlogs {
        let every_few: Vec<String> = backlogs.stop().iter().map(|b| format!("{b:.0}")).collect();
        println!(
            "backlog every {backlog_every} s during the load: {}",
            every_few.join(" ")
        );
    }
    println!(
        "threads: at most {} in the process during the load (relay, simulated Open API, load)",
        report.peak_threads
    );
    relay.stop();
    let samples = &report.rss_samples_kib;
    let second_half = &samples[samples.len() / 2..];
    let (lo, hi) = (
        *second_half.iter().min().unwrap_or(&0) as f64 / 1024.0,
        *second_half.iter().max().unwrap_or(&0) as f64 / 1024.0,
    );
    let mean = mean_mib(second_half);
    let (middle, end) = (mib_at(samples, 0.5), mib_at(samples, 1.0));
    println!(
        "RSS MiB: start {:.1}, middle {middle:.1}, end {end:.1}; second half {lo:.1}..{hi:.1} ({:+.1} % max over min)",
        mib_at(samples, 0.0),
        100.0 * (hi - lo) / lo.max(1.0)
    );
    // jemalloc's count of allocated bytes, which includes what its thread caches keep for
    // reuse (about a third of the total here, measured with the caches off).
    let allocated = &report.allocated_samples_kib;
    println!(
        "allocated MiB: start {:.1}, middle {:.1}, end {:.1}",
        mib_at(allocated, 0.0),
        mib_at(allocated, 0.5),
        mib_at(allocated, 1.0)
    );
    // The shape, to tell a steady climb from warm-up or from short spikes.
    println!("RSS MiB by tenths of the run: {}", tenths(samples));
    println!("allocated MiB by tenths of the run: {}", tenths(allocated));
    // Two more readings of "flat": samples against their mean, and the end against the middle.
    println!(
        "second half against its mean {mean:.1} MiB: {:+.1} % .. {:+.1} %; end against middle {:+.1} %",
        100.0 * (lo - mean) / mean.max(1.0),
        100.0 * (hi - mean) / mean.max(1.0),
        100.0 * (end - middle) / middle.max(1.0)
    );
}

/// The sample `fraction` of the way through `kib`, in MiB.
fn mib_at(kib: &[u64], fraction: f64) -> f64 {
    kib[((kib.len() - 1) as f64 * fraction) as usize] as f64 / 1024.0
}

fn mean_mib(kib: &[u64]) -> f64 {
    kib.iter().sum::<u64>() as f64 / kib.len().max(1) as f64 / 1024.0
}

/// The means of each tenth of `kib`, in MiB.
fn tenths(kib: &[u64]) -> String {
    kib.chunks(kib.len().div_ceil(10).max(1))
        .map(|part| format!("{:.0}", mean_mib(part)))
        .collect::<Vec<_>>()
        .join(" ")
}
