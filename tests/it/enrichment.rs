//! Enrichment per event family: fetched, not_found and skipped, with the studio's own key.

use gymrelay::simulate::data::class_of_slot;
use serde_json::json;

use crate::helpers::*;

#[actix_rt::test]
async fn fetches_per_event_family_with_the_studios_key() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let slot_request = format!("GET /v1/classes/{}/slots/17", class_of_slot(17));
    let cases = [
        (
            "CUSTOMER_UPDATED",
            12,
            None,
            "fetched",
            Some("GET /v1/customers/12"),
        ),
        (
            "AGGREGATOR_MEMBER_CREATED",
            13,
            None,
            "fetched",
            Some("GET /v1/customers/13"),
        ),
        (
            "CUSTOMER_COMMUNICATION_PREFERENCES_UPDATED",
            14,
            None,
            "fetched",
            Some("GET /v1/communications/14/communication-preferences"),
        ),
        (
            "CONTRACT_CREATED",
            15,
            Some(json!({"contractId": 1})),
            "fetched",
            Some("GET /v1/customers/15/contracts"),
        ),
        (
            "CLASS_BOOKING_CREATED",
            16,
            None,
            "fetched",
            Some("GET /v1/classes/booking/16"),
        ),
        (
            "CLASS_SLOT_UPDATED",
            17,
            Some(json!({"classId": class_of_slot(17)})),
            "fetched",
            Some(&*slot_request),
        ),
        (
            "APPOINTMENT_BOOKING_CREATED",
            18,
            None,
            "fetched",
            Some("GET /v1/appointments/booking/18"),
        ),
        (
            "EMPLOYEE_CREATED",
            19,
            None,
            "fetched",
            Some("GET /v1/employees/19"),
        ),
        (
            "STUDIO_OPENING_HOURS_UPDATED",
            1,
            None,
            "fetched",
            Some("GET /v1/studios/information"),
        ),
        (
            "TAX_ADVISOR_EXPORT_CREATED",
            20,
            None,
            "fetched",
            Some("GET /v1/taxadvisor/exports/20"),
        ),
        (
            "CUSTOMER_CREATED",
            999_999,
            None,
            "not_found",
            Some("GET /v1/customers/999999"),
        ),
        ("CUSTOMER_DELETED", 21, None, "skipped", None),
        ("CUSTOMER_ACCESS_DISABLED", 22, None, "skipped", None),
        ("EMPLOYEE_DELETED", 23, None, "skipped", None),
        ("DEVICE_CREATED", 24, None, "skipped", None),
    ];
    for (i, (event_type, entity, content, _, _)) in cases.iter().enumerate() {
        let body = notification(&format!("enrich-{i}"), event_type, *entity, content.clone());
        let (status, _) = app
            .post(Some(&webhook_key("berlin")), body.to_string())
            .await;
        assert_eq!(status, 200);
    }
    let events = app.delivered("berlin", cases.len()).await;
    for (i, (event_type, entity, _, status, request)) in cases.iter().enumerate() {
        let e = &events[i];
        assert_eq!(e["id"], format!("enrich-{i}"), "delivered in arrival order");
        assert_eq!(e["type"], *event_type);
        assert_eq!(e["entityId"], *entity);
        assert_eq!(e["enrichment"]["status"], *status, "{event_type}");
        assert_eq!(
            e["enrichment"]["request"].as_str(),
            *request,
            "{event_type}"
        );
        assert_eq!(e["occurredAt"], "2022-01-21T15:32:24.176Z");
        assert_eq!(e["entity"].is_null(), *status != "fetched", "{event_type}");
    }
    assert_eq!(events[0]["entity"]["id"], 12);

    let requests = app.sim.requests();
    let fetches = cases.iter().filter(|c| c.4.is_some()).count();
    assert_eq!(requests.len(), fetches, "skipped events make no request");
    assert!(requests
        .iter()
        .all(|r| r.key_ok && r.studio == "berlin" && r.method == "GET"));
    app.stop().await;
}

#[actix_rt::test]
async fn events_needing_the_same_request_share_one_answer() {
    let app = spawn_app(vec![Studio::new("berlin"), Studio::new("hamburg")]).await;
    // The studio is paused while the webhooks arrive, as if its Open API were slow: all of
    // them are queued before the first fetch, however slowly this machine takes them in.
    app.admin_json("POST", "/api/studios/berlin/pause").await;
    let ids: Vec<String> = (0..50).map(|i| format!("{}-{i}", unique("same"))).collect();
    for id in &ids {
        assert_eq!(
            app.notify("berlin", id, "CUSTOMER_UPDATED", 42).await.0,
            200
        );
    }
    // Other requests and other studios are never merged with them.
    app.notify("berlin", &unique("other"), "CUSTOMER_UPDATED", 43)
        .await;
    app.notify("hamburg", &unique("h"), "CUSTOMER_UPDATED", 42)
        .await;
    app.admin_json("POST", "/api/studios/berlin/resume").await;

    let events = app.delivered("berlin", 51).await;
    let delivered: Vec<&str> = events[..50]
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        delivered,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "each, in order"
    );
    assert!(events[..50].iter().all(|e| e["entity"]["id"] == 42));
    app.delivered("hamburg", 1).await;

    let requests = app.sim.requests();
    let count = |studio: &str, path: &str| {
        requests
            .iter()
            .filter(|r| r.studio == studio && r.path == path)
            .count()
    };
    let fetches = count("berlin", "/v1/customers/42");
    eprintln!("coalescing: 50 events for one customer, {fetches} fetches");
    // All 50 were queued before the fetch was sent, so all share it.
    assert_eq!(fetches, 1, "{fetches} fetches for 50 events");
    assert_eq!(count("berlin", "/v1/customers/43"), 1);
    assert_eq!(count("hamburg", "/v1/customers/42"), 1);
    app.stop().await;
}
