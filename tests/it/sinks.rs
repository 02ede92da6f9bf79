//! The http sink (signed, retried) and the command sink, through the real relay.

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use gymrelay::sink::{sign, signing_key};

use crate::helpers::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A partner's endpoint: verifies signatures, records what it accepted, fails on demand.
#[derive(Default)]
struct Receiver {
    fail_next: Mutex<usize>,
    /// Failures start only once this many events were accepted.
    accept_first: Mutex<usize>,
    /// A file sink of the same studio, and how many lines it held at the first failure.
    file_at_failure: Mutex<(Option<std::path::PathBuf>, Option<usize>)>,
    accepted: Mutex<Vec<serde_json::Value>>,
    bad_signatures: Mutex<usize>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Receiver>>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let expected = sign(
        &signing_key(SECRET),
        &id,
        timestamp.parse().unwrap_or(0),
        &body,
    );
    if header("webhook-signature") != expected {
        *state.bad_signatures.lock().unwrap() += 1;
        return HttpResponse::Unauthorized().finish();
    }
    let mut fail = state.fail_next.lock().unwrap();
    if *fail > 0 && state.accepted.lock().unwrap().len() >= *state.accept_first.lock().unwrap() {
        *fail -= 1;
        let mut file = state.file_at_failure.lock().unwrap();
        if let (Some(path), None) = &*file {
            file.1 = Some(read_ndjson(path).len());
        }
        return HttpResponse::InternalServerError().finish();
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["id"].as_str(), Some(id.as_str()));
    state.accepted.lock().unwrap().push(event);
    HttpResponse::NoContent().finish()
}

/// A running receiver that fails its first two requests, and a studio whose second sink is it.
async fn receiver_failing_twice() -> (Arc<Receiver>, Studio, actix_web::dev::ServerHandle) {
    let receiver = Arc::new(Receiver::default());
    *receiver.fail_next.lock().unwrap() = 2;
    let data = web::Data::new(receiver.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let server_handle = server.handle();
    actix_web::rt::spawn(server);

    let studio = Studio::new("berlin").with(&format!(
        "[[sinks]]\ntype = \"http\"\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\n"
    ));
    (receiver, studio, server_handle)
}

#[actix_rt::test]
async fn http_sink_signs_and_retries_until_the_receiver_accepts() {
    let (receiver, studio, server_handle) = receiver_failing_twice().await;
    let app = spawn_app(vec![studio]).await;
    let uuid = unique("signed");
    app.notify("berlin", &uuid, "CUSTOMER_UPDATED", 8).await;

    let accepted = eventually("the receiver to accept after two failures", || {
        let accepted = receiver.accepted.lock().unwrap().clone();
        async move { (!accepted.is_empty()).then_some(accepted) }
    })
    .await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["id"], uuid);
    assert_eq!(accepted[0]["enrichment"]["status"], "fetched");
    assert_eq!(
        *receiver.fail_next.lock().unwrap(),
        0,
        "both failures were retried"
    );
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    // The file sink got it too, once.
    let file = app.delivered("berlin", 1).await;
    assert_eq!(file.len(), 1);
    app.stop().await;
    server_handle.stop(true).await;
}

#[actix_rt::test]
async fn command_sink_gets_the_event_on_stdin_and_is_retried_on_failure() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("cmd.ndjson");
    let marker = scratch.path().join("failed-once");
    // Fails the first time (exit 3), then appends stdin as one line.
    let script = r#"if [ ! -e "$1" ]; then touch "$1"; exit 3; fi; cat >> "$0"; echo >> "$0""#;
    let studio = Studio::new("berlin").with(&format!(
        "[[sinks]]\ntype = \"command\"\nargv = [\"sh\", \"-c\", {script:?}, {:?}, {:?}]\n",
        out.display().to_string(),
        marker.display().to_string()
    ));
    let app = spawn_app(vec![studio]).await;
    let uuid = unique("cmd");
    app.notify("berlin", &uuid, "CLASS_BOOKING_CREATED", 3)
        .await;
    let events = eventually("the command to record the event", || {
        let events = read_ndjson(&out);
        async move { (!events.is_empty()).then_some(events) }
    })
    .await;
    assert!(marker.exists(), "the first run failed");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], uuid);
    assert_eq!(
        events[0]["enrichment"]["request"],
        "GET /v1/classes/booking/3"
    );
    app.stop().await;
}

