//! The Open API budget as the vendor sees it: the simulated Open API applies the vendor's rule
//! (over the limit in a minute => 429 for a minute) and records every request.

use gymrelay::simulate::{Fault, OpenApiSim, SimOptions, SimStudio};

use crate::helpers::*;

/// Polls `/api/studios` a few times over a short while and returns what it saw last, so that
/// "nothing more happens" is checked over time rather than at one instant.
async fn settle(app: &TestApp, polls: usize) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..polls {
        last = app.admin_json("GET", "/api/studios").await;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    last
}

/// Makes berlin's Open API answer with `fault`, sends one event that needs it, and returns
/// for how many seconds the relay then shows the customer endpoint held. The fault stays until
/// the relay shows the hold: cleared earlier, the simulator could answer the request after all.
async fn hold_from(app: &TestApp, fault: Fault) -> u64 {
    app.sim.set_fault("berlin", fault);
    app.notify("berlin", &unique("r"), "CUSTOMER_UPDATED", 1)
        .await;
    eventually("the endpoint to be held", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        studios["studios"][0]["budget"]["/v1/customers/{id}"]["held_for_seconds"]
            .as_u64()
            .filter(|&seconds| seconds > 0)
    })
    .await
}

#[actix_rt::test]
async fn the_studio_never_exceeds_its_budget_per_endpoint() {
    let app = spawn_app(vec![
        Studio::new("berlin").open_api("requests_per_minute = 5")
    ])
    .await;
    for i in 0..8 {
        app.notify("berlin", &unique("b"), "CUSTOMER_UPDATED", i + 1)
            .await;
    }
    // Another endpoint has its own budget.
    app.notify("berlin", &unique("c"), "CLASS_BOOKING_CREATED", 1)
        .await;
    let delivered = app.delivered("berlin", 5).await;
    assert_eq!(delivered.len(), 5);
    // A line is in the file before its sync ends and before the event leaves the inbox.
    eventually("the fifth event to leave the inbox", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        (studios["studios"][0]["inbox_depth"] == 4).then_some(())
    })
    .await;
    // And then nothing more happens over the next half second: a sixth fetch would go out at
    // once if the budget let it.
    let studios = settle(&app, 10).await;
    let berlin = &studios["studios"][0];
    assert_eq!(berlin["budget"]["/v1/customers/{id}"]["used"], 5);
    assert_eq!(
        berlin["inbox_depth"], 4,
        "three customers and the booking wait in order"
    );
    let requests = app.sim.requests();
    let customers = requests
        .iter()
        .filter(|r| r.endpoint == "/v1/customers/{id}")
        .count();
    assert_eq!(customers, 5, "no sixth customer request within the minute");
    // The booking's endpoint has budget left, so its answer is fetched ahead; it is still
    // delivered only after the customers before it.
    let bookings = requests
        .iter()
        .filter(|r| r.endpoint == "/v1/classes/booking/{id}")
        .count();
    assert_eq!(bookings, 1);
    assert!(requests.iter().all(|r| r.status == 200));
    app.stop().await;
}

#[actix_rt::test]
async fn a_429_holds_the_endpoint_for_a_minute() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let held = hold_from(&app, Fault::Status(429)).await;
    assert!((55..=60).contains(&held), "held for {held} s");
    app.sim.set_fault("berlin", Fault::None);
    settle(&app, 10).await;
    assert_eq!(app.sim.requests().len(), 1, "no request while held");
    let (_, metrics) = app.admin("GET", "/metrics").await;
    assert!(
        metrics.contains(
            "gymrelay_openapi_holds_total{endpoint=\"/v1/customers/{id}\",studio=\"berlin\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_restart_remembers_the_minute_already_used() {
    let dir = tempfile::tempdir().unwrap();
    let studios = [Studio::new("berlin").open_api("requests_per_minute = 3")];
    let sim = OpenApiSim::start_with(
        "127.0.0.1:0".parse().unwrap(),
        vec![SimStudio::new("berlin", open_api_key("berlin"))],
        SimOptions {
            vendor_limit: Some(3),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    write_tenants(dir.path(), &studios, &sim);
    let config = config_for(dir.path());

    for round in 0..2 {
        // Like a supervisor restarting it: the previous run's store lock is released a moment
        // after it stops.
        let relay = eventually("the relay to start", || async {
            gymrelay::Relay::start(&config).await.ok()
        })
        .await;
        let url = format!("http://{}/webhook", relay.addr());
        let handle = relay.handle();
        let running = actix_web::rt::spawn(relay.run());
        let client = awc::Client::default();
        for i in 0..3 {
            let body = notification(&unique("r"), "CUSTOMER_UPDATED", i + 1, None).to_string();
            post_with(
                &client,
                &url,
                Some(&webhook_key("berlin")),
                body.into_bytes(),
            )
            .await;
        }
        if round == 0 {
            eventually("three fetches", || async {
                (sim.requests().len() == 3).then_some(())
            })
            .await;
        } else {
            // Polled over a short while: the restarted relay must not spend a fresh minute.
            for _ in 0..10 {
                actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
                assert_eq!(
                    sim.requests().len(),
                    3,
                    "a request beyond the minute's budget"
                );
            }
        }
        handle.stop().await;
        running.await.unwrap().unwrap();
    }
    assert!(
        sim.requests().iter().all(|r| r.status == 200),
        "no 429 from the vendor"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn a_429_asking_for_an_endless_pause_holds_the_endpoint_at_most_an_hour() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let held = hold_from(&app, Fault::StatusRetryAfter(429, u64::MAX)).await;
    assert!((3500..=3600).contains(&held), "held for {held} s");
    app.stop().await;
}
