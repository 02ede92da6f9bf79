//! The NATS JetStream sink against a real `nats-server -js` (Debian's package) started by each
//! test on a free loopback port, with its store in the test's temp dir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use async_nats::jetstream;

use crate::helpers::*;

const STREAM: &str = "GYMRELAY";

fn nats_installed() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

macro_rules! require_nats {
    () => {
        if !nats_installed() {
            skip("nats-server is not installed (apt-get install nats-server)");
            return;
        }
    };
}

/// A nats-server with JetStream, restartable on the same port and store.
struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    args: Vec<String>,
}

impl NatsServer {
    async fn start(dir: &Path, args: &[&str]) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = NatsServer {
            child: None,
            port,
            store: dir.join("nats-store"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(&self.store)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let port = self.port;
        eventually("nats-server to listen", || async move {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        })
        .await;
    }

    /// SIGKILL, as a crash or an OOM kill would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn nats_sink(url: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"nats\"\nurl = {url:?}\nstream = \"{STREAM}\"\ncreate_stream = true\ntimeout = \"2s\"\n{extra}"
    )
}

/// Every message of the stream, in stream order: (studio header, message id, subject).
async fn stream_messages(url: &str) -> Vec<(String, String, String)> {
    let client = async_nats::connect(url)
        .await
        .expect("test client connects");
    let context = jetstream::new(client);
    let stream = context.get_stream(STREAM).await.expect("the stream exists");
    let count = stream.cached_info().state.messages;
    let mut messages = Vec::new();
    for sequence in 1..=count {
        let message = stream
            .get_raw_message(sequence)
            .await
            .expect("message in the stream");
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        messages.push((
            header("Gymrelay-Studio"),
            header("Nats-Msg-Id"),
            message.subject.to_string(),
        ));
    }
    messages
}

