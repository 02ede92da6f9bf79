//! The status page and the JSON fields only it needs: 429 holds, sink health and reconcile
//! sweeps per studio.

use gymrelay::simulate::Fault;

use crate::helpers::*;

/// GET without the admin token: the page and its assets are public because they hold no data.
async fn get(app: &TestApp, path: &str) -> (u16, String, String, String) {
    let mut res = awc::Client::default()
        .get(format!("{}{path}", app.admin_url))
        .send()
        .await
        .expect("admin answers");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, csp) = (header("content-type"), header("content-security-policy"));
    let body = res.body().await.unwrap_or_default();
    (
        res.status().as_u16(),
        content_type,
        csp,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_rt::test]
async fn the_page_is_served_without_a_token_and_holds_no_key() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let (status, content_type, csp, html) = get(&app, "/").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    // Scripts and styles only from the relay itself, so nothing inline may run.
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(html.contains("<script src=\"status/app.js\""), "{html}");
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count(),
        "no inline script"
    );
    assert_eq!(get(&app, "/status").await.3, html);

    let (status, content_type, _, js) = get(&app, "/status/app.js").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
    assert!(
        !js.contains("innerHTML"),
        "text from the API is inserted as text only"
    );
    let (status, content_type, _, css) = get(&app, "/status/app.css").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/css; charset=utf-8")
    );
    for asset in [&html, &js, &css] {
        for secret in [
            ADMIN_TOKEN.to_string(),
            webhook_key("berlin"),
            open_api_key("berlin"),
        ] {
            assert!(!asset.contains(&secret), "a key is in the page");
        }
        // The SVG namespace is a name, not an address the browser fetches.
        let fetched = asset.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !fetched.contains("http://") && !fetched.contains("https://"),
            "nothing from elsewhere"
        );
    }
    // The data behind it still needs the token.
    assert_eq!(get(&app, "/api/studios").await.0, 401);
    app.stop().await;
}

#[actix_rt::test]
async fn studios_show_429_holds_per_endpoint() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let studios = app.admin_json("GET", "/api/studios").await;
    assert_eq!(
        studios["studios"][0]["openapi_holds"],
        serde_json::json!({})
    );

    app.sim.set_fault("berlin", Fault::Status(429));
    app.notify("berlin", &unique("held"), "CUSTOMER_UPDATED", 3)
        .await;
    // The hold is counted before the studio's budget shows how long it lasts.
    let berlin = eventually("a 429 hold", || async {
        let json = app.admin_json("GET", "/api/studios").await;
        let berlin = json["studios"][0].clone();
        let held = berlin["budget"]["/v1/customers/{id}"]["held_for_seconds"].as_u64();
        (berlin["openapi_holds"]["/v1/customers/{id}"] == 1 && held.is_some()).then_some(berlin)
    })
    .await;
    let held = &berlin["budget"]["/v1/customers/{id}"]["held_for_seconds"];
    assert!(held.as_u64().is_some_and(|s| s > 0), "{berlin}");
    assert_eq!(berlin["inbox_depth"], 1, "the event waits out the hold");
    app.stop().await;
}

#[actix_rt::test]
async fn studios_show_each_sinks_deliveries_and_which_one_is_failing() {
    // A file sink whose directory cannot exist: it fails on every attempt.
    let broken = "/dev/null/gymrelay-status-page-test.ndjson";
    let studio =
        Studio::new("berlin").with(&format!("[[sinks]]\ntype = \"file\"\npath = {broken:?}\n"));
    let app = spawn_app(vec![studio]).await;
    app.notify("berlin", &unique("s"), "CUSTOMER_DELETED", 3)
        .await;
    app.delivered("berlin", 1).await;
    let berlin = eventually("the broken sink to be reported", || async {
        let json = app.admin_json("GET", "/api/studios").await;
        let berlin = json["studios"][0].clone();
        (berlin["sinks"][1]["failing"] == true).then_some(berlin)
    })
    .await;
    let sinks = berlin["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2, "{berlin}");
    let good = &sinks[0];
    assert!(
        good["sink"].as_str().unwrap().starts_with("file:"),
        "{good}"
    );
    assert_eq!(good["delivered"], 1);
    assert_eq!(good["failed"], 0);
    assert_eq!(good["failing"], false);
    let bad = &sinks[1];
    assert_eq!(bad["sink"], format!("file:{broken}"));
    assert_eq!(bad["delivered"], 0);
    assert!(bad["failed"].as_u64().unwrap() >= 1, "{bad}");
    assert_eq!(berlin["state"], "retrying");
    app.stop().await;
}

/// The studio's `reconcile` in `/api/studios`.
async fn shown_sweeps(app: &TestApp) -> serde_json::Value {
    app.admin_json("GET", "/api/studios").await["studios"][0]["reconcile"].clone()
}

#[actix_rt::test]
async fn studios_show_a_reconcile_sweep_under_way_then_its_summary() {
    let app = spawn_app(vec![Studio::new("berlin").customers(250)]).await;
    // The page's Reconcile button posts to the endpoint this test uses.
    assert!(get(&app, "/").await.3.contains("id=\"reconcile-start\""));
    assert!(get(&app, "/status/app.js").await.3.contains("'/reconcile'"));
    let studios = app.admin_json("GET", "/api/studios").await;
    assert!(
        studios["studios"][0].get("reconcile").is_none(),
        "never swept: {studios}"
    );

    // The first page keeps failing, so the sweep stays under way.
    app.sim.set_fault("berlin", Fault::Status(503));
    let (status, body) = app.admin("POST", "/api/studios/berlin/reconcile").await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = app.admin("POST", "/api/studios/berlin/reconcile").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already under way"), "{body}");
    let running = eventually("the sweep retrying its first page", || async {
        let shown = shown_sweeps(&app).await;
        shown["running"]["last_error"].is_string().then_some(shown)
    })
    .await;
    let sweep = &running["running"];
    assert!(
        sweep["last_error"].as_str().unwrap().contains("503"),
        "{running}"
    );
    assert_eq!(
        (&sweep["trigger"], &sweep["baseline"]),
        (&"manual".into(), &true.into())
    );
    assert!(sweep["started_ms"].as_i64().is_some(), "{running}");
    assert!(running["last"].is_null(), "{running}");
    // What the command line follows says so too.
    let followed = app.admin_json("GET", "/api/studios/berlin/reconcile").await;
    assert!(
        followed["running"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{followed}"
    );

    app.sim.set_fault("berlin", Fault::None);
    let ended = eventually("the sweep's summary", || async {
        let shown = shown_sweeps(&app).await;
        (shown["running"].is_null() && shown["last"].is_object()).then_some(shown)
    })
    .await;
    let last = &ended["last"];
    let progress = &last["progress"];
    for (count, expected) in [
        ("pages", 3),
        ("customers", 250),
        ("added", 250),
        ("emitted", 0),
    ] {
        assert_eq!(progress[count], expected, "{count}: {ended}");
    }
    assert!(
        progress["requests"].as_u64() >= Some(4),
        "retries count: {ended}"
    );
    let (Some(started_ms), Some(finished_ms)) =
        (last["started_ms"].as_i64(), last["finished_ms"].as_i64())
    else {
        panic!("the summary has when the sweep started and finished: {ended}");
    };
    assert!(finished_ms >= started_ms, "{ended}");
    assert!(ended.get("failure").is_none(), "{ended}");
    app.stop().await;
}