/// A backlog that needs no Open API request goes to the sinks in batches. The receiver takes
/// the first 10 of a batch and then fails twice: what each sink took must be remembered, so
/// every event still ends up exactly once, in order, in every sink.
#[actix_rt::test]
async fn a_backlog_reaches_every_sink_once_and_in_order_when_one_fails_midway() {
    let (receiver, studio, server_handle) = receiver_failing_twice().await;
    *receiver.accept_first.lock().unwrap() = 10;
    let app = spawn_app(vec![studio]).await;
    receiver.file_at_failure.lock().unwrap().0 = Some(app.output("berlin"));
    app.admin_json("POST", "/api/studios/berlin/pause").await;
    let uuids: Vec<String> = (0..40).map(|i| unique(&format!("backlog-{i}"))).collect();
    for uuid in &uuids {
        let (status, _) = app.notify("berlin", uuid, "CUSTOMER_DELETED", 5).await;
        assert_eq!(status, 200);
    }
    app.admin_json("POST", "/api/studios/berlin/resume").await;

    let ids = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let file = app.delivered("berlin", uuids.len()).await;
    let accepted = eventually("the receiver to accept the whole backlog", || {
        let accepted = receiver.accepted.lock().unwrap().clone();
        async move { (accepted.len() >= 40).then_some(accepted) }
    })
    .await;
    assert_eq!(ids(&file), uuids, "file sink: each once, in order");
    assert_eq!(ids(&accepted), uuids, "http sink: each once, in order");
    assert_eq!(
        *receiver.fail_next.lock().unwrap(),
        0,
        "both failures retried"
    );
    // Sent as one batch, the file had all 40 before the receiver saw any; one by one, 10.
    assert_eq!(
        receiver.file_at_failure.lock().unwrap().1,
        Some(40),
        "the backlog went to the file sink as one batch"
    );
    let count_in = |metrics: &str, result: &str, sink: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("gymrelay_sink_deliveries_total")
                    && l.contains(&format!("result=\"{result}\",sink=\"{sink}"))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    // The receiver records the last event before its answer reaches the relay and is counted.
    let metrics = eventually("the last http delivery to be counted", || async {
        let metrics = app.admin("GET", "/metrics").await.1;
        (count_in(&metrics, "delivered", "http:") == Some(40)).then_some(metrics)
    })
    .await;
    let count = |result: &str, sink: &str| count_in(&metrics, result, sink);
    assert_eq!(count("delivered", "file:"), Some(40), "{metrics}");
    assert_eq!(count("delivered", "http:"), Some(40), "{metrics}");
    assert_eq!(count("failed", "http:"), Some(2), "{metrics}");
    app.stop().await;
    server_handle.stop(true).await;
}

/// A partner's endpoint that refuses every request with one status and a JSON body that
/// repeats the request's path and query, as error pages often do. Keeps each request's query.
struct Refusing {
    status: u16,
    queries: Mutex<Vec<String>>,
}

async fn refuse(req: HttpRequest, state: web::Data<Arc<Refusing>>) -> HttpResponse {
    state
        .queries
        .lock()
        .unwrap()
        .push(req.query_string().to_string());
    let status = actix_web::http::StatusCode::from_u16(state.status).unwrap();
    HttpResponse::build(status)
        .content_type("application/json")
        .body(
            serde_json::json!({"error": "customer_id is missing", "request": req.uri().to_string()})
                .to_string(),
        )
}

async fn refusing(status: u16) -> (Arc<Refusing>, String, actix_web::dev::ServerHandle) {
    let receiver = Arc::new(Refusing {
        status,
        queries: Mutex::default(),
    });
    let data = web::Data::new(receiver.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(refuse))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0].to_string();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (receiver, addr, handle)
}

