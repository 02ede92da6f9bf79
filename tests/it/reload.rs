//! Hot reload of tenants/ while webhooks keep arriving for another studio.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gymrelay::simulate::Fault;

use crate::helpers::*;

#[actix_rt::test]
async fn add_edit_remove_and_broken_edit_under_load() {
    let app = spawn_app(vec![
        Studio::new("berlin"),
        Studio::new("hamburg"),
        Studio::new("munich").without_file(),
    ])
    .await;
    let dir = app.dir.path().to_path_buf();

    // Hamburg gets a steady stream of webhooks throughout; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = actix_web::rt::spawn({
        let (url, stop, sent, failed) =
            (app.url.clone(), stop.clone(), sent.clone(), failed.clone());
        async move {
            let client = awc::Client::default();
            while !stop.load(Ordering::Relaxed) {
                let body = notification(&unique("load"), "CUSTOMER_DELETED", 1, None).to_string();
                let (status, _) = post_with(
                    &client,
                    &format!("{url}/webhook"),
                    Some(&webhook_key("hamburg")),
                    body.into_bytes(),
                )
                .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });

    // Add: a new file onboards a studio.
    let written = Instant::now();
    write_tenant(
        &dir,
        &Studio::new("munich"),
        &[webhook_key("munich")],
        &app.sim,
    );
    eventually("munich to be onboarded", || async {
        let (status, _) = app
            .notify("munich", &unique("m"), "CUSTOMER_DELETED", 1)
            .await;
        (status == 200).then_some(())
    })
    .await;
    eprintln!(
        "reload: new studio accepted {:?} after its file was written",
        written.elapsed()
    );

    // Edit: rotate berlin's key by listing both, then dropping the old one.
    let new_key = "wh-berlin-rotated".to_string();
    write_tenant(
        &dir,
        &Studio::new("berlin"),
        &[webhook_key("berlin"), new_key.clone()],
        &app.sim,
    );
    eventually("the new key to work", || async {
        let body = notification(&unique("k"), "CUSTOMER_DELETED", 1, None).to_string();
        let (status, _) = app.post(Some(&new_key), body).await;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(
        app.notify("berlin", &unique("old"), "CUSTOMER_DELETED", 1)
            .await
            .0,
        200,
        "both keys during a rotation"
    );
    write_tenant(
        &dir,
        &Studio::new("berlin"),
        std::slice::from_ref(&new_key),
        &app.sim,
    );
    eventually("the old key to stop working", || async {
        let (status, _) = app
            .notify("berlin", &unique("old"), "CUSTOMER_DELETED", 1)
            .await;
        (status == 401).then_some(())
    })
    .await;

    // Broken edit: the last good version keeps running and the error is reported.
    std::fs::write(
        dir.join("tenants/berlin.toml"),
        "webhook_api_keys = [\"unterminated",
    )
    .unwrap();
    eventually("the broken file to be reported", || async {
        let json = app.admin_json("GET", "/api/studios").await;
        let berlin = json["studios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "berlin")
            .cloned();
        berlin.filter(|b| b["state"] == "config_error")
    })
    .await;
    let body = notification(&unique("still"), "CUSTOMER_DELETED", 1, None).to_string();
    assert_eq!(
        app.post(Some(&new_key), body).await.0,
        200,
        "last good version still serves"
    );

    // Remove: munich's intake stops with 401; its pending event stays on disk and is reported.
    app.sim.set_fault("munich", Fault::Hang);
    let pending = unique("pending");
    assert_eq!(
        app.notify("munich", &pending, "CUSTOMER_UPDATED", 1)
            .await
            .0,
        200
    );
    std::fs::remove_file(dir.join("tenants/munich.toml")).unwrap();
    eventually("munich to be refused", || async {
        let (status, _) = app
            .notify("munich", &unique("gone"), "CUSTOMER_DELETED", 1)
            .await;
        (status == 401).then_some(())
    })
    .await;
    let json = app.admin_json("GET", "/api/studios").await;
    assert_eq!(
        json["removed_with_pending_events"][0]["id"], "munich",
        "{json}"
    );
    // The hung event and whatever was accepted before the removal took effect.
    assert!(json["removed_with_pending_events"][0]["inbox_depth"].as_u64() >= Some(1));

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reload: {sent} webhooks for hamburg during the reloads, {failed} failed");
    assert!(sent > 50, "the load ran ({sent})");
    assert_eq!(failed, 0);
    app.stop().await;
}
