//! The public listener's limits, each from the outside: slow clients, floods, leaked keys.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Opens a raw connection to the relay's webhook listener.
fn connect(app: &TestApp) -> TcpStream {
    let addr = app.url.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the server closes or answers; returns the status line.
fn status_line(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Sends a webhook's headers and the first byte of its body, and leaves the rest for later.
fn hold(app: &TestApp, key: &str, body: &str) -> TcpStream {
    let mut stream = connect(app);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..1]
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Whether the server has answered (or closed) `stream`, without waiting.
fn answered(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let answered =
        !matches!(stream.peek(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    answered
}

fn quick(config: &mut gymrelay::Config) {
    config.http.header_timeout = Duration::from_secs(1);
    config.http.body_timeout = Duration::from_secs(1);
}

#[actix_rt::test]
async fn slow_headers_and_slow_bodies_get_408_within_seconds() {
    let app = spawn_app_with(vec![Studio::new("berlin")], quick).await;
    let key = webhook_key("berlin");
    let (slow_headers, slow_body) = actix_web::rt::task::spawn_blocking({
        let (a, b) = (connect(&app), connect(&app));
        move || {
            let (mut a, mut b) = (a, b);
            let started = Instant::now();
            a.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n").unwrap();
            let headers = (status_line(&mut a), started.elapsed());
            let started = Instant::now();
            let head = format!("POST /webhook HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 100\r\n\r\n{{\"uuid\":");
            b.write_all(head.as_bytes()).unwrap();
            let body = (status_line(&mut b), started.elapsed());
            (headers, body)
        }
    })
    .await
    .unwrap();
    assert!(slow_headers.0.contains("408"), "{slow_headers:?}");
    assert!(slow_headers.1 < Duration::from_secs(4), "{slow_headers:?}");
    assert!(slow_body.0.contains("408"), "{slow_body:?}");
    assert!(slow_body.1 < Duration::from_secs(4), "{slow_body:?}");
    // And the relay serves everyone else as usual.
    assert_eq!(
        app.notify("berlin", &unique("ok"), "CUSTOMER_DELETED", 1)
            .await
            .0,
        200
    );
    app.stop().await;
}

#[actix_rt::test]
async fn requests_beyond_the_in_flight_cap_get_503_and_work_resumes() {
    let app = spawn_app_with(vec![Studio::new("berlin")], |config| {
        // The holders below must keep their slots for as long as the test needs them, however
        // slow the machine: they release them by finishing their bodies, not by timing out.
        config.http.body_timeout = 3 * DEADLINE;
        config.http.max_in_flight = 2;
    })
    .await;
    let key = webhook_key("berlin");
    // Two requests that hold their slot: headers and the first byte of the body sent.
    let bodies: Vec<String> = (0..2)
        .map(|_| notification(&unique("holder"), "CUSTOMER_DELETED", 1, None).to_string())
        .collect();
    let mut holders: Vec<TcpStream> = bodies.iter().map(|b| hold(&app, &key, b)).collect();
    // A holder that reached the server after a third request took its slot got the 503 itself;
    // it is sent again, so that the third request finds both slots taken.
    let (status, body) = eventually("the third request to be refused", || {
        for (holder, body) in holders.iter_mut().zip(&bodies) {
            if answered(holder) {
                *holder = hold(&app, &key, body);
            }
        }
        let app = &app;
        async move {
            let (status, body) = app
                .notify("berlin", &unique("third"), "CUSTOMER_DELETED", 1)
                .await;
            (status == 503).then_some((status, body))
        }
    })
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("busy, please retry"))
    );
    // The holders finish their bodies: both are accepted, and the slots are free again.
    let answers = actix_web::rt::task::spawn_blocking(move || {
        holders
            .iter_mut()
            .zip(&bodies)
            .map(|(stream, body)| {
                stream.write_all(&body.as_bytes()[1..]).unwrap();
                status_line(stream)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        answers.iter().all(|line| line.contains(" 200 ")),
        "{answers:?}"
    );
    eventually("the slots to free up", || async {
        let (status, _) = app
            .notify("berlin", &unique("later"), "CUSTOMER_DELETED", 1)
            .await;
        (status == 200).then_some(())
    })
    .await;
    app.stop().await;
}

#[actix_rt::test]
async fn a_flooding_key_gets_429_without_affecting_other_studios() {
    let app = spawn_app_with(
        vec![Studio::new("berlin"), Studio::new("hamburg")],
        |config| {
            config.http.studio_requests_per_second = 1;
            config.http.studio_burst = 3;
        },
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            app.notify("berlin", &unique("flood"), "CUSTOMER_DELETED", 1)
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    // The bucket refills one per second; the six requests take milliseconds.
    assert_eq!(&statuses[3..], [429, 429, 429], "{statuses:?}");
    assert_eq!(
        app.notify("hamburg", &unique("calm"), "CUSTOMER_DELETED", 1)
            .await
            .0,
        200
    );
    let (_, metrics) = app.admin("GET", "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "gymrelay_webhooks_total{outcome=\"rate_limited\",studio=\"berlin\"} 3"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("outcome=\"rate_limited\",studio=\"hamburg\""),
        "{metrics}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_connection_flood_does_not_stall_open_connections() {
    let app = spawn_app_with(vec![Studio::new("berlin")], |config| {
        config.http.max_connections = 8;
    })
    .await;
    // A keep-alive client connected before the flood.
    let client = awc::Client::default();
    let url = format!("{}/webhook", app.url);
    let body = || {
        notification(&unique("kept"), "CUSTOMER_DELETED", 1, None)
            .to_string()
            .into_bytes()
    };
    assert_eq!(
        post_with(&client, &url, Some(&webhook_key("berlin")), body())
            .await
            .0,
        200
    );
    let flood: Vec<TcpStream> = (0..64).map(|_| connect(&app)).collect();
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(
            post_with(&client, &url, Some(&webhook_key("berlin")), body())
                .await
                .0,
            200
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(flood);
    app.stop().await;
}

#[actix_rt::test]
async fn unknown_and_near_miss_keys_take_the_same_path_and_time() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let client = awc::Client::default();
    let url = format!("{}/webhook", app.url);
    let real = webhook_key("berlin");
    let near_miss = format!("{}X", &real[..real.len() - 1]);
    let body = notification("t", "CUSTOMER_DELETED", 1, None)
        .to_string()
        .into_bytes();
    let time = |key: String| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let mut total = Duration::ZERO;
            let mut answers = std::collections::HashSet::new();
            for _ in 0..300 {
                let started = Instant::now();
                let (status, answer) = post_with(&client, &url, Some(&key), body.clone()).await;
                total += started.elapsed();
                answers.insert((status, answer.to_string()));
            }
            (total / 300, answers)
        }
    };
    // Interleaved rounds so drift in the machine's load hits both alike.
    let (mut unknown, mut near) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        let (t, a) = time("completely-unknown-key".into()).await;
        unknown += t;
        let (t2, b) = time(near_miss.clone()).await;
        near += t2;
        assert_eq!(a, b, "the same answer for both");
        assert_eq!(a.len(), 1);
    }
    let ratio = near.as_secs_f64() / unknown.as_secs_f64();
    eprintln!(
        "timing: unknown key {:?}, near-miss key {:?} per request, ratio {ratio:.2}",
        unknown / 3,
        near / 3
    );
    assert!((0.5..2.0).contains(&ratio), "ratio {ratio}");
    let (_, metrics) = app.admin("GET", "/metrics").await;
    assert!(
        metrics.contains("gymrelay_unauthorized_total{source=\"127.0.0.1\"} 1800"),
        "{metrics}"
    );
    app.stop().await;
}
