//! The shipped binary runs on jemalloc with its tuning. A misnamed configuration symbol links
//! fine and is silently ignored, so this asks jemalloc itself what it read.

use std::process::Command;

#[test]
fn the_binary_runs_on_tuned_jemalloc() {
    let output = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .arg("--version")
        // Adds to the built-in options; jemalloc prints its statistics on exit.
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("the gymrelay binary runs");
    assert!(output.status.success());
    let stats = String::from_utf8_lossy(&output.stderr);
    for option in [
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 1000",
        "opt.muzzy_decay_ms: 0",
    ] {
        assert!(stats.contains(option), "{option} not in:\n{stats}");
    }
}
