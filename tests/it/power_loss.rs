//! Power loss: the relay's storage on a file system that forgets whatever was not synced
//! (`lossy_fs`). Senders post while the relay is SIGKILLed and the power cut at random
//! moments; after every cut the relay must open its store and become ready, and in the end
//! every acknowledged uuid must reach the file sink (on the normal disk). The same run on a
//! file system where fsync does nothing must lose acknowledged events: that shows the check
//! can fail.
//!
//! The suite runs a short version. The long run (`cargo test --test it power_loss --
//! --ignored --nocapture`) makes `POWER_CUTS` cuts (default 200); `POWER_SEED` repeats a run's
//! random choices (each run prints its seed), and `POWER_STRICT_NAMES=1` keeps only the names
//! of directories synced since they changed (see `lossy_fs`). Not `GYMRELAY_*`: the relay reads
//! those as its own configuration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::*;
use crate::lossy_fs::{self, CutReport, LossyFs, Model};

const STUDIOS: [&str; 2] = ["berlin", "hamburg"];

/// One event in this many needs an Open API request: enrichment is under way at a cut too,
/// and the studio's budget (15 a second) still keeps up.
const FETCH_EVERY: i64 = 20;

/// Acknowledgements in one round are drawn up to this.
const MOST_ACKS_PER_ROUND: usize = 300;

/// What a run saw.
#[derive(Default)]
struct Outcome {
    cuts: usize,
    /// Cuts before the relay was ready: while it opened its store, most of them.
    before_ready: usize,
    acknowledged: usize,
    /// Acknowledged uuids that never reached the sink.
    lost: Vec<String>,
    /// Deliveries of a uuid after its first (at least once allows them).
    duplicates: usize,
    /// Acknowledged uuids, resent at the end, that were not refused as duplicates.
    resends_taken: usize,
    /// The log of a relay whose storage did not open after a cut.
    did_not_open: Option<String>,
    taken: CutReport,
    elapsed: Duration,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cuts ({} before the relay was ready), {} acknowledged, {} lost, {} duplicate deliveries, {} resends taken again, \
             store {}; unsynced bytes dropped {}, torn writes {}; {:.1} s",
            self.cuts,
            self.before_ready,
            self.acknowledged,
            self.lost.len(),
            self.duplicates,
            self.resends_taken,
            if self.did_not_open.is_some() {
                "did not open"
            } else {
                "opened after every cut"
            },
            self.taken.bytes_lost,
            self.taken.torn_writes,
            self.elapsed.as_secs_f64()
        )
    }
}

fn mountable() -> bool {
    match lossy_fs::available() {
        Ok(()) => true,
        Err(why) => {
            skip(&format!("cannot mount a FUSE file system here: {why}"));
            false
        }
    }
}

