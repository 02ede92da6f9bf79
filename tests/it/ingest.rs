//! Every row of the ingest table in DESIGN.md.

use serde_json::json;

use crate::helpers::*;

#[actix_rt::test]
async fn answers_each_case_of_the_ingest_table() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let key = webhook_key("berlin");
    let uuid = unique("ingest");

    let (status, body) = app.notify("berlin", &uuid, "CUSTOMER_CREATED", 1).await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"status": "accepted", "uuid": uuid}))
    );

    let (status, body) = app.notify("berlin", &uuid, "CUSTOMER_CREATED", 1).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "duplicate", "uuid": uuid}))
    );

    let valid = notification(&unique("x"), "CUSTOMER_CREATED", 1, None).to_string();
    for key in [None, Some("wrong-key"), Some("")] {
        let (status, body) = app.post(key, valid.clone()).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(body["error"], "missing or unknown x-api-key");
    }

    for (body, says) in [
        ("not json", "expected"),
        (
            r#"{"entityId": 1, "payload": [{"timestamp": 1, "type": "A"}]}"#,
            "uuid",
        ),
        (
            r#"{"entityId": 1, "uuid": "u", "payload": []}"#,
            "payload is empty",
        ),
        (r#"{"entityId": 1, "uuid": "u"}"#, "payload"),
        (
            r#"{"entityId": "7", "uuid": "u", "payload": [{"timestamp": 1, "type": "A"}]}"#,
            "invalid type",
        ),
        (
            r#"{"entityId": 1, "uuid": "u", "payload": [{"type": "A"}]}"#,
            "timestamp",
        ),
    ] {
        let (status, answer) = app.post(Some(&key), body).await;
        assert_eq!(status, 400, "{body}");
        let reason = answer["error"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{body}: {reason}");
    }

    let big = format!(
        r#"{{"entityId": 1, "uuid": "{}", "payload": [{{"timestamp": 1, "type": "A", "content": {{"pad": "{}"}}}}]}}"#,
        unique("big"),
        "x".repeat(70 * 1024)
    );
    let (status, _) = app.post(Some(&key), big).await;
    assert_eq!(status, 413);

    // A path per event type is allowed by the vendor.
    let (status, _) = post_with(
        &awc::Client::default(),
        &format!("{}/webhook/customer-events", app.url),
        Some(&key),
        notification(&unique("path"), "CUSTOMER_UPDATED", 2, None)
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 200);

    // Only the first copy of the uuid and the one on the other path were delivered.
    let events = app.delivered("berlin", 2).await;
    assert_eq!(events.iter().filter(|e| e["id"] == uuid).count(), 1);
    app.stop().await;
}

#[actix_rt::test]
async fn accepts_unknown_fields_and_unknown_event_types() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let uuid = unique("future");
    let body = json!({
        "entityId": 5, "uuid": uuid, "addedByVendorLater": {"a": 1},
        "payload": [{"timestamp": 1642779144176i64, "type": "SOMETHING_INVENTED_NEXT_YEAR",
                     "content": {"x": 1}, "severity": "low"}]
    });
    let (status, answer) = app
        .post(Some(&webhook_key("berlin")), body.to_string())
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    let events = app.delivered("berlin", 1).await;
    assert_eq!(events[0]["id"], uuid);
    assert_eq!(events[0]["type"], "SOMETHING_INVENTED_NEXT_YEAR");
    assert_eq!(events[0]["enrichment"]["status"], "skipped");
    assert_eq!(events[0]["content"], json!({"x": 1}));
    app.stop().await;
}

#[actix_rt::test]
async fn a_duplicate_is_delivered_once_and_studios_do_not_share_uuids() {
    let app = spawn_app(vec![Studio::new("berlin"), Studio::new("hamburg")]).await;
    let uuid = unique("dup");
    for _ in 0..3 {
        app.notify("berlin", &uuid, "CUSTOMER_UPDATED", 3).await;
    }
    let (status, answer) = app.notify("hamburg", &uuid, "CUSTOMER_UPDATED", 3).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    // A later event proves the earlier ones had their chance to be delivered.
    app.notify("berlin", &unique("after"), "CUSTOMER_DELETED", 3)
        .await;
    let berlin = app.delivered("berlin", 2).await;
    assert_eq!(berlin.iter().filter(|e| e["id"] == uuid).count(), 1);
    let hamburg = app.delivered("hamburg", 1).await;
    assert_eq!(hamburg[0]["id"], uuid);
    assert_eq!(hamburg[0]["studio"], "hamburg");
    app.stop().await;
}

#[actix_rt::test]
async fn several_payload_elements_become_separate_events() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let uuid = unique("multi");
    let body = json!({"entityId": 9, "uuid": uuid, "payload": [
        {"timestamp": 1, "type": "CUSTOMER_DELETED"},
        {"timestamp": 2, "type": "EMPLOYEE_DELETED"}]});
    let (status, _) = app
        .post(Some(&webhook_key("berlin")), body.to_string())
        .await;
    assert_eq!(status, 200);
    let events = app.delivered("berlin", 2).await;
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [format!("{uuid}:0"), format!("{uuid}:1")]);
    app.stop().await;
}

#[actix_rt::test]
async fn refuses_new_webhooks_with_503_once_shutdown_begins() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let before = unique("before");
    assert_eq!(
        app.notify("berlin", &before, "CUSTOMER_DELETED", 1).await.0,
        200
    );
    app.handle.refuse_new_webhooks();
    let (status, body) = app
        .notify("berlin", &unique("during"), "CUSTOMER_DELETED", 1)
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "shutting down, please retry");
    // What was accepted before is still delivered.
    let events = app.delivered("berlin", 1).await;
    assert_eq!(events[0]["id"], before);
    app.stop().await;
}
