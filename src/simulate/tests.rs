//! The simulator spoken to over loopback HTTP, as the relay would.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use super::*;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn studios() -> Vec<SimStudio> {
    vec![
        SimStudio::new("berlin", "key-berlin"),
        SimStudio::new("hamburg", "key-hamburg"),
    ]
}

/// Status and parsed JSON body (Null when empty or not JSON).
async fn get(client: &awc::Client, url: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.insert_header(("x-api-key", key));
    }
    let mut response = request.send().await.expect("the simulator answers");
    let body = response.body().await.expect("a body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (response.status().as_u16(), json)
}

async fn head(client: &awc::Client, url: &str, key: &str) -> (u16, usize) {
    let mut response = client
        .head(url)
        .insert_header(("x-api-key", key))
        .send()
        .await
        .expect("the simulator answers");
    let body = response.body().await.expect("a body");
    (response.status().as_u16(), body.len())
}

fn assert_vendor_error(body: &Value, code: &str) {
    assert_eq!(body["errorCode"], code, "{body}");
    assert!(body["errorMessage"].is_string(), "{body}");
    let trace = body["traceId"].as_str().expect("traceId");
    assert!(uuid::Uuid::parse_str(trace).is_ok(), "{trace}");
}

#[actix_rt::test]
async fn open_api_checks_keys_serves_data_and_injects_faults() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    assert!(berlin.starts_with("http://127.0.0.1:"));

    // The right key gets the generated customer.
    let mut response = client
        .get(format!("{berlin}/v1/customers/17"))
        .insert_header(("x-api-key", "key-berlin"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let customer: Value = response.json().await.expect("json");
    let expected = DataSet::new("berlin", studios()[0].seed).customer(17);
    assert_eq!(Some(customer), expected);

    // Keys are per studio: another studio's key, a wrong key or none are all 401.
    for key in [Some("key-hamburg"), Some("nope"), None] {
        let (status, body) = get(&client, &format!("{berlin}/v1/customers/17"), key).await;
        assert_eq!(status, 401);
        assert_vendor_error(&body, "UNAUTHORIZED");
    }

    // Unknown ids, unknown studios, unknown paths.
    let (status, body) = get(
        &client,
        &format!("{berlin}/v1/customers/2001"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(status, 404);
    assert_vendor_error(&body, "NOT_FOUND");
    let nowhere = format!("http://{}/nowhere/v1/customers/1", sim.addr());
    assert_eq!(get(&client, &nowhere, Some("key-berlin")).await.0, 404);
    assert_eq!(
        get(&client, &format!("{berlin}/v1/nothing"), Some("key-berlin"))
            .await
            .0,
        404
    );
    let (status, body) = get(
        &client,
        &format!("{berlin}/v1/customers/abc"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(status, 400);
    assert_vendor_error(&body, "VALIDATION_ERROR");

    // Every endpoint answers for an existing id and 404s past the generated range.
    let slot_class = data::class_of_slot(43);
    for (path, missing) in [
        (
            "/v1/communications/5/communication-preferences",
            "/v1/communications/2001/communication-preferences",
        ),
        ("/v1/customers/5/contracts", "/v1/customers/2001/contracts"),
        ("/v1/classes/booking/9", "/v1/classes/booking/2001"),
        (
            &format!("/v1/classes/{slot_class}/slots/43"),
            &format!("/v1/classes/{}/slots/43", slot_class % 40 + 1),
        ),
        (
            "/v1/appointments/booking/2",
            "/v1/appointments/booking/2001",
        ),
        ("/v1/employees/8", "/v1/employees/101"),
        ("/v1/taxadvisor/exports/4", "/v1/taxadvisor/exports/51"),
    ] {
        assert_eq!(
            get(&client, &format!("{berlin}{path}"), Some("key-berlin"))
                .await
                .0,
            200,
            "{path}"
        );
        assert_eq!(
            get(&client, &format!("{berlin}{missing}"), Some("key-berlin"))
                .await
                .0,
            404,
            "{missing}"
        );
    }
    let (status, info) = get(
        &client,
        &format!("{berlin}/v1/studios/information"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(info["studioName"], "Berlin");

    // HEAD only validates the key, on any path, and never carries a body.
    assert_eq!(
        head(&client, &format!("{berlin}/v1/customers/17"), "key-berlin").await,
        (200, 0)
    );
    assert_eq!(
        head(&client, &format!("{berlin}/v1/anything"), "key-berlin").await,
        (200, 0)
    );
    assert_eq!(
        head(&client, &format!("{berlin}/v1/customers/17"), "wrong").await,
        (401, 0)
    );

    // Only GET and HEAD.
    let response = client
        .post(format!("{berlin}/v1/customers/17"))
        .insert_header(("x-api-key", "key-berlin"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 405);

    // Faults hit one studio only, on every endpoint, before the key is looked at.
    let hamburg = sim.base_url("hamburg");
    sim.set_fault("berlin", Fault::Status(503));
    let (status, body) = get(
        &client,
        &format!("{berlin}/v1/employees/1"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(status, 503);
    assert_vendor_error(&body, "SERVICE_UNAVAILABLE");
    assert_eq!(
        head(&client, &format!("{berlin}/v1/employees/1"), "key-berlin")
            .await
            .0,
        503
    );
    assert_eq!(
        get(
            &client,
            &format!("{hamburg}/v1/employees/1"),
            Some("key-hamburg")
        )
        .await
        .0,
        200
    );

    sim.set_fault("berlin", Fault::StatusRetryAfter(429, 7));
    let response = client
        .get(format!("{berlin}/v1/customers/1"))
        .insert_header(("x-api-key", "key-berlin"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );

    sim.set_fault("berlin", Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(
        get(
            &client,
            &format!("{berlin}/v1/customers/1"),
            Some("key-berlin")
        )
        .await
        .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.set_fault("berlin", Fault::None);
    assert_eq!(
        get(
            &client,
            &format!("{berlin}/v1/customers/1"),
            Some("key-berlin")
        )
        .await
        .0,
        200
    );

    // The record: arrival order, the path below the prefix, the template, key and status.
    let seen = sim.requests();
    let first = &seen[0];
    assert_eq!(first.studio, "berlin");
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, "/v1/customers/17");
    assert_eq!(first.endpoint, "/v1/customers/{id}");
    assert!(first.key_ok);
    assert_eq!(first.status, 200);
    assert!(!seen[1].key_ok && seen[1].status == 401);
    let slot = seen
        .iter()
        .find(|r| r.path.ends_with("/slots/43"))
        .expect("slot request recorded");
    assert_eq!(slot.endpoint, "/v1/classes/{classId}/slots/{id}");
    assert!(seen.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(seen.iter().all(|r| r.status != 0));
    assert_eq!(seen.last().map(|r| r.status), Some(200));

    // The client's pooled keep-alive connections do not hold up the stop.
    let stopping = Instant::now();
    sim.stop().await;
    assert!(stopping.elapsed() < Duration::from_millis(500));
}

#[actix_rt::test]
async fn stopping_answers_delayed_requests_at_once() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    sim.set_fault("berlin", Fault::Delay(Duration::from_secs(30)));
    let url = format!("{}/v1/customers/3", sim.base_url("berlin"));
    let waiting = actix_rt::spawn(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        get(&client, &url, Some("key-berlin")).await.0
    });
    while sim.requests().is_empty() {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = Instant::now();
    sim.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert_eq!(waiting.await.ok(), Some(200));
}

#[actix_rt::test]
async fn the_vendor_limit_locks_one_endpoint_for_a_full_window() {
    let window = Duration::from_millis(1500);
    let options = SimOptions {
        vendor_limit: Some(3),
        limit_window: window,
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with(loopback(), studios(), options)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    let customer = |id: i64| format!("{berlin}/v1/customers/{id}");

    // Different ids are the same endpoint.
    for id in 1..=3 {
        assert_eq!(get(&client, &customer(id), Some("key-berlin")).await.0, 200);
    }
    let breach = Instant::now();
    let (status, body) = get(&client, &customer(4), Some("key-berlin")).await;
    assert_eq!(status, 429);
    assert_vendor_error(&body, "TOO_MANY_REQUESTS");
    assert_eq!(get(&client, &customer(1), Some("key-berlin")).await.0, 429);

    // Other endpoints and other studios keep their own counters.
    assert_eq!(
        get(
            &client,
            &format!("{berlin}/v1/employees/1"),
            Some("key-berlin")
        )
        .await
        .0,
        200
    );
    let hamburg = sim.base_url("hamburg");
    assert_eq!(
        get(
            &client,
            &format!("{hamburg}/v1/customers/1"),
            Some("key-hamburg")
        )
        .await
        .0,
        200
    );
    // Requests with a bad key are refused before they are counted.
    assert_eq!(
        get(&client, &format!("{hamburg}/v1/employees/1"), Some("bad"))
            .await
            .0,
        401
    );

    actix_rt::time::sleep(window.saturating_sub(breach.elapsed()) + Duration::from_millis(100))
        .await;
    assert_eq!(get(&client, &customer(1), Some("key-berlin")).await.0, 200);

    let statuses: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.studio == "berlin" && r.endpoint == "/v1/customers/{id}")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 200]);
    sim.stop().await;
}

#[actix_rt::test]
async fn the_vendor_limit_counts_the_customer_list_as_its_own_endpoint() {
    let options = SimOptions {
        vendor_limit: Some(3),
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with(loopback(), studios(), options)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    let list = |offset: i64| format!("{berlin}/v1/customers?offset={offset}&sliceSize=10");

    // Pages of one list are one endpoint, whatever their offset.
    for offset in [0, 10, 20] {
        assert_eq!(get(&client, &list(offset), Some("key-berlin")).await.0, 200);
    }
    let (status, body) = get(&client, &list(30), Some("key-berlin")).await;
    assert_eq!(status, 429);
    assert_vendor_error(&body, "TOO_MANY_REQUESTS");

    // Fetching single customers has a counter of its own, and spending it leaves the list alone.
    for id in 1..=3 {
        let url = format!("{berlin}/v1/customers/{id}");
        assert_eq!(get(&client, &url, Some("key-berlin")).await.0, 200);
    }
    let hamburg = sim.base_url("hamburg");
    let url = format!("{hamburg}/v1/customers?sliceSize=10");
    assert_eq!(get(&client, &url, Some("key-hamburg")).await.0, 200);

    let seen: Vec<(&str, u16)> = sim
        .requests()
        .iter()
        .filter(|r| r.studio == "berlin")
        .map(|r| {
            (
                if r.endpoint == "/v1/customers" {
                    "list"
                } else {
                    "one"
                },
                r.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("list", 200),
            ("list", 200),
            ("list", 200),
            ("list", 429),
            ("one", 200),
            ("one", 200),
            ("one", 200),
        ]
    );
    let listed = sim.requests();
    assert!(listed
        .iter()
        .filter(|r| r.path == "/v1/customers")
        .all(|r| r.endpoint == "/v1/customers"));
    assert!(listed
        .iter()
        .filter(|r| r.path.starts_with("/v1/customers/"))
        .all(|r| r.endpoint == "/v1/customers/{id}"));
    sim.stop().await;
}

#[actix_rt::test]
async fn a_hanging_studio_never_answers_and_still_stops_promptly() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    sim.set_fault("berlin", Fault::Hang);
    let client = awc::Client::builder()
        .timeout(Duration::from_millis(300))
        .finish();
    let outcome = client
        .get(format!("{}/v1/customers/1", sim.base_url("berlin")))
        .insert_header(("x-api-key", "key-berlin"))
        .send()
        .await;
    assert!(outcome.is_err(), "no answer expected");
    let seen = sim.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].status, 0, "recorded on arrival, never answered");

    let stopping = Instant::now();
    sim.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3));
}

#[actix_rt::test]
async fn every_answer_waits_for_its_studios_latency_and_stop_cuts_it_short() {
    let ms = Duration::from_millis;
    let timed = vec![
        SimStudio::new("berlin", "key-berlin").with_latency(ms(150), ms(250)),
        SimStudio::new("hamburg", "key-hamburg").with_latency(ms(100), ms(100)),
        SimStudio::new("bremen", "key-bremen").with_latency(ms(30_000), ms(30_000)),
    ];
    let sim = OpenApiSim::start(loopback(), timed, None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");

    // Entities, errors and HEAD alike: every answer past the fault check takes its time. No
    // upper bound: a loaded machine may answer later, never sooner.
    for (path, key, status) in [
        ("/v1/customers/1", Some("key-berlin"), 200),
        ("/v1/customers/2", Some("key-berlin"), 200),
        ("/v1/customers/2001", Some("key-berlin"), 404),
        ("/v1/customers/1", Some("wrong"), 401),
    ] {
        let started = Instant::now();
        assert_eq!(
            get(&client, &format!("{berlin}{path}"), key).await.0,
            status
        );
        assert!(
            started.elapsed() >= ms(150),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let hamburg = format!("{}/v1/employees/1", sim.base_url("hamburg"));
    assert_eq!(head(&client, &hamburg, "key-hamburg").await, (200, 0));
    assert!(started.elapsed() >= ms(100), "{:?}", started.elapsed());

    // Faults do not wait: the latency is that of a normal answer. (10 s against 30 s leaves
    // a loaded machine plenty of room.)
    let bremen = format!("{}/v1/customers/1", sim.base_url("bremen"));
    sim.set_fault("bremen", Fault::Status(503));
    let started = Instant::now();
    assert_eq!(get(&client, &bremen, Some("key-bremen")).await.0, 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    sim.set_fault("bremen", Fault::None);

    // A long latency does not hold up the stop.
    let url = format!("{}/v1/customers/3", sim.base_url("bremen"));
    let waiting = actix_rt::spawn(async move {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        get(&client, &url, Some("key-bremen")).await.0
    });
    while sim
        .requests()
        .iter()
        .filter(|r| r.studio == "bremen")
        .count()
        < 2
    {
        actix_rt::time::sleep(ms(5)).await;
    }
    let stopping = Instant::now();
    sim.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2));
    assert_eq!(waiting.await.ok(), Some(200));
}

#[actix_rt::test]
async fn stamps_rise_in_answer_order_and_only_on_object_answers() {
    let ms = Duration::from_millis;
    let slow_and_fast = vec![
        // Long enough that the fast request surely overtakes it on a loaded machine.
        SimStudio::new("slow", "key-slow").with_latency(ms(2000), ms(2000)),
        SimStudio::new("fast", "key-fast"),
    ];
    let options = SimOptions {
        stamp_answers: true,
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with(loopback(), slow_and_fast, options)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let fast = sim.base_url("fast");
    let seq = |body: &Value| body["servedSeq"].as_u64();

    let (status, first) = get(&client, &format!("{fast}/v1/customers/7"), Some("key-fast")).await;
    assert_eq!(status, 200);
    assert_eq!(seq(&first), Some(1), "{first}");

    // Asked first, answered last: the slow answer gets the later stamp.
    let slow_url = format!("{}/v1/customers/7", sim.base_url("slow"));
    let slow =
        actix_rt::spawn(
            async move { get(&awc::Client::default(), &slow_url, Some("key-slow")).await },
        );
    while !sim.requests().iter().any(|r| r.studio == "slow") {
        actix_rt::time::sleep(ms(5)).await;
    }
    let (_, quick) = get(&client, &format!("{fast}/v1/customers/7"), Some("key-fast")).await;
    let (status, late) = slow.await.expect("the slow request ends");
    assert_eq!(status, 200);
    assert_eq!((seq(&quick), seq(&late)), (Some(2), Some(3)));

    // The stamp is the only change to the entity.
    let mut unstamped = late.clone();
    unstamped.as_object_mut().map(|o| o.remove("servedSeq"));
    let expected = DataSet::new("slow", SimStudio::new("slow", "k").seed).customer(7);
    assert_eq!(Some(unstamped), expected);

    // Arrays and errors are left alone, and take no number.
    let (status, contracts) = get(
        &client,
        &format!("{fast}/v1/customers/7/contracts"),
        Some("key-fast"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(contracts.is_array(), "{contracts}");
    let (status, missing) = get(
        &client,
        &format!("{fast}/v1/customers/2001"),
        Some("key-fast"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(seq(&missing), None);
    let (_, next) = get(&client, &format!("{fast}/v1/employees/1"), Some("key-fast")).await;
    assert_eq!(seq(&next), Some(4));
    sim.stop().await;

    // Off by default.
    let plain = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    let url = format!("{}/v1/customers/7", plain.base_url("berlin"));
    let (_, body) = get(&client, &url, Some("key-berlin")).await;
    assert!(body.is_object() && seq(&body).is_none(), "{body}");
    plain.stop().await;
}

/// Every customer the list gives, following `offset` from the start until `hasNext` is false,
/// with the checks every page must pass.
async fn list_all(client: &awc::Client, base: &str, key: &str, size: usize) -> Vec<Value> {
    let mut customers = Vec::new();
    let mut offset = String::new();
    loop {
        let url = format!("{base}/v1/customers?sliceSize={size}&offset={offset}");
        let (status, page) = get(client, &url, Some(key)).await;
        assert_eq!(status, 200, "{page}");
        let result = page["result"].as_array().expect("a result list");
        assert!(result.len() <= size);
        let has_next = page["hasNext"].as_bool().expect("hasNext");
        if let Some(last) = result.last() {
            assert_eq!(page["offset"], last["id"].to_string(), "{url}");
        }
        if has_next {
            assert_eq!(result.len(), size, "only the last page may be short");
        }
        customers.extend(result.iter().cloned());
        offset = page["offset"].as_str().expect("offset").to_owned();
        if !has_next {
            return customers;
        }
    }
}

fn ids(customers: &[Value]) -> Vec<i64> {
    customers
        .iter()
        .map(|c| c["id"].as_i64().expect("an id"))
        .collect()
}

#[actix_rt::test]
async fn the_customer_list_visits_every_customer_once_in_id_order() {
    let studio = SimStudio::new("berlin", "key-berlin").with_customers(3000);
    let generated = DataSet::new("berlin", studio.seed).with_customers(3000);
    let sim = OpenApiSim::start(loopback(), vec![studio], None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");

    let all = list_all(&client, &berlin, "key-berlin", 100).await;
    assert_eq!(ids(&all), (1..=3000).collect::<Vec<_>>());
    // The list holds the records GET /v1/customers/{id} answers.
    for customer in all.iter().step_by(97) {
        let id = customer["id"].as_i64().expect("an id");
        assert_eq!(Some(customer), generated.customer(id).as_ref());
    }

    // A size that does not divide the count ends on a short page; one that does, on a full one.
    assert_eq!(
        list_all(&client, &berlin, "key-berlin", 7).await.len(),
        3000
    );
    let (_, last) = get(
        &client,
        &format!("{berlin}/v1/customers?sliceSize=100&offset=2900"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(last["result"].as_array().map(Vec::len), Some(100));
    assert_eq!(
        (&last["offset"], &last["hasNext"]),
        (&json!("3000"), &json!(false))
    );

    // Without parameters: the first 50.
    let (status, first) = get(
        &client,
        &format!("{berlin}/v1/customers"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(status, 200);
    let first = first["result"].as_array().expect("a result list");
    assert_eq!(ids(first), (1..=50).collect::<Vec<_>>());

    // Past the end: nothing, and nothing more.
    let (_, past) = get(
        &client,
        &format!("{berlin}/v1/customers?offset=3000"),
        Some("key-berlin"),
    )
    .await;
    assert_eq!(
        past,
        json!({"result": [], "offset": "3000", "hasNext": false})
    );

    // Same key rule as every endpoint; HEAD only checks the key.
    let (status, body) = get(&client, &format!("{berlin}/v1/customers"), Some("nope")).await;
    assert_eq!(status, 401);
    assert_vendor_error(&body, "UNAUTHORIZED");
    assert_eq!(
        head(&client, &format!("{berlin}/v1/customers"), "key-berlin").await,
        (200, 0)
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn the_customer_list_refuses_slices_over_100_and_bad_offsets() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    for query in ["sliceSize=101", "sliceSize=0", "sliceSize=many", "offset=x"] {
        let url = format!("{berlin}/v1/customers?{query}");
        let (status, body) = get(&client, &url, Some("key-berlin")).await;
        assert_eq!(status, 400, "{query}");
        assert_vendor_error(&body, "VALIDATION_ERROR");
    }
    let url = format!("{berlin}/v1/customers?sliceSize=100");
    let (status, body) = get(&client, &url, Some("key-berlin")).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"].as_array().map(Vec::len), Some(100));
    assert_eq!(body["hasNext"], true);
    sim.stop().await;
}

#[actix_rt::test]
async fn changed_added_and_deleted_customers_show_in_both_endpoints() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    let by_id = |id: i64| format!("{berlin}/v1/customers/{id}");
    let generated = DataSet::new("berlin", studios()[0].seed);

    sim.update_customer(
        "berlin",
        17,
        json!({"city": "Potsdam", "thirdPartyId": "x-17"}),
    );
    let (status, updated) = get(&client, &by_id(17), Some("key-berlin")).await;
    assert_eq!(status, 200);
    let mut expected = generated.customer(17).expect("customer 17");
    expected["city"] = json!("Potsdam");
    expected["thirdPartyId"] = json!("x-17");
    assert_eq!(updated, expected);

    let added = sim.add_customer(
        "berlin",
        json!({"firstName": "Ada", "lastName": "Lovelace"}),
    );
    assert_eq!(added, 2001);
    let (status, new) = get(&client, &by_id(added), Some("key-berlin")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (new["id"].as_i64(), &new["firstName"]),
        (Some(added), &json!("Ada"))
    );

    sim.delete_customer("berlin", 18);
    for path in [
        "/v1/customers/18",
        "/v1/customers/18/contracts",
        "/v1/communications/18/communication-preferences",
    ] {
        let (status, body) = get(&client, &format!("{berlin}{path}"), Some("key-berlin")).await;
        assert_eq!(status, 404, "{path}");
        assert_vendor_error(&body, "NOT_FOUND");
    }

    // The list agrees with GET by id on every change.
    let all = list_all(&client, &berlin, "key-berlin", 100).await;
    let expected_ids: Vec<i64> = (1..=2000).filter(|&id| id != 18).chain([added]).collect();
    assert_eq!(ids(&all), expected_ids);
    let listed = |id: i64| all.iter().find(|c| c["id"] == id).cloned();
    assert_eq!(listed(17), Some(updated));
    assert_eq!(listed(added), Some(new));

    // Another studio's customers are its own.
    let hamburg = sim.base_url("hamburg");
    assert_eq!(
        get(
            &client,
            &format!("{hamburg}/v1/customers/18"),
            Some("key-hamburg")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        list_all(&client, &hamburg, "key-hamburg", 100).await.len(),
        2000
    );
    sim.stop().await;
}

#[actix_rt::test]
#[should_panic(expected = "studio berlin has no customer 2001")]
async fn changing_a_customer_that_is_not_there_is_a_mistake() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    sim.update_customer("berlin", 2001, json!({"city": "Potsdam"}));
}

/// A control write as a person would send it with curl: status, `Location`, parsed JSON body
/// (Null when empty or not JSON).
async fn write(
    client: &awc::Client,
    method: Method,
    url: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let mut request = client.request(method, url);
    if let Some(key) = key {
        request = request.insert_header(("x-api-key", key));
    }
    let mut response = request
        .send_body(body.to_owned())
        .await
        .expect("the simulator answers");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.body().await.expect("a body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (response.status().as_u16(), location, json)
}

#[actix_rt::test]
async fn customers_change_over_http_as_through_the_rust_methods() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    let by_id = |id: i64| format!("{berlin}/v1/customers/{id}");
    let key = Some("key-berlin");
    let generated = DataSet::new("berlin", studios()[0].seed);

    // PATCH merges the fields, keeps the id, and GET answers the new record from then on.
    let (status, _, patched) = write(
        &client,
        Method::PATCH,
        &by_id(17),
        key,
        r#"{"city": "Potsdam", "id": 99}"#,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let mut expected = generated.customer(17).expect("customer 17");
    expected["city"] = json!("Potsdam");
    assert_eq!(patched, expected);
    assert_eq!(get(&client, &by_id(17), key).await, (200, patched.clone()));

    // POST adds a customer above every id, and says where it lives.
    let (status, location, added) = write(
        &client,
        Method::POST,
        &format!("{berlin}/v1/customers"),
        key,
        r#"{"firstName": "Ada", "lastName": "Lovelace"}"#,
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["id"], 2001);
    assert_eq!(added["firstName"], "Ada");
    assert!(added["status"].is_string(), "a full record: {added}");
    assert_eq!(location.as_deref(), Some("/berlin/v1/customers/2001"));
    assert_eq!(get(&client, &by_id(2001), key).await, (200, added.clone()));

    // DELETE removes it from every answer; a second one finds nothing.
    let (status, _, body) = write(&client, Method::DELETE, &by_id(18), key, "").await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = get(&client, &by_id(18), key).await;
    assert_eq!(status, 404);
    assert_vendor_error(&body, "NOT_FOUND");
    for method in [Method::DELETE, Method::PATCH] {
        let (status, _, body) = write(&client, method.clone(), &by_id(18), key, "{}").await;
        assert_eq!(status, 404, "{method}");
        assert_vendor_error(&body, "NOT_FOUND");
    }

    // The list agrees with GET by id on every change.
    let all = list_all(&client, &berlin, "key-berlin", 100).await;
    let expected_ids: Vec<i64> = (1..=2000).filter(|&id| id != 18).chain([2001]).collect();
    assert_eq!(ids(&all), expected_ids);
    let listed = |id: i64| all.iter().find(|c| c["id"] == id).cloned();
    assert_eq!(listed(17), Some(patched));
    assert_eq!(listed(2001), Some(added));

    // One state behind both doors: the Rust methods see what HTTP changed, and the reverse.
    assert_eq!(sim.add_customer("berlin", json!({})), 2002);
    sim.update_customer("berlin", 2001, json!({"city": "Bonn"}));
    assert_eq!(get(&client, &by_id(2001), key).await.1["city"], "Bonn");
    let (status, _, _) = write(&client, Method::DELETE, &by_id(2002), key, "").await;
    assert_eq!(status, 204);

    // The other studio is untouched.
    let hamburg = sim.base_url("hamburg");
    assert_eq!(
        list_all(&client, &hamburg, "key-hamburg", 100).await.len(),
        2000
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn customer_writes_need_the_key_a_json_object_and_a_customer_path() {
    let sim = OpenApiSim::start(loopback(), studios(), None)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    let one = format!("{berlin}/v1/customers/17");
    let list = format!("{berlin}/v1/customers");
    let key = Some("key-berlin");
    let before = get(&client, &one, key).await.1;

    // Another studio's key, a wrong key or none: refused, and nothing changes.
    for wrong in [Some("key-hamburg"), Some("nope"), None] {
        for (method, url) in [
            (Method::PATCH, &one),
            (Method::POST, &list),
            (Method::DELETE, &one),
        ] {
            let (status, _, body) = write(&client, method.clone(), url, wrong, "{}").await;
            assert_eq!(status, 401, "{method} {wrong:?}");
            assert_vendor_error(&body, "UNAUTHORIZED");
        }
    }

    // A body that is not a JSON object: refused, and nothing changes.
    for bad in [
        "",
        "not json",
        "{\"city\": ",
        "[1, 2]",
        "\"Potsdam\"",
        "null",
        "17",
    ] {
        for (method, url) in [(Method::PATCH, &one), (Method::POST, &list)] {
            let (status, _, body) = write(&client, method.clone(), url, key, bad).await;
            assert_eq!(status, 400, "{method} {bad:?}");
            assert_vendor_error(&body, "VALIDATION_ERROR");
        }
    }
    let oversized = format!("{{\"note\": \"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(
        write(&client, Method::POST, &list, key, &oversized).await.0,
        413
    );
    assert_eq!(get(&client, &one, key).await, (200, before));
    assert_eq!(
        list_all(&client, &berlin, "key-berlin", 100).await.len(),
        2000
    );

    // Ids that are not numbers, customers that do not exist, studios that do not exist.
    let (status, _, body) = write(
        &client,
        Method::PATCH,
        &format!("{berlin}/v1/customers/abc"),
        key,
        "{}",
    )
    .await;
    assert_eq!(status, 400);
    assert_vendor_error(&body, "VALIDATION_ERROR");
    let missing = format!("{berlin}/v1/customers/2001");
    assert_eq!(
        write(&client, Method::PATCH, &missing, key, "{}").await.0,
        404
    );
    assert_eq!(
        write(&client, Method::DELETE, &missing, key, "").await.0,
        404
    );
    let nowhere = format!("http://{}/nowhere/v1/customers", sim.addr());
    assert_eq!(
        write(&client, Method::POST, &nowhere, key, "{}").await.0,
        404
    );

    // Other methods and other paths answer as before.
    for (method, url) in [
        (Method::PUT, one.clone()),
        (Method::POST, one.clone()),
        (Method::PATCH, list.clone()),
        (Method::DELETE, list.clone()),
        (Method::DELETE, format!("{one}/contracts")),
        (Method::PATCH, format!("{berlin}/v1/employees/1")),
    ] {
        let (status, _, body) = write(&client, method.clone(), &url, key, "{}").await;
        assert_eq!(status, 405, "{method} {url}");
        assert_vendor_error(&body, "METHOD_NOT_ALLOWED");
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn customer_writes_skip_the_vendor_limit_latency_and_faults() {
    let studios = vec![
        SimStudio::new("berlin", "key-berlin"),
        SimStudio::new("bremen", "key-bremen")
            .with_latency(Duration::from_secs(30), Duration::from_secs(30)),
    ];
    let options = SimOptions {
        vendor_limit: Some(2),
        ..SimOptions::default()
    };
    let sim = OpenApiSim::start_with(loopback(), studios, options)
        .await
        .expect("the simulator starts");
    let client = awc::Client::default();
    let berlin = sim.base_url("berlin");
    let key = Some("key-berlin");
    let one = |id: i64| format!("{berlin}/v1/customers/{id}");
    let list = format!("{berlin}/v1/customers");

    // More writes than the limit allows on either endpoint; none of them is counted, so the
    // reads still get the whole allowance.
    for id in 1..=3 {
        assert_eq!(
            write(&client, Method::PATCH, &one(id), key, "{}").await.0,
            200
        );
        assert_eq!(write(&client, Method::POST, &list, key, "{}").await.0, 201);
        assert_eq!(
            write(&client, Method::DELETE, &one(id), key, "").await.0,
            204
        );
    }
    for status in [200, 200, 429] {
        assert_eq!(get(&client, &one(4), key).await.0, status);
    }
    assert_eq!(get(&client, &list, key).await.0, 200);

    // A studio that answers in 30 s and fails every read with a fault still takes writes at
    // once. (10 s against 30 s leaves a loaded machine plenty of room.)
    sim.set_fault("bremen", Fault::Status(503));
    let bremen = format!("{}/v1/customers/1", sim.base_url("bremen"));
    let started = Instant::now();
    let patch = write(&client, Method::PATCH, &bremen, Some("key-bremen"), "{}").await;
    assert_eq!(patch.0, 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(get(&client, &bremen, Some("key-bremen")).await.0, 503);
    sim.stop().await;
}

#[actix_rt::test]
async fn duplicate_studio_ids_are_refused() {
    let twice = vec![SimStudio::new("a", "k1"), SimStudio::new("a", "k2")];
    let refused = OpenApiSim::start(loopback(), twice, None).await;
    assert!(refused.is_err());
}

/// A relay stand-in: deduplicates by uuid and answers as gymrelay does.
#[derive(Default)]
struct FakeRelay {
    seen: Mutex<HashSet<String>>,
}

async fn fake_webhook(
    req: HttpRequest,
    body: web::Bytes,
    relay: web::Data<FakeRelay>,
) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header("x-api-key") != Some("hook-key") {
        return HttpResponse::Unauthorized().json(json!({"error": "unknown key"}));
    }
    if header("content-type") != Some("application/json; charset=utf-8") {
        return HttpResponse::BadRequest().json(json!({"error": "content type"}));
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "not json"}));
    };
    let (Some(uuid), Some(ty)) = (event["uuid"].as_str(), event["payload"][0]["type"].as_str())
    else {
        return HttpResponse::BadRequest().json(json!({"error": "shape"}));
    };
    if !event["entityId"].is_i64() || ty.is_empty() || !event["payload"][0]["timestamp"].is_i64() {
        return HttpResponse::BadRequest().json(json!({"error": "shape"}));
    }
    let fresh = relay
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(uuid.to_owned());
    let status = if fresh { "accepted" } else { "duplicate" };
    HttpResponse::Ok().json(json!({"status": status, "uuid": uuid}))
}

#[actix_rt::test]
async fn the_sender_counts_what_the_relay_answers() {
    let relay = web::Data::new(FakeRelay::default());
    let app_relay = relay.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_relay.clone())
            .route("/webhook", web::post().to(fake_webhook))
    })
    .workers(1)
    .disable_signals()
    .bind(loopback())
    .expect("bind");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);

    let plan = SendPlan {
        relay_url: format!("http://{addr}/webhook"),
        webhook_key: "hook-key".to_owned(),
        count: 60,
        per_second: 0.0,
        duplicate_ratio: 0.25,
        seed: 9,
    };
    let report = send_events(&plan).await;
    assert_eq!(report.sent, 60);
    assert_eq!((report.rejected, report.errors), (0, 0));
    assert_eq!(report.accepted + report.duplicates, 60);
    assert!(
        report.duplicates > 5 && report.duplicates < 30,
        "{report:?}"
    );
    let unique: HashSet<_> = report.accepted_uuids.iter().collect();
    assert_eq!(unique.len(), report.accepted);

    // Same seed, same uuids: a resent plan is all duplicates.
    let again = send_events(&plan).await;
    assert_eq!(again.duplicates, 60);

    // Paced sends take their time; a wrong key is rejected, a dead relay is a transport error.
    let paced = SendPlan {
        webhook_key: "wrong".to_owned(),
        count: 10,
        per_second: 50.0,
        seed: 10,
        ..plan.clone()
    };
    let started = Instant::now();
    let report = send_events(&paced).await;
    assert!(started.elapsed() >= Duration::from_millis(170));
    assert_eq!(report.rejected, 10);

    handle.stop(true).await;
    let _ = task.await;
    let dead = SendPlan { count: 2, ..plan };
    assert_eq!(send_events(&dead).await.errors, 2);
}
