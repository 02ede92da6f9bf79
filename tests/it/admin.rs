//! The admin listener: health, readiness, metrics, studios and dead letters.

use gymrelay::simulate::Fault;

use crate::helpers::*;

/// The value of one sample line, e.g. `gymrelay_webhooks_total{outcome="accepted",studio="berlin"}`.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[actix_rt::test]
async fn health_readiness_and_metrics_move_with_traffic() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    assert_eq!(app.admin("GET", "/healthz").await.0, 200);
    assert_eq!(app.admin("GET", "/readyz").await.0, 200);

    for i in 0..3 {
        app.notify("berlin", &unique("m"), "CUSTOMER_UPDATED", i + 1)
            .await;
    }
    let dup = unique("d");
    app.notify("berlin", &dup, "CUSTOMER_DELETED", 1).await;
    app.notify("berlin", &dup, "CUSTOMER_DELETED", 1).await;
    app.post(Some("nope"), "{}").await;
    app.post(Some(&webhook_key("berlin")), "{}").await;
    app.delivered("berlin", 4).await;
    app.inbox_emptied().await;

    let (status, metrics) = app.admin("GET", "/metrics").await;
    assert_eq!(status, 200);
    let webhooks = |outcome: &str, studio: &str| {
        sample(
            &metrics,
            &format!("gymrelay_webhooks_total{{outcome=\"{outcome}\",studio=\"{studio}\"}}"),
        )
    };
    assert_eq!(webhooks("accepted", "berlin"), Some(4.0), "{metrics}");
    assert_eq!(webhooks("duplicate", "berlin"), Some(1.0));
    assert_eq!(webhooks("invalid", "berlin"), Some(1.0));
    assert_eq!(webhooks("unauthorized", "unknown"), Some(1.0));
    assert_eq!(sample(&metrics, "gymrelay_ack_seconds_count"), Some(7.0));
    assert_eq!(
        sample(&metrics, "gymrelay_openapi_requests_total{endpoint=\"/v1/customers/{id}\",status=\"200\",studio=\"berlin\"}"),
        Some(3.0)
    );
    // Four accepted events, each delivered once to the studio's one file sink.
    let sink = app.output("berlin").display().to_string();
    assert_eq!(
        sample(
            &metrics,
            &format!("gymrelay_sink_deliveries_total{{result=\"delivered\",sink=\"file:{sink}\",studio=\"berlin\"}}")
        ),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "gymrelay_inbox_depth{studio=\"berlin\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "gymrelay_dead_letters{studio=\"berlin\"}"),
        Some(0.0)
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_admin_api_needs_the_token_and_never_shows_a_key() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let client = awc::Client::default();
    for auth in [None, Some("Bearer wrong")] {
        let mut req = client.get(format!("{}/api/studios", app.admin_url));
        if let Some(auth) = auth {
            req = req.insert_header(("authorization", auth));
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 401);
    }

    app.notify("berlin", &unique("s"), "CUSTOMER_UPDATED", 2)
        .await;
    app.delivered("berlin", 1).await;
    let (status, body) = app.admin("GET", "/api/studios").await;
    assert_eq!(status, 200);
    for secret in [webhook_key("berlin"), open_api_key("berlin")] {
        assert!(!body.contains(&secret), "a key leaked into /api/studios");
    }
    assert!(body.contains("\"id\":\"berlin\""), "{body}");
    // The file has the event a moment before the inbox entry is removed.
    let json = eventually("the inbox to empty", || async {
        let json = app.admin_json("GET", "/api/studios").await;
        (json["studios"][0]["inbox_depth"] == 0).then_some(json)
    })
    .await;
    let berlin = &json["studios"][0];
    assert_eq!(berlin["id"], "berlin");
    assert_eq!(berlin["state"], "running");
    assert_eq!(berlin["inbox_depth"], 0);
    assert_eq!(berlin["dead_letters"], 0);
    assert!(berlin["last_event_at"].as_str().is_some());
    assert_eq!(berlin["budget"]["/v1/customers/{id}"]["limit"], 900);
    assert_eq!(berlin["budget"]["/v1/customers/{id}"]["used"], 1);
    app.stop().await;
}

