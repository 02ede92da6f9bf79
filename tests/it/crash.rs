//! The real binary, killed with SIGKILL under load and restarted on the same data dir:
//! every acknowledged uuid must reach the file sink.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use gymrelay::simulate::Fault;

use crate::helpers::*;

/// Acknowledgements per round before the relay is killed.
const ACKS_BEFORE_KILL: usize = 1500;

/// `gymrelay serve` as a child process; its address is read from its log.
struct ChildRelay {
    child: Child,
    url: String,
}

impl ChildRelay {
    fn start(dir: &Path) -> ChildRelay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
            .args(["serve", "--config"])
            .arg(dir.join("gymrelay.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gymrelay binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.contains("listening for webhooks") {
                    continue;
                }
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(DEADLINE)
            .expect("the relay logs its listening address");
        ChildRelay {
            child,
            url: format!("http://{addr}/webhook"),
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code and how long stopping took.
    fn terminate(mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > DEADLINE {
                self.child.kill().unwrap();
                panic!("the relay did not stop within {DEADLINE:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

fn write_config(dir: &Path) {
    // The per-key limit is lifted: the resend check posts thousands of requests at once.
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\nstudio_requests_per_second = 1000000\nstudio_burst = 1000000\n[admin]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n[tenants]\ndir = {:?}\n",
        dir.join("data").display().to_string(),
        dir.join("tenants").display().to_string(),
    );
    std::fs::write(dir.join("gymrelay.toml"), config).unwrap();
}

#[actix_rt::test]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let studios = [Studio::new("berlin"), Studio::new("hamburg")];
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    write_config(dir.path());
    let names = ["berlin", "hamburg"];

    let mut acked: Vec<(String, String)> = Vec::new();
    let kills = 3;
    for _ in 0..kills {
        let relay = ChildRelay::start(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let senders = send_until_stopped(&relay.url, &names, "crash", 10, &stop, &count);
        // Kill mid-load: after some acknowledgements, while requests are in flight.
        eventually("acknowledgements before the kill", || {
            let n = count.load(Ordering::Relaxed);
            async move { (n >= ACKS_BEFORE_KILL).then_some(()) }
        })
        .await;
        relay.kill();
        acked.extend(stop_senders(&stop, senders).await);
        eprintln!("after kill: {} acknowledged so far", acked.len());
    }

    let relay = ChildRelay::start(dir.path());
    let mut lines: HashMap<String, usize> = HashMap::new();
    let expected: HashSet<&str> = acked.iter().map(|(_, u)| u.as_str()).collect();
    eventually("every acknowledged uuid in the file sinks", || {
        lines.clear();
        for s in names {
            for e in read_ndjson(&dir.path().join("out").join(format!("{s}.ndjson"))) {
                *lines
                    .entry(e["id"].as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
        let missing = expected.iter().filter(|u| !lines.contains_key(**u)).count();
        async move { (missing == 0).then_some(()) }
    })
    .await;
    // Every acknowledged uuid was marked seen before its acknowledgement, so the marks reloaded
    // after the kills must refuse a resend of each one.
    let url = relay.url.clone();
    let resent = acked.clone();
    let answers = actix_web::rt::task::spawn_blocking(move || resend_all(&url, &resent))
        .await
        .unwrap();
    let not_duplicate: Vec<_> = answers.iter().filter(|a| *a != "duplicate").collect();
    assert!(
        not_duplicate.is_empty(),
        "{} of {} resends were not refused as duplicates: {:?}",
        not_duplicate.len(),
        answers.len(),
        &not_duplicate[..not_duplicate.len().min(5)]
    );
    relay.kill();
    let duplicates: usize = lines.values().map(|n| n - 1).sum();
    eprintln!(
        "sigkill: {} acknowledged, {kills} kills, 0 lost, {duplicates} duplicate deliveries",
        acked.len()
    );
    assert!(
        acked.len() >= kills * ACKS_BEFORE_KILL,
        "the load reached the relay"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn restart_resumes_pending_events_including_a_fetch_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let studios = [Studio::new("berlin")];
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    write_config(dir.path());
    sim.set_fault("berlin", Fault::Hang);

    let relay = ChildRelay::start(dir.path());
    let client = awc::Client::default();
    let uuids: Vec<String> = (0..5).map(|_| unique("pending")).collect();
    for (i, uuid) in uuids.iter().enumerate() {
        let body = notification(uuid, "CUSTOMER_UPDATED", i as i64 + 1, None).to_string();
        let (status, _) = post_with(
            &client,
            &relay.url,
            Some(&webhook_key("berlin")),
            body.into_bytes(),
        )
        .await;
        assert_eq!(status, 200);
    }
    eventually("the first fetch to be in flight", || {
        let n = sim.requests().len();
        async move { (n > 0).then_some(()) }
    })
    .await;
    relay.kill();

    sim.set_fault("berlin", Fault::None);
    let relay = ChildRelay::start(dir.path());
    let out = dir.path().join("out").join("berlin.ndjson");
    let events = eventually("the pending events after the restart", || {
        let events = read_ndjson(&out);
        async move { (events.len() >= 5).then_some(events) }
    })
    .await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        uuids.iter().map(String::as_str).collect::<Vec<_>>(),
        "in arrival order"
    );
    assert!(events
        .iter()
        .all(|e| e["enrichment"]["status"] == "fetched"));
    relay.kill();
    sim.stop().await;
}

#[actix_rt::test]
async fn sigterm_under_load_exits_cleanly_and_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let studios = [Studio::new("berlin")];
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    write_config(dir.path());

    let relay = ChildRelay::start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let senders = send_until_stopped(&relay.url, &["berlin"], "crash", 10, &stop, &count);
    eventually("acknowledgements before SIGTERM", || {
        let n = count.load(Ordering::Relaxed);
        async move { (n >= 500).then_some(()) }
    })
    .await;
    let (code, took) = actix_web::rt::task::spawn_blocking(move || relay.terminate())
        .await
        .unwrap();
    let acked = stop_senders(&stop, senders).await;
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    eprintln!(
        "sigterm: stopped in {took:?} with {} acknowledged",
        acked.len()
    );

    let relay = ChildRelay::start(dir.path());
    let out = dir.path().join("out").join("berlin.ndjson");
    eventually("every acknowledged uuid after the restart", || {
        let ids: HashSet<String> = read_ndjson(&out)
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        let missing = acked.iter().filter(|(_, u)| !ids.contains(u)).count();
        async move { (missing == 0).then_some(()) }
    })
    .await;
    relay.kill();
    sim.stop().await;
}
