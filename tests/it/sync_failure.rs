//! A failed storage sync: the relay acknowledges nothing more, stops with exit code 75, and a
//! restart (what the shipped systemd unit does) takes webhooks again with nothing acknowledged
//! lost.

use std::collections::HashSet;

use crate::helpers::*;

#[actix_rt::test]
async fn a_failed_sync_stops_the_relay_with_75_and_a_restart_takes_webhooks_again() {
    let studios = [Studio::new("berlin")];
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    let mut relay = RelayProcess::start(dir.path(), "").await;
    let client = awc::Client::default();
    let mut acknowledged = Vec::new();
    for _ in 0..10 {
        let uuid = unique("sync");
        assert_eq!(
            notify_at(&client, &relay.url, "berlin", &uuid, 3).await,
            200
        );
        acknowledged.push(uuid);
    }
    // The committer syncs the directory of sled's blob files: without it, the sync fails, as
    // it would on a disk that reports an I/O error.
    std::fs::remove_dir_all(dir.path().join("data/blobs")).unwrap();
    // The idle check may find the failure first and stop the relay before this arrives: then
    // there is no answer at all, which is as good as a refusal.
    let late = unique("late");
    let body = notification(&late, "CUSTOMER_UPDATED", 3, None).to_string();
    let answer = client
        .post(&relay.url)
        .insert_header(("x-api-key", webhook_key("berlin")))
        .send_body(body)
        .await;
    if let Ok(answer) = answer {
        assert_ne!(answer.status(), 200, "acknowledged after a failed sync");
    }
    assert_eq!(relay.exit_code().await, Some(75));
    let log = relay.kill();
    assert!(log.contains("storage sync failed"), "{log}");

    // What systemd's Restart=on-failure does (sled makes its blob directory again).
    let relay = RelayProcess::start(dir.path(), "").await;
    let again = unique("again");
    assert_eq!(
        notify_at(&client, &relay.url, "berlin", &again, 3).await,
        200
    );
    acknowledged.push(again);
    let path = dir.path().join("out/berlin.ndjson");
    eventually("every acknowledged event in the sink", || {
        let delivered: HashSet<String> = read_ndjson(&path)
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect();
        let all = acknowledged.iter().all(|id| delivered.contains(id));
        async move { all.then_some(()) }
    })
    .await;
    relay.kill();
    sim.stop().await;
}