fn seed() -> u64 {
    std::env::var("POWER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

/// Asserts what the relay promises: the store opens after every cut, and nothing acknowledged
/// is lost.
fn assert_nothing_lost(outcome: &Outcome) {
    if let Some(log) = &outcome.did_not_open {
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        panic!("{outcome}\nthe store did not open after a cut; the log ends:\n{tail:#?}");
    }
    assert!(
        outcome.lost.is_empty(),
        "{outcome}\nlost, for example: {:?}",
        &outcome.lost[..outcome.lost.len().min(5)]
    );
    assert_eq!(outcome.resends_taken, 0, "{outcome}: marks seen were lost");
}

#[actix_rt::test]
async fn power_cuts_under_load_lose_no_acknowledged_event() {
    if !mountable() {
        return;
    }
    let model = Model {
        torn: true,
        ..Model::JOURNALED
    };
    let outcome = run(model, 10, seed()).await;
    assert_nothing_lost(&outcome);
    assert!(
        outcome.acknowledged >= 100,
        "{outcome}: the load reached the relay"
    );
}

/// The control: fsync does nothing, so nothing acknowledged is on disk after a cut, and the
/// check must say so.
#[actix_rt::test]
async fn without_fsync_power_cuts_lose_acknowledged_events_and_the_check_says_so() {
    if !mountable() {
        return;
    }
    let model = Model {
        fsync: false,
        ..Model::JOURNALED
    };
    let outcome = run(model, 5, seed()).await;
    assert!(outcome.cuts > 0, "{outcome}: the first start failed");
    assert!(
        outcome.did_not_open.is_some() || !outcome.lost.is_empty(),
        "{outcome}: nothing lost without fsync"
    );
}

#[actix_rt::test]
#[ignore = "the long run: about a minute for 200 cuts"]
async fn power_loss_long_run() {
    if !mountable() {
        return;
    }
    let cuts = std::env::var("POWER_CUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let model = Model {
        torn: true,
        strict_names: std::env::var("POWER_STRICT_NAMES").is_ok_and(|v| v == "1"),
        ..Model::JOURNALED
    };
    let outcome = run(model, cuts, seed()).await;
    assert_nothing_lost(&outcome);
}

async fn run(model: Model, cuts: usize, seed: u64) -> Outcome {
    eprintln!("power loss: {model:?}, {cuts} cuts, POWER_SEED={seed}");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fs = LossyFs::mount(model, rng.gen()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Answers that take a while hold up delivery behind them (events go out in arrival
    // order), so that a cut finds acknowledged events still waiting in the store.
    let studios = STUDIOS
        .map(|s| Studio::new(s).latency(Duration::from_millis(20), Duration::from_millis(100)));
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    // The relay's storage is `<dir>/data`: there, a link to the lossy file system, as a disk
    // of its own mounted there would be. Tenants and the file sinks' output stay on the
    // normal disk.
    std::os::unix::fs::symlink(fs.path(), dir.path().join("data")).unwrap();

    let mut outcome = Outcome::default();
    let mut acked: Vec<(String, String)> = Vec::new();
    while outcome.cuts < cuts {
        let mut relay = RelayProcess::spawn(dir.path(), "");
        // Now and then the power goes after a few changes to the disk, most likely while the
        // relay opens its store (sled recovers, rewrites the end of its log, writes a
        // snapshot); otherwise after some acknowledgements.
        if rng.gen_ratio(1, 4) {
            fs.power_off_after(rng.gen_range(0..60));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        match ready(&mut relay, &fs).await {
            Err(_) if fs.is_off() => outcome.before_ready += 1,
            Err(log) => {
                outcome.did_not_open = Some(log);
                break;
            }
            Ok(()) => {
                let count = Arc::new(AtomicUsize::new(0));
                senders =
                    send_until_stopped(&relay.url, &STUDIOS, "power", FETCH_EVERY, &stop, &count);
                let target = rng.gen_range(1..=MOST_ACKS_PER_ROUND);
                eventually("acknowledgements before the cut", || {
                    let cut = count.load(Ordering::Relaxed) >= target || fs.is_off();
                    async move { cut.then_some(()) }
                })
                .await;
            }
        }
        relay.kill();
        acked.extend(stop_senders(&stop, senders).await);
        let taken = fs.power_cut().unwrap();
        outcome.cuts += 1;
        outcome.taken.bytes_lost += taken.bytes_lost;
        outcome.taken.torn_writes += taken.torn_writes;
        outcome.taken.files_reverted += taken.files_reverted;
    }
    outcome.acknowledged = acked.len();

    if outcome.did_not_open.is_none() {
        let mut relay = RelayProcess::spawn(dir.path(), "");
        match ready(&mut relay, &fs).await {
            Ok(()) => check_delivery(&relay, dir.path(), &acked, &mut outcome, &mut rng).await,
            Err(log) => outcome.did_not_open = Some(log),
        }
        relay.kill();
    }
    outcome.elapsed = started.elapsed();
    eprintln!("power loss: {outcome}");
    sim.stop().await;
    outcome
}

/// Waits until the relay listens and its readiness check (a durable write) passes; its log if
/// it ends first, or if the power goes meanwhile.
async fn ready(relay: &mut RelayProcess, fs: &LossyFs) -> Result<(), String> {
    relay.listening().await?;
    let client = awc::Client::default();
    let url = format!("{}/readyz", relay.admin_url);
    let started = Instant::now();
    loop {
        if let Ok(res) = client.get(&url).send().await {
            if res.status() == 200 {
                return Ok(());
            }
        }
        if fs.is_off() || started.elapsed() > DEADLINE {
            let log = relay.read_log().join("\n");
            return Err(format!("not ready:\n{log}"));
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until every acknowledged uuid is in the sinks, or until the relay has nothing left to
/// deliver, and fills in what was lost and delivered twice. Then resends some acknowledged
/// uuids: the store must still know each as seen.
async fn check_delivery(
    relay: &RelayProcess,
    dir: &std::path::Path,
    acked: &[(String, String)],
    outcome: &mut Outcome,
    rng: &mut StdRng,
) {
    let delivered = eventually(
        "every acknowledged uuid delivered, or an empty inbox",
        || {
            let relay = &relay;
            async move {
                // Read before the sinks: what left the inbox is in a sink by then.
                let studios: serde_json::Value =
                    serde_json::from_str(&relay.admin("/api/studios").await).unwrap();
                let idle = studios["studios"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["inbox_depth"] == 0));
                let mut lines: HashMap<String, usize> = HashMap::new();
                for studio in STUDIOS {
                    for event in read_ndjson(&dir.join("out").join(format!("{studio}.ndjson"))) {
                        let id = event["id"].as_str().unwrap_or_default().to_string();
                        *lines.entry(id).or_default() += 1;
                    }
                }
                let all = acked.iter().all(|(_, uuid)| lines.contains_key(uuid));
                (all || idle).then_some(lines)
            }
        },
    )
    .await;
    outcome.lost = acked
        .iter()
        .filter(|(_, uuid)| !delivered.contains_key(uuid))
        .map(|(_, uuid)| uuid.clone())
        .collect();
    outcome.duplicates = delivered.values().map(|n| n - 1).sum();

    let sample: Vec<(String, String)> = acked
        .iter()
        .filter(|_| rng.gen_ratio(1, 10))
        .take(300)
        .cloned()
        .collect();
    let url = relay.url.clone();
    let answers = actix_web::rt::task::spawn_blocking(move || resend_all(&url, &sample))
        .await
        .unwrap();
    outcome.resends_taken = answers.iter().filter(|a| *a != "duplicate").count();
}