fn http_sink(url: &str) -> String {
    format!("[[sinks]]\ntype = \"http\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n")
}

/// A 400 says this event will never be accepted: retrying only hammers the receiver and holds
/// up the studio's later events.
#[actix_rt::test]
async fn an_http_sink_answering_400_is_dead_lettered_after_one_attempt() {
    let (receiver, addr, server_handle) = refusing(400).await;
    let studio = Studio::new("berlin").with(&http_sink(&format!("http://{addr}/hook")));
    let app = spawn_app(vec![studio]).await;
    let uuid = unique("refused");
    app.notify("berlin", &uuid, "CUSTOMER_UPDATED", 8).await;

    let letter = eventually("the refused event to become a dead letter", || async {
        let letters = app
            .admin_json("GET", "/api/dead-letters?studio=berlin")
            .await;
        letters["dead_letters"]
            .as_array()
            .and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(letter["event"]["id"], uuid);
    let reason = letter["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("400"), "{letter}");
    // The body may repeat a member's data: it is not kept with the event.
    assert!(!reason.contains("customer_id is missing"), "{letter}");
    assert_eq!(receiver.queries.lock().unwrap().len(), 1, "one attempt");
    app.stop().await;
    server_handle.stop(true).await;
}

/// Tokens in a sink's URL reach the receiver and nothing else: not the admin API, not the dead
/// letters, not the log. One studio's receiver fails in a way worth retrying, the other's
/// refuses for good.
#[actix_rt::test]
async fn sink_url_secrets_never_show() {
    const SECRETS: [&str; 2] = ["pa55word", "s3cret-token"];
    let (failing, failing_addr, failing_handle) = refusing(500).await;
    let (refusing, refusing_addr, refusing_handle) = refusing(400).await;
    let url = |addr: &str| format!("http://user:pa55word@{addr}/in?token=s3cret-token");
    let studios = [
        Studio::new("berlin").with(&http_sink(&url(&failing_addr))),
        Studio::new("hamburg").with(&http_sink(&url(&refusing_addr))),
    ];
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    // Short, so that the 500s also end as a dead letter, whose reason is checked too.
    let relay = RelayProcess::start(dir.path(), "[delivery]\ndead_letter_after = \"2s\"\n").await;
    let client = awc::Client::default();
    let uuid = unique("secret");
    for studio in ["berlin", "hamburg"] {
        assert_eq!(notify_at(&client, &relay.url, studio, &uuid, 3).await, 200);
    }
    let shows_secret = |text: &str| SECRETS.iter().any(|s| text.contains(s));

    let studios = eventually("berlin to show the 500 as its last error", || async {
        let text = relay.admin("/api/studios").await;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let retrying = json["studios"].as_array().unwrap().iter().any(|s| {
            s["id"] == "berlin" && s["last_error"].as_str().is_some_and(|e| e.contains("500"))
        });
        retrying.then_some(text)
    })
    .await;
    assert!(!shows_secret(&studios), "{studios}");

    let letters = eventually("both events to become dead letters", || async {
        let text = relay.admin("/api/dead-letters").await;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        (json["dead_letters"].as_array().unwrap().len() == 2).then_some(text)
    })
    .await;
    assert!(!shows_secret(&letters), "{letters}");
    // The receiver's answer may repeat the event: it is logged (at debug level), not kept.
    assert!(!letters.contains("customer_id is missing"), "{letters}");
    let studios = relay.admin("/api/studios").await;
    assert!(!shows_secret(&studios), "{studios}");

    // The URL as configured was used: what is missing above was really there to leak.
    for receiver in [&failing, &refusing] {
        assert_eq!(
            receiver.queries.lock().unwrap()[0],
            "token=s3cret-token",
            "the receiver got the token"
        );
    }
    let log = relay.kill();
    assert!(log.contains("sink delivery failed"), "{log}");
    assert!(log.contains("customer_id is missing"), "{log}");
    assert!(!shows_secret(&log), "{log}");
    sim.stop().await;
    failing_handle.stop(true).await;
    refusing_handle.stop(true).await;
}
