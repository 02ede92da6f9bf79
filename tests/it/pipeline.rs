//! Several Open API requests in flight per studio, against a simulated Open API that answers
//! after a random delay as the real one does across the Internet: sinks still see the inbox's
//! order, an entity's snapshots never go back in time, a 429 holds its endpoint, and pausing or
//! editing the studio mid-flight loses nothing.

use std::collections::HashMap;
use std::time::Duration;

use gymrelay::simulate::{Fault, SimOptions};
use serde_json::Value;

use crate::helpers::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ids(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

/// Each id once, in the order first seen: what at-least-once delivery must still keep.
fn first_seen(events: &[Value]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    ids(events)
        .into_iter()
        .filter(|id| seen.insert(*id))
        .collect()
}

#[actix_rt::test]
async fn events_reach_every_sink_in_inbox_order_and_snapshots_never_go_back_in_time() {
    let studio = Studio::new("berlin")
        .latency(ms(10), ms(300))
        .with("[[sinks]]\ntype = \"file\"\npath = \"{out}/berlin-copy.ndjson\"\n");
    let options = SimOptions {
        stamp_answers: true,
        ..SimOptions::default()
    };
    let app = spawn_app_with_sim(vec![studio], options, |_| {}).await;
    // 500 events over 50 customers, in an order that revisits each customer often.
    let sent: Vec<(String, i64)> = (0..500u64)
        .map(|i| {
            (
                format!("{}-{i}", unique("p")),
                1 + ((i * 37 + i * i) % 50) as i64,
            )
        })
        .collect();
    // Order and snapshots would hold trivially with one request at a time: watched while the
    // events arrive, the simulator sees several requests unanswered at once.
    let sending = std::cell::Cell::new(true);
    let send = async {
        for (uuid, customer) in &sent {
            let (status, _) = app
                .notify("berlin", uuid, "CUSTOMER_UPDATED", *customer)
                .await;
            assert_eq!(status, 200);
        }
        sending.set(false);
    };
    let watch = async {
        let mut most = 0;
        while sending.get() || app.sim.requests().iter().any(|r| r.status == 0) {
            let unanswered = app.sim.requests().iter().filter(|r| r.status == 0).count();
            most = most.max(unanswered);
            actix_web::rt::time::sleep(ms(5)).await;
        }
        most
    };
    let ((), most_in_flight) = futures_util::join!(send, watch);
    assert!(
        most_in_flight > 1,
        "at most {most_in_flight} request in flight"
    );
    let expected: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    let first = app.delivered("berlin", 500).await;
    let copy_path = app.dir.path().join("out/berlin-copy.ndjson");
    let copy = eventually("500 events in the second sink", || {
        let events = read_ndjson(&copy_path);
        async move { (events.len() >= 500).then_some(events) }
    })
    .await;
    for events in [&first, &copy] {
        assert_eq!(ids(events), expected, "every sink gets the inbox's order");
        let mut newest: HashMap<i64, i64> = HashMap::new();
        for event in events.iter() {
            let customer = event["entityId"].as_i64().unwrap();
            assert_eq!(event["entity"]["id"], customer);
            let served = event["entity"]["servedSeq"]
                .as_i64()
                .expect("every answer is stamped");
            let last = newest.entry(customer).or_insert(served);
            assert!(
                served >= *last,
                "customer {customer}: snapshot {served} delivered after {last}"
            );
            *last = served;
        }
    }
    assert!(app.sim.requests().iter().all(|r| r.status == 200));
    app.stop().await;
}

#[actix_rt::test]
async fn a_429_while_requests_are_in_flight_holds_the_endpoint_and_the_others_finish() {
    let studio = Studio::new("berlin").latency(ms(100), ms(1500));
    let app = spawn_app_with_sim(vec![studio], SimOptions::default(), |_| {}).await;
    let sent: Vec<String> = (1..=40).map(|i| format!("{}-{i}", unique("h"))).collect();
    for (i, uuid) in sent.iter().enumerate() {
        app.notify("berlin", uuid, "CUSTOMER_UPDATED", i as i64 + 1)
            .await;
    }
    // Once the first requests are out, the vendor starts refusing: every request that arrives
    // from now on is answered 429, while those already arrived are answered normally.
    eventually("requests in flight", || async {
        (app.sim.requests().len() >= 8).then_some(())
    })
    .await;
    let before_fault = app.sim.requests().len();
    app.sim.set_fault("berlin", Fault::Status(429));
    eventually("the endpoint to be held", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        studios["studios"][0]["budget"]["/v1/customers/{id}"]["held_for_seconds"]
            .as_u64()
            .filter(|&seconds| seconds > 0)
    })
    .await;
    let requests = eventually("every request sent to be answered", || async {
        let requests = app.sim.requests();
        requests.iter().all(|r| r.status != 0).then_some(requests)
    })
    .await;
    // Nothing more goes to the held endpoint.
    for _ in 0..10 {
        actix_web::rt::time::sleep(ms(50)).await;
        assert_eq!(app.sim.requests().len(), requests.len(), "sent while held");
    }
    // Delivered: exactly the events before the first refused one, in order; the rest wait.
    let customer = |path: &str| path.rsplit('/').next().unwrap().parse::<usize>().unwrap();
    let first_refused = requests
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| customer(&r.path))
        .min()
        .unwrap();
    let delivered = app.delivered("berlin", first_refused - 1).await;
    let expected: Vec<&str> = sent[..first_refused - 1]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(ids(&delivered), expected);
    // The requests already out when the vendor began refusing were answered, and their
    // answers used: their events are delivered, not fetched again.
    for request in &requests[..before_fault] {
        let event = &sent[customer(&request.path) - 1];
        assert!(
            ids(&delivered).contains(&event.as_str()),
            "{} not delivered",
            request.path
        );
    }
    let studios = app.admin_json("GET", "/api/studios").await;
    assert_eq!(
        studios["studios"][0]["inbox_depth"],
        sent.len() - (first_refused - 1)
    );
    app.stop().await;
}

