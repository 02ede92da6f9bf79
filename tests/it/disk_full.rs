//! A full disk: the relay's storage on a small tmpfs, filled by the test. Webhooks get 503 while
//! free space is below `storage.min_free_bytes`, and 200 again by themselves once it returns;
//! nothing acknowledged is lost.

use std::process::Command;

use crate::helpers::*;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// None where this machine does not let the test mount one (it needs root).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: sled's committer may hold the last file a moment longer.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[actix_rt::test]
async fn a_full_disk_gets_503_and_webhooks_are_taken_again_by_themselves_when_space_returns() {
    let Some(tmpfs) = Tmpfs::mount("24m") else {
        skip("cannot mount a tmpfs here (it needs root); the free-space floor is not tested");
        return;
    };
    let storage = tmpfs.dir.path().join("data");
    let app = spawn_app_with(vec![Studio::new("berlin")], |config| {
        config.storage.path = storage.clone();
        config.storage.min_free_bytes = Some(8 << 20);
        unlimited_intake(config);
    })
    .await;
    let mut accepted = send_deletions(&app, "berlin", &unique("full"), 20).await;

    // Fill the file system to 4 MiB short of full: below the 8 MiB floor.
    let ballast = tmpfs.dir.path().join("ballast");
    let free = fs2::available_space(tmpfs.dir.path()).unwrap();
    std::fs::write(&ballast, vec![0u8; (free - (4 << 20)) as usize]).unwrap();
    // Sent one after another until one is refused; those taken before that count too.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let uuid = unique("full");
        let (status, body) = app.notify("berlin", &uuid, "CUSTOMER_DELETED", 1).await;
        match status {
            200 => accepted.push(uuid),
            503 => {
                assert_eq!(body["error"], "storage is nearly full, please retry");
                break;
            }
            other => panic!("{other}: {body}"),
        }
        assert!(std::time::Instant::now() < deadline, "never refused");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (status, ready) = app.admin("GET", "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("below storage.min_free_bytes"), "{ready}");
    let studios = app.admin_json("GET", "/api/studios").await;
    assert!(studios["storage"]["problem"].is_string(), "{studios}");
    let floor: i64 = 8 << 20;
    // The gauge is set by the same check that refuses webhooks, just after it.
    eventually(
        "gymrelay_storage_free_bytes below the 8 MiB floor",
        || async {
            let (_, metrics) = app.admin("GET", "/metrics").await;
            let free = metrics
                .lines()
                .find_map(|l| l.strip_prefix("gymrelay_storage_free_bytes "))
                .map(|v| v.trim().parse::<i64>().expect("the gauge is an integer"));
            free.filter(|&free| free < floor)
        },
    )
    .await;

    // Space returns: webhooks are taken again, with no restart.
    std::fs::remove_file(&ballast).unwrap();
    let uuid = unique("room");
    eventually("a webhook to be taken again", || {
        let uuid = uuid.clone();
        let app = &app;
        async move {
            let (status, _) = app.notify("berlin", &uuid, "CUSTOMER_DELETED", 1).await;
            (status == 200).then_some(())
        }
    })
    .await;
    accepted.push(uuid);

    let delivered = app.delivered("berlin", accepted.len()).await;
    let ids: std::collections::HashSet<&str> =
        delivered.iter().filter_map(|e| e["id"].as_str()).collect();
    for uuid in &accepted {
        assert!(
            ids.contains(uuid.as_str()),
            "{uuid} was acknowledged and is lost"
        );
    }
    app.stop().await;
}

#[actix_rt::test]
async fn customers_changed_while_a_full_disk_kept_webhooks_out_are_reconciled_once_space_returns() {
    let Some(tmpfs) = Tmpfs::mount("24m") else {
        skip(
            "cannot mount a tmpfs here (it needs root); the sweep after a full disk is not tested",
        );
        return;
    };
    let storage = tmpfs.dir.path().join("data");
    let studio = Studio::new("berlin")
        .customers(300)
        .with("[reconcile]\nafter_downtime = \"1ms\"\n");
    let app = spawn_app_with(vec![studio], |config| {
        config.storage.path = storage.clone();
        config.storage.min_free_bytes = Some(8 << 20);
    })
    .await;
    let reconcile = |finished: fn(&serde_json::Value) -> bool| {
        let app = &app;
        eventually("a reconcile sweep to end", move || async move {
            let state = app.admin_json("GET", "/api/studios/berlin/reconcile").await;
            (state["running"].is_null() && finished(&state["last"]))
                .then_some(state["last"].clone())
        })
    };
    reconcile(|last| last["baseline"] == true).await;

    // The disk fills; the vendor's webhooks get 503 until space returns, and those about
    // customers 20 and 250 are given up on by the vendor after its last resend.
    let ballast = tmpfs.dir.path().join("ballast");
    let free = fs2::available_space(tmpfs.dir.path()).unwrap();
    std::fs::write(&ballast, vec![0u8; (free - (4 << 20)) as usize]).unwrap();
    let outage = eventually("the outage to be counted", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        let outage = &studios["outage"];
        outage["cause"].as_str().map(str::to_string)
    })
    .await;
    assert!(outage.contains("below storage.min_free_bytes"), "{outage}");
    for id in [20_i64, 250] {
        app.sim
            .update_customer("berlin", id, serde_json::json!({"city": "Potsdam"}));
    }

    std::fs::remove_file(&ballast).unwrap();
    let sweep = reconcile(|last| last["trigger"] == "downtime").await;
    assert_eq!(sweep["progress"]["changed"], 2, "{sweep}");
    let events = app.delivered("berlin", 2).await;
    let customers: Vec<i64> = events
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "CUSTOMER_RECONCILED");
            assert_eq!(e["entity"]["city"], "Potsdam");
            e["entityId"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(customers, [20, 250]);
    let studios = app.admin_json("GET", "/api/studios").await;
    assert!(studios["outage"].is_null(), "{studios}");
    app.stop().await;
}