async fn stream_count(url: &str) -> u64 {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let context = jetstream::new(client);
    match context.get_stream(STREAM).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Each studio's ids in stream order (a duplicate shows as an id twice).
fn per_studio(messages: &[(String, String, String)]) -> HashMap<&str, Vec<&str>> {
    let mut by_studio: HashMap<&str, Vec<&str>> = HashMap::new();
    for (studio, id, _) in messages {
        by_studio.entry(studio).or_default().push(id);
    }
    by_studio
}

#[actix_rt::test]
async fn ten_thousand_events_reach_the_stream_in_order_per_studio_each_once() {
    require_nats!();
    let work = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(work.path(), &[]).await;
    let studios = ["berlin", "hamburg"]
        .into_iter()
        .map(|id| Studio::new(id).with(&nats_sink(&nats.url(), "")))
        .collect();
    let app = spawn_app_with(studios, unlimited_intake).await;
    let prefix = unique("n");
    let (b, h) = (format!("b{prefix}"), format!("h{prefix}"));
    let (berlin, hamburg) = futures_util::join!(
        send_deletions(&app, "berlin", &b, 5_000),
        send_deletions(&app, "hamburg", &h, 5_000),
    );
    let url = nats.url();
    eventually("10,000 messages in the stream", || {
        let url = url.clone();
        async move { (stream_count(&url).await >= 10_000).then_some(()) }
    })
    .await;
    let messages = stream_messages(&url).await;
    assert_eq!(messages.len(), 10_000, "each once");
    let by_studio = per_studio(&messages);
    assert_eq!(by_studio["berlin"], berlin, "berlin's order");
    assert_eq!(by_studio["hamburg"], hamburg, "hamburg's order");
    assert_eq!(
        messages[0].2,
        "gymrelay.berlin.CUSTOMER_DELETED".replace("berlin", &messages[0].0)
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_broker_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    require_nats!();
    let work = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(work.path(), &[]).await;
    let app = spawn_app_with(
        vec![Studio::new("berlin").with(&nats_sink(&nats.url(), ""))],
        unlimited_intake,
    )
    .await;
    let url = nats.url();
    let first = send_deletions(&app, "berlin", &unique("k"), 1_500).await;
    eventually("part of them in the stream", || {
        let url = url.clone();
        async move { (stream_count(&url).await >= 200).then_some(()) }
    })
    .await;
    nats.kill();
    // Webhooks keep being accepted while the broker is down; they wait in the inbox.
    let second = send_deletions(&app, "berlin", &unique("k"), 500).await;
    eventually("the nats sink to be failing", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        let sinks = studios["studios"][0]["sinks"].as_array().cloned()?;
        sinks
            .iter()
            .any(|s| {
                s["failing"] == true && s["sink"].as_str().is_some_and(|k| k.starts_with("nats:"))
            })
            .then_some(())
    })
    .await;
    nats.restart().await;
    eventually("every event in the stream", || {
        let url = url.clone();
        async move { (stream_count(&url).await >= 2_000).then_some(()) }
    })
    .await;
    app.inbox_emptied().await;
    let messages = stream_messages(&url).await;
    let expected: Vec<&str> = first.iter().chain(&second).map(String::as_str).collect();
    assert_eq!(
        per_studio(&messages)["berlin"],
        expected,
        "in order, each once"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_wrong_broker_credential_shows_in_check_and_on_the_status_page() {
    require_nats!();
    let work = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(work.path(), &["--auth", "right-token"]).await;
    let sink = nats_sink(&nats.url(), "token = \"wrong-token\"\n");
    let app = spawn_app(vec![Studio::new("berlin").with(&sink)]).await;
    app.notify("berlin", &unique("c"), "CUSTOMER_DELETED", 1)
        .await;
    let error = eventually("the sink's refusal on the status API", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        studios["studios"][0]["last_error"]
            .as_str()
            .filter(|e| e.contains("authorization"))
            .map(str::to_string)
    })
    .await;
    assert!(!error.contains("wrong-token"), "{error}");

    let config = app.dir.path().join("check.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[tenants]\ndir = {:?}\n",
            work.path().join("check-data").display().to_string(),
            app.dir.path().join("tenants").display().to_string()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args(["check", "--online", "--config"])
        .arg(&config)
        .output()
        .expect("check runs");
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{report}");
    assert!(
        report.contains("berlin: sink nats:") && report.contains("authorization"),
        "{report}"
    );
    assert!(!report.contains("wrong-token"), "{report}");
    app.stop().await;
}

#[actix_rt::test]
async fn a_deleted_stream_is_created_again_and_odd_types_still_fit_its_subjects() {
    require_nats!();
    let work = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(work.path(), &[]).await;
    let url = nats.url();
    let app = spawn_app(vec![Studio::new("berlin").with(&nats_sink(&url, ""))]).await;
    app.notify("berlin", &unique("d"), "CUSTOMER_DELETED", 1)
        .await;
    eventually("the first message in the stream", || {
        let url = url.clone();
        async move { (stream_count(&url).await == 1).then_some(()) }
    })
    .await;
    let client = async_nats::connect(&url).await.unwrap();
    jetstream::new(client)
        .delete_stream(STREAM)
        .await
        .expect("the stream is deleted");
    // A type with a dot and a space, which the vendor's list does not have but a sender may.
    let odd = unique("odd");
    let body = notification(&odd, "CUSTOMER.ODD TYPE", 2, None).to_string();
    let (status, _) = app.post(Some(&webhook_key("berlin")), body).await;
    assert_eq!(status, 200);
    eventually("the stream created again, with the odd event", || {
        let url = url.clone();
        async move { (stream_count(&url).await == 1).then_some(()) }
    })
    .await;
    let messages = stream_messages(&url).await;
    assert_eq!(messages[0].1, odd);
    assert_eq!(messages[0].2, "gymrelay.berlin.CUSTOMER_ODD_TYPE");

    // The stream the relay created again deduplicates by Nats-Msg-Id: the same event published
    // again (as a resend after a lost ack would) is acknowledged as a duplicate and not stored.
    let context = jetstream::new(async_nats::connect(&url).await.unwrap());
    let mut stream = context.get_stream(STREAM).await.unwrap();
    let window = stream.info().await.unwrap().config.duplicate_window;
    assert!(!window.is_zero(), "the stream has a duplicate window");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", odd.as_str());
    let ack = context
        .publish_with_headers(messages[0].2.clone(), headers, "again".into())
        .await
        .expect("published")
        .await
        .expect("acknowledged");
    assert!(ack.duplicate, "{ack:?}");
    assert_eq!(stream_count(&url).await, 1, "the duplicate was not stored");
    app.stop().await;
}

#[actix_rt::test]
async fn a_broker_behind_tls_is_reached_through_the_sinks_ca() {
    require_nats!();
    let work = tempfile::tempdir().unwrap();
    let cert = crate::tls::TestCert::new();
    let (crt, key) = (work.path().join("nats.crt"), work.path().join("nats.key"));
    cert.write(&crt, &key);
    let (crt_arg, key_arg) = (crt.display().to_string(), key.display().to_string());
    let nats = NatsServer::start(
        work.path(),
        &["--tls", "--tlscert", &crt_arg, "--tlskey", &key_arg],
    )
    .await;
    let sink = nats_sink(&nats.url(), &format!("tls_ca = {crt_arg:?}\n"));
    let app = spawn_app(vec![Studio::new("berlin").with(&sink)]).await;
    app.notify("berlin", &unique("t"), "CUSTOMER_DELETED", 1)
        .await;
    // Delivered means acknowledged by JetStream, over the TLS connection.
    eventually("the nats sink to count the event delivered", || async {
        let studios = app.admin_json("GET", "/api/studios").await;
        let sinks = studios["studios"][0]["sinks"].as_array().cloned()?;
        sinks
            .iter()
            .any(|s| {
                s["sink"].as_str().is_some_and(|k| k.starts_with("nats:")) && s["delivered"] == 1
            })
            .then_some(())
    })
    .await;
    app.stop().await;
}