#[actix_rt::test]
async fn pausing_and_editing_the_studio_mid_flight_loses_nothing() {
    let studio = || Studio::new("berlin").latency(ms(100), ms(400));
    let app = spawn_app_with_sim(vec![studio()], SimOptions::default(), |_| {}).await;
    let sent: Vec<String> = (0..60).map(|i| format!("{}-{i}", unique("m"))).collect();
    for (i, uuid) in sent.iter().enumerate() {
        app.notify("berlin", uuid, "CUSTOMER_UPDATED", 1 + (i % 20) as i64)
            .await;
    }
    // Paused while the simulator holds unanswered requests: their answers are abandoned.
    eventually("requests in flight", || async {
        app.sim
            .requests()
            .iter()
            .any(|r| r.status == 0)
            .then_some(())
    })
    .await;
    let paused = app.admin_json("POST", "/api/studios/berlin/pause").await;
    assert_eq!(paused["state"], "paused");
    app.admin_json("POST", "/api/studios/berlin/resume").await;
    eventually("the studio to show it runs again", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        (studios["studios"][0]["state"] == "running").then_some(())
    })
    .await;
    let before_edit = app.sim.requests().len();
    eventually("requests in flight again", || async {
        (app.sim.requests().len() > before_edit).then_some(())
    })
    .await;
    // An edit restarts the studio's worker with the new file, mid-flight.
    let edited = studio().open_api("requests_per_minute = 899");
    write_tenant(app.dir.path(), &edited, &[webhook_key("berlin")], &app.sim);
    // The file watcher may have applied it already; either way it is applied now.
    app.admin_json("POST", "/api/reload").await;
    eventually("the edited budget to be in force", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        (studios["studios"][0]["budget"]["/v1/customers/{id}"]["limit"] == 899).then_some(())
    })
    .await;

    app.delivered("berlin", sent.len()).await;
    app.inbox_emptied().await;
    let delivered = read_ndjson(&app.output("berlin"));
    let expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(first_seen(&delivered), expected, "each, in order");
    app.stop().await;
}

#[actix_rt::test]
async fn webhooks_of_one_studio_arriving_at_once_are_all_delivered() {
    let app = spawn_app_with(vec![Studio::new("berlin")], unlimited_intake).await;
    let sent: Vec<String> = (0..400).map(|i| format!("{}-{i}", unique("c"))).collect();
    // 32 at a time: the relay's workers take them in together, each taking its place in the
    // studio's inbox while others are being stored.
    for chunk in sent.chunks(32) {
        let posts = chunk
            .iter()
            .map(|uuid| app.notify("berlin", uuid, "CUSTOMER_DELETED", 1));
        for (status, _) in futures_util::future::join_all(posts).await {
            assert_eq!(status, 200);
        }
    }
    let delivered = app.delivered("berlin", sent.len()).await;
    let mut got = first_seen(&delivered);
    got.sort_unstable();
    let mut expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(got, expected, "every one delivered");
    app.inbox_emptied().await;
    app.stop().await;
}
