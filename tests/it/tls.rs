//! HTTPS from certificate files: webhooks over TLS, a certificate renewed on disk served to new
//! connections without a restart while open ones keep working, old protocols refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::helpers::*;

/// A self-signed certificate for the names a test client uses.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// One whose validity ended in 2024, as a renewal that stopped working leaves behind.
    pub fn expired() -> TestCert {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2024, 4, 1);
        let cert = params.self_signed(&key_pair).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Overwrites both files in place, as a renewal script that does not rename would.
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }
}

/// A client config trusting exactly these certificates.
pub fn trusting(certs: &[&CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add((*cert).clone()).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// awc over HTTPS, trusting `config`'s roots.
pub fn https_client(config: Arc<ClientConfig>) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(config))
        .finish()
}

pub async fn connect(
    addr: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate the relay presented on this connection.
pub fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One webhook on an open keep-alive connection; returns the status.
pub async fn post_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &str,
    body: &str,
) -> u16 {
    let request = format!(
        "POST /webhook HTTP/1.1\r\nhost: localhost\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        received.extend_from_slice(&chunk[..n]);
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while received.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the body");
        received.extend_from_slice(&chunk[..n]);
    }
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

fn body() -> String {
    notification(&unique("tls"), "CUSTOMER_CREATED", 7, None).to_string()
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn files_with(first: &TestCert) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("fullchain.pem"),
        dir.path().join("privkey.pem"),
    );
    first.write(&cert, &key);
    Files {
        _dir: dir,
        cert,
        key,
    }
}

async fn spawn_https(files: &Files) -> TestApp {
    let (cert, key) = (files.cert.clone(), files.key.clone());
    spawn_app_with(vec![Studio::new("berlin")], move |config| {
        config.http.tls_cert = Some(cert);
        config.http.tls_key = Some(key);
    })
    .await
}

fn host_port(app: &TestApp) -> String {
    app.url
        .strip_prefix("https://")
        .expect("an https url")
        .to_string()
}

#[actix_rt::test]
async fn serves_https_and_picks_up_a_renewed_certificate() {
    let first = TestCert::new();
    let files = files_with(&first);
    let app = spawn_https(&files).await;
    let addr = host_port(&app);
    let key = webhook_key("berlin");

    // A real HTTP client, trusting the certificate.
    let client = https_client(trusting(&[&first.der]));
    let (status, answer) = post_with(
        &client,
        &format!("{}/webhook", app.url),
        Some(&key),
        body().into(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");

    // A keep-alive connection opened before the renewal.
    let mut open = connect(&addr, trusting(&[&first.der])).await.unwrap();
    assert_eq!(served(&open), first.der);
    assert_eq!(post_on(&mut open, &key, &body()).await, 200);

    let second = TestCert::new();
    second.write(&files.cert, &files.key);
    let both = trusting(&[&first.der, &second.der]);
    eventually("the renewed certificate on new connections", || {
        let both = both.clone();
        let addr = addr.clone();
        let want = second.der.clone();
        async move {
            let stream = connect(&addr, both).await.ok()?;
            (served(&stream) == want).then_some(())
        }
    })
    .await;
    assert_eq!(
        post_on(&mut open, &key, &body()).await,
        200,
        "the open connection still works"
    );
    let mut renewed = connect(&addr, trusting(&[&second.der])).await.unwrap();
    assert_eq!(post_on(&mut renewed, &key, &body()).await, 200);

    // A broken renewal (a new certificate without its key) is not served: for longer than the
    // watcher needs to notice a change, new connections keep getting the last good pair. The
    // open connection is used meanwhile, or actix would close it after 5 s of keep-alive.
    let third = TestCert::new();
    std::fs::write(&files.cert, &third.cert_pem).unwrap();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let stream = connect(&addr, both.clone()).await.expect("still served");
        assert_eq!(served(&stream), second.der);
        assert_eq!(post_on(&mut open, &key, &body()).await, 200);
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    // Completing the pair puts it in service.
    std::fs::write(&files.key, &third.key_pem).unwrap();
    let third_only = trusting(&[&third.der]);
    eventually("the repaired pair on new connections", || {
        let config = third_only.clone();
        let addr = addr.clone();
        async move { connect(&addr, config).await.ok().map(drop) }
    })
    .await;
    assert_eq!(
        post_on(&mut open, &key, &body()).await,
        200,
        "and the first connection still works"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn plain_http_and_tls_below_1_2_are_refused() {
    let cert = TestCert::new();
    let files = files_with(&cert);
    let app = spawn_https(&files).await;
    let addr = host_port(&app);

    let plain = format!(
        "POST /webhook HTTP/1.1\r\nhost: localhost\r\nx-api-key: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        webhook_key("berlin")
    );
    let answer = exchange(&addr, plain.as_bytes()).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    let answer = exchange(&addr, &client_hello_tls11()).await;
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "a TLS alert, not a ServerHello: {answer:?}"
    );

    // TLS 1.2 and 1.3 both work.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = RootCertStore::empty();
        roots.add(cert.der.clone()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut stream = connect(&addr, Arc::new(config)).await.unwrap();
        let session = stream.get_ref().1;
        assert_eq!(session.protocol_version(), Some(version.version));
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(
            post_on(&mut stream, &webhook_key("berlin"), &body()).await,
            200
        );
    }
    app.stop().await;
}

/// Sends `bytes` and returns everything the relay sends back before it closes (or 5 s pass).
async fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    answer
}

/// A ClientHello as a TLS 1.1 client sends it: version 3.2, no supported_versions extension,
/// CBC suites only.
fn client_hello_tls11() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x06, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}
