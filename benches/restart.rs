//! `cargo bench --bench restart`: how long a restart takes, and what memory it holds, with many
//! uuids remembered for deduplication. The store reads every remembered uuid when it opens, so
//! this is the start-up cost that grows with traffic × retention.
//!
//! For each count in `GYMRELAY_BENCH_UUIDS` (default `1000000,2000000`), writes that many
//! uuids through the real intake, in groups that the group commit takes together as in
//! production, then opens the store in a fresh process (this bench, run again) and reports
//! time to open and resident memory, and the memory each further uuid adds.

mod support;

use std::time::Instant;

use futures_util::future::join_all;
use gymrelay::store::{Intake, Store, StoreSettings};
use gymrelay::tenant::StudioId;
use support::{allocated_kib, disk_bytes, rss_kib};

/// Requests in flight at once while filling the store: one group commit's worth.
const GROUP: usize = 512;
/// Set in a child process: the store to fill, or to reopen, and with how many uuids.
const FILL: &str = "GYMRELAY_BENCH_FILL_DIR";
const REOPEN: &str = "GYMRELAY_BENCH_REOPEN_DIR";
const COUNT: &str = "GYMRELAY_BENCH_CHILD_UUIDS";
const SETTLED: &str = "settled RSS KiB: ";

fn main() {
    if let Ok(dir) = std::env::var(FILL) {
        fill_store(std::path::Path::new(&dir), count_of_child());
        return;
    }
    if let Ok(dir) = std::env::var(REOPEN) {
        reopen(std::path::Path::new(&dir), count_of_child());
        return;
    }
    let counts: Vec<usize> = std::env::var("GYMRELAY_BENCH_UUIDS")
        .unwrap_or_else(|_| "1000000,2000000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("GYMRELAY_BENCH_UUIDS: counts, comma-separated")
        })
        .filter(|&n: &usize| n > 0)
        .collect();
    let mut settled = Vec::new();
    for uuids in counts {
        let dir = tempfile::tempdir().expect("temp dir");
        run_child(FILL, dir.path(), uuids);
        let report = run_child(REOPEN, dir.path(), uuids);
        let kib: f64 = report
            .lines()
            .find_map(|l| l.strip_prefix(SETTLED))
            .and_then(|v| v.trim().parse().ok())
            .expect("the reopen reports its settled RSS");
        settled.push((uuids, kib));
    }
    // The slope between sizes leaves out what does not grow with them (the process, the empty
    // store).
    for pair in settled.windows(2) {
        let ((a, a_kib), (b, b_kib)) = (pair[0], pair[1]);
        println!(
            "each remembered uuid from {a} to {b}: {:.1} bytes of resident memory",
            (b_kib - a_kib) * 1024.0 / (b - a) as f64
        );
    }
}

/// Runs this bench again with `role` set to `dir`, in its own process: a store is only
/// released (its lock file, its threads) when the process that opened it ends, as at a
/// restart. Returns what it printed, after printing it.
fn run_child(role: &str, dir: &std::path::Path, uuids: usize) -> String {
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(role, dir)
        .env(COUNT, uuids.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run a child process");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{report}");
    assert!(output.status.success(), "{role} failed: {}", output.status);
    report
}

fn count_of_child() -> usize {
    std::env::var(COUNT)
        .expect("set by the parent")
        .parse()
        .expect("a count")
}

fn fill_store(dir: &std::path::Path, uuids: usize) {
    let started = Instant::now();
    let store = Store::open(&storage(dir)).expect("store");
    let now_ms = gymrelay::event::now_millis();
    actix_web::rt::System::new().block_on(intake_new(&store, 0..uuids, now_ms));
    println!(
        "restart: {uuids} uuids remembered, written in {:.1} s; {:.0} MiB on disk",
        started.elapsed().as_secs_f64(),
        disk_bytes(dir) as f64 / 1048576.0
    );
}

/// The benches' storage settings, GYMRELAY_BENCH_CACHE_MIB included: sled's cache is what
/// a reopen fills.
fn storage(dir: &std::path::Path) -> StoreSettings {
    support::config_in(dir).storage.store_settings()
}

fn studio(n: usize) -> StudioId {
    StudioId::parse(&format!("studio-{}", n % 100)).expect("id")
}

/// Takes uuids `uuid-<n>` for `numbers`, [`GROUP`] at a time.
async fn intake_new(store: &Store, numbers: std::ops::Range<usize>, now_ms: i64) {
    for start in numbers.clone().step_by(GROUP) {
        let intakes = (start..(start + GROUP).min(numbers.end)).map(|n| async move {
            store
                .intake(&studio(n), &format!("uuid-{n}"), &[], now_ms)
                .await
        });
        for outcome in join_all(intakes).await {
            assert!(matches!(outcome.expect("intake"), Intake::Accepted));
        }
    }
}

fn reopen(dir: &std::path::Path, uuids: usize) {
    let rss_before = rss_kib();
    let started = Instant::now();
    let store = Store::open(&storage(dir)).expect("reopen");
    let opened = started.elapsed();
    let (rss_opened, allocated_opened) = (rss_kib(), allocated_kib());
    println!(
        "opened in {:.2} s; RSS {:.1} MiB before, {:.1} MiB just after; allocated {:.1} MiB",
        opened.as_secs_f64(),
        rss_before as f64 / 1024.0,
        rss_opened as f64 / 1024.0,
        allocated_opened as f64 / 1024.0
    );
    let now_ms = gymrelay::event::now_millis();
    actix_web::rt::System::new().block_on(async {
        // Still remembered: the first and the last are refused as duplicates.
        for n in [0, uuids - 1] {
            let outcome = store
                .intake(&studio(n), &format!("uuid-{n}"), &[], now_ms)
                .await
                .expect("intake");
            assert!(matches!(outcome, Intake::Duplicate), "uuid-{n} forgotten");
        }
    });
    // jemalloc returns freed pages after its decay time (1 s). sled keeps the pages read at
    // start-up: each of its 256 cache shards weighs up its contents only every 64 accesses to
    // it, so they stay until later traffic reaches their shard.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let rss_settled = rss_kib();
    println!(
        "3 s later: RSS {:.1} MiB, allocated {:.1} MiB",
        rss_settled as f64 / 1024.0,
        allocated_kib() as f64 / 1024.0
    );
    println!("{SETTLED}{rss_settled}");
}
