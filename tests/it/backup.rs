//! A backup taken while webhooks keep arriving holds every event acknowledged before it began,
//! opens as a store of its own, and `gymrelay restore` puts it in place for a relay that then
//! delivers those events.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use gymrelay::config::StorageConfig;
use gymrelay::store::Store;
use gymrelay::tenant::StudioId;

use crate::helpers::*;

#[actix_rt::test]
async fn a_backup_under_load_holds_every_event_acknowledged_before_it() {
    let app = spawn_app_with(vec![Studio::new("berlin")], unlimited_intake).await;
    // Paused, so the events wait in the inbox and the copy must hold them.
    app.admin_json("POST", "/api/studios/berlin/pause").await;
    let before = send_deletions(&app, "berlin", &unique("b"), 200).await;
    // Outside the relay's own temp dir, which goes with it.
    let backups = tempfile::tempdir().unwrap();
    let target = backups.path().join("backup");
    let target_arg = target.display().to_string();
    // Webhooks keep arriving while the copy is taken.
    let load = async {
        let mut taken = 0;
        for _ in 0..200 {
            let uuid = unique("during");
            if app.notify("berlin", &uuid, "CUSTOMER_DELETED", 1).await.0 == 200 {
                taken += 1;
            }
        }
        taken
    };
    let path = format!("/api/backup?to={target_arg}");
    let backup = app.admin("POST", &path);
    let ((status, report), taken) = futures_util::join!(backup, load);
    assert_eq!(status, 200, "{report}");
    assert_eq!(taken, 200, "intake went on during the copy");
    let (status, again) = app
        .admin("POST", &format!("/api/backup?to={target_arg}"))
        .await;
    assert_eq!(status, 400, "a backup never overwrites one: {again}");
    // The command, with a path that needs encoding in the query.
    let config = backups.path().join("relay.toml");
    std::fs::write(&config, format!("[admin]\ntoken = {ADMIN_TOKEN:?}\n")).unwrap();
    let second = backups.path().join("second copy & more");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args(["backup", "--admin-url", &app.admin_url, "--config"])
        .arg(&config)
        .arg("--to")
        .arg(&second)
        .output()
        .expect("backup runs");
    let complaint = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{complaint}");
    assert!(
        second.join("db").exists(),
        "the copy is where it was asked for"
    );
    app.stop().await;

    // Restored on a fresh machine: a relay started on it delivers every event acknowledged
    // before the backup began.
    let fresh = tempfile::tempdir().unwrap();
    let studios = [Studio::new("berlin")];
    let sim = start_sim(&studios).await;
    write_tenants(fresh.path(), &studios, &sim);
    let restore_config = fresh.path().join("restore.toml");
    let storage = fresh.path().join("data").display().to_string();
    std::fs::write(&restore_config, format!("[storage]\npath = {storage:?}\n")).unwrap();
    let restore = |from: &Path| -> Output {
        Command::new(env!("CARGO_BIN_EXE_gymrelay"))
            .args(["restore", "--from"])
            .arg(from)
            .arg("--config")
            .arg(&restore_config)
            .output()
            .expect("restore runs")
    };
    let restored = restore(&second);
    let said = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(said.contains("event(s) waiting (berlin "), "{said}");
    let again = restore(&second);
    let complaint = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success(),
        "a restore never overwrites a store"
    );
    assert!(
        complaint.contains(&format!("gymrelay: storage.path {storage}: not empty")),
        "{complaint}"
    );
    let not_a_backup = restore(&fresh.path().join("tenants"));
    let complaint = String::from_utf8_lossy(&not_a_backup.stderr);
    assert!(!not_a_backup.status.success());
    assert!(complaint.starts_with("gymrelay: --from "), "{complaint}");
    assert!(complaint.contains("not a backup"), "{complaint}");

    let relay = RelayProcess::start(fresh.path(), "").await;
    let out = fresh.path().join("out").join("berlin.ndjson");
    eventually("the restored events to be delivered", || {
        let delivered: HashSet<String> = read_ndjson(&out)
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        let all = before.iter().all(|uuid| delivered.contains(uuid));
        async move { all.then_some(()) }
    })
    .await;
    relay.stop().await;

    let copy = Store::open(
        &StorageConfig {
            path: target,
            ..StorageConfig::default()
        }
        .store_settings(),
    )
    .expect("the copy opens as a store");
    let studio = StudioId::parse("berlin").unwrap();
    let waiting: std::collections::HashSet<String> = copy
        .pending(&studio, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    for uuid in &before {
        assert!(
            waiting.contains(uuid),
            "{uuid} was acknowledged before the backup"
        );
    }
}
