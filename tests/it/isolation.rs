//! Studios do not share keys, Open API keys, sinks or delays.

use gymrelay::simulate::Fault;

use crate::helpers::*;

#[actix_rt::test]
async fn a_studio_with_a_dead_open_api_does_not_slow_the_other() {
    let app = spawn_app(vec![Studio::new("berlin"), Studio::new("hamburg")]).await;
    app.sim.set_fault("berlin", Fault::Hang);

    app.notify("berlin", &unique("b"), "CUSTOMER_UPDATED", 1)
        .await;
    let berlin_request = eventually("berlin's request to reach its Open API", || {
        let seen = app.sim.requests().iter().any(|r| r.studio == "berlin");
        async move { seen.then_some(()) }
    });
    berlin_request.await;

    for i in 0..20 {
        let (status, _) = app
            .notify("hamburg", &unique("h"), "CUSTOMER_UPDATED", i + 1)
            .await;
        assert_eq!(status, 200);
    }
    let hamburg = app.delivered("hamburg", 20).await;
    assert!(hamburg
        .iter()
        .all(|e| e["studio"] == "hamburg" && e["enrichment"]["status"] == "fetched"));
    assert!(
        read_ndjson(&app.output("berlin")).is_empty(),
        "berlin is still waiting"
    );

    // Each studio used its own Open API key and base URL.
    for r in app.sim.requests() {
        assert!(r.key_ok, "{r:?}");
    }
    // A studio's webhook key is not accepted as another's: the key decides the studio.
    let uuid = unique("which");
    app.notify("hamburg", &uuid, "CUSTOMER_DELETED", 1).await;
    let hamburg = app.delivered("hamburg", 21).await;
    assert_eq!(hamburg.last().unwrap()["id"], uuid);
    app.stop().await;
}

#[actix_rt::test]
async fn events_wait_through_open_api_failures_and_nothing_is_dropped() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    app.sim.set_fault("berlin", Fault::Status(503));
    let uuid = unique("retry");
    app.notify("berlin", &uuid, "CUSTOMER_UPDATED", 5).await;
    eventually("a failed attempt", || {
        let failed = app.sim.requests().iter().any(|r| r.status == 503);
        async move { failed.then_some(()) }
    })
    .await;
    app.sim.set_fault("berlin", Fault::Status(401));
    eventually("a rejected attempt", || {
        let rejected = app.sim.requests().iter().any(|r| r.status == 401);
        async move { rejected.then_some(()) }
    })
    .await;
    assert!(read_ndjson(&app.output("berlin")).is_empty());
    // The simulator records the 401 as it answers; the relay takes it in a moment later.
    eventually("the studio to show its key rejected", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        (studios["studios"][0]["state"] == "credentials_rejected").then_some(())
    })
    .await;

    // Once the Open API is fixed the kept event goes through. The credentials backoff is long,
    // so a pause and resume makes the studio try again now.
    app.sim.set_fault("berlin", Fault::None);
    app.admin_json("POST", "/api/studios/berlin/pause").await;
    app.admin_json("POST", "/api/studios/berlin/resume").await;
    let delivered = app.delivered("berlin", 1).await;
    assert_eq!(delivered[0]["id"], uuid);
    assert_eq!(delivered[0]["enrichment"]["status"], "fetched");
    app.stop().await;
}
