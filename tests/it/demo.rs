//! `gymrelay demo` shows enriched events and stops by itself when asked to.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_prints_enriched_events_and_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args(["demo", "--rate", "20", "--stop-after", "8", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the demo did not stop by itself within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("POST http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("8 enriched events delivered"), "{stdout}");
    assert!(
        stdout.contains("fetched") || stdout.contains("skipped"),
        "{stdout}"
    );
    let written: usize = ["berlin-mitte", "hamburg-altona"]
        .iter()
        .map(|s| {
            std::fs::read_to_string(dir.path().join("out").join(format!("{s}.ndjson")))
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum();
    assert!(written >= 8, "{written} lines written");
}