#[actix_rt::test]
async fn a_400_from_the_open_api_becomes_a_dead_letter_that_can_be_replayed() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    app.sim.set_fault("berlin", Fault::Status(400));
    let bad = unique("bad");
    app.notify("berlin", &bad, "CUSTOMER_UPDATED", 5).await;
    // The studio is not blocked behind it.
    let next = unique("next");
    app.notify("berlin", &next, "CUSTOMER_DELETED", 5).await;
    let delivered = app.delivered("berlin", 1).await;
    assert_eq!(delivered[0]["id"], next);

    let letters = app
        .admin_json("GET", "/api/dead-letters?studio=berlin")
        .await;
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["event"]["id"], bad);
    assert_eq!(letter["stage"], "enrichment");
    assert!(
        letter["reason"].as_str().unwrap().contains("400"),
        "{letter}"
    );
    assert_eq!(letter["event"]["attempts"][0]["stage"], "enrichment");
    let studios = app.admin_json("GET", "/api/studios").await;
    assert_eq!(studios["studios"][0]["dead_letters"], 1);

    app.sim.set_fault("berlin", Fault::None);
    let id = letter["id"].as_str().unwrap();
    let replayed = app
        .admin_json("POST", &format!("/api/dead-letters/{id}/replay"))
        .await;
    assert_eq!(replayed["replayed"][0], id);
    let delivered = app.delivered("berlin", 2).await;
    assert_eq!(delivered[1]["id"], bad);
    assert_eq!(delivered[1]["enrichment"]["status"], "fetched");
    let letters = app.admin_json("GET", "/api/dead-letters").await;
    assert_eq!(letters["dead_letters"].as_array().unwrap().len(), 0);
    assert_eq!(
        app.admin("POST", &format!("/api/dead-letters/{id}/replay"))
            .await
            .0,
        404
    );
    app.stop().await;
}

/// Runs `gymrelay <args>` against the in-process relay's admin API.
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gymrelay"));
    command
        .args(args)
        .args(["--admin-url", &app.admin_url])
        .env("GYMRELAY_ADMIN__TOKEN", ADMIN_TOKEN)
        .current_dir(app.dir.path());
    let output = actix_web::rt::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[actix_rt::test]
async fn dead_letters_cli_lists_and_replays_through_the_admin_api() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    app.sim.set_fault("berlin", Fault::Status(422));
    let uuid = unique("cli");
    app.notify("berlin", &uuid, "CONTRACT_CREATED", 7).await;
    let id = eventually("a dead letter", || async {
        let json = app.admin_json("GET", "/api/dead-letters").await;
        json["dead_letters"][0]["id"].as_str().map(str::to_string)
    })
    .await;

    let (ok, out) = cli(&app, &["dead-letters", "list", "--studio", "berlin"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&id) && out.contains(&uuid) && out.contains("422"),
        "{out}"
    );
    assert!(out.contains("1 dead letter(s)"), "{out}");

    app.sim.set_fault("berlin", Fault::None);
    let (ok, out) = cli(&app, &["dead-letters", "replay", "--studio", "berlin"]).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("replayed {id}")), "{out}");
    let delivered = app.delivered("berlin", 1).await;
    assert_eq!(delivered[0]["id"], uuid);

    let (ok, out) = cli(&app, &["dead-letters", "replay", "berlin:999"]).await;
    assert!(!ok, "an unknown id fails: {out}");
    assert!(out.contains("no such dead letter"), "{out}");
    app.stop().await;
}

#[actix_rt::test]
async fn a_paused_studio_queues_and_resumes_where_it_stopped() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let paused = app.admin_json("POST", "/api/studios/berlin/pause").await;
    assert_eq!(paused["state"], "paused");
    eventually("the pause to take effect", || async {
        let json = app.admin_json("GET", "/api/studios").await;
        (json["studios"][0]["state"] == "paused").then_some(())
    })
    .await;
    // A deletion needs no Open API request: a running studio delivers it within milliseconds.
    let uuid = unique("held");
    assert_eq!(
        app.notify("berlin", &uuid, "CUSTOMER_DELETED", 4).await.0,
        200
    );
    // Absence takes a window to show: half a second of polls must all see it still queued.
    for _ in 0..10 {
        let json = app.admin_json("GET", "/api/studios").await;
        assert_eq!(json["studios"][0]["inbox_depth"], 1, "queued while paused");
        assert!(read_ndjson(&app.output("berlin")).is_empty());
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    app.admin_json("POST", "/api/studios/berlin/resume").await;
    let delivered = app.delivered("berlin", 1).await;
    assert_eq!(delivered[0]["id"], uuid);
    assert_eq!(app.admin("POST", "/api/studios/nowhere/pause").await.0, 404);
    app.stop().await;
}
