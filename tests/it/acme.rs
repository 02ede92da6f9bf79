//! One real certificate issuance through ACME (TLS-ALPN-01 on the relay's HTTPS port) against
//! Debian's `pebble` test CA on loopback, then a restart served from the cache alone.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gymrelay::config::AcmeConfig;
use gymrelay::Relay;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::helpers::*;
use crate::tls::{connect, post_on, served, trusting, TestCert};

/// The test CA, killed when the test ends however it ends.
struct Pebble {
    child: Child,
    directory: String,
    management: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pebble_installed() -> bool {
    Command::new("pebble")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Starts pebble with its own HTTPS certificate (`own`), validating TLS-ALPN-01 challenges
/// against `tls_port` on whatever the domain resolves to.
fn start_pebble(dir: &Path, own: &TestCert, tls_port: u16) -> Pebble {
    let (cert, key) = (dir.join("pebble.crt"), dir.join("pebble.key"));
    own.write(&cert, &key);
    let (acme_port, management_port) = (free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{management_port}"),
        "certificate": cert,
        "privateKey": key,
        "httpPort": free_port(),
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    let config_file = dir.join("pebble.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(&config_file)
        // Validate at once, really (no shortcut), and never reject a good nonce: the test is
        // about issuance, not about the client's patience.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_VA_ALWAYS_VALID", "0")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("pebble starts");
    let pebble = Pebble {
        child,
        directory: format!("https://127.0.0.1:{acme_port}/dir"),
        management: format!("127.0.0.1:{management_port}"),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", acme_port)).is_err()
        || std::net::TcpStream::connect(&pebble.management).is_err()
    {
        assert!(
            start.elapsed() < DEADLINE,
            "pebble did not start: {}",
            pebble_log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pebble
}

fn pebble_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
}

/// The root pebble issues under; it is made anew at every pebble start.
async fn pebble_root(pebble: &Pebble, own: &TestCert) -> CertificateDer<'static> {
    let client = crate::tls::https_client(trusting(&[&own.der]));
    let mut res = client
        .get(format!("https://{}/roots/0", pebble.management))
        .send()
        .await
        .expect("pebble's management endpoint answers");
    assert_eq!(res.status().as_u16(), 200);
    let pem = res.body().await.unwrap();
    CertificateDer::from_pem_slice(&pem).expect("a PEM root")
}

fn acme_settings(pebble_directory: &str, ca: &Path, cache: PathBuf) -> AcmeConfig {
    AcmeConfig {
        // Resolves to loopback without any change to the system.
        domains: vec!["localhost".into()],
        contact: Some("ops@example.com".into()),
        cache_dir: cache,
        directory_url: pebble_directory.into(),
        directory_ca: Some(ca.to_path_buf()),
    }
}

#[actix_rt::test]
async fn issues_a_certificate_from_pebble_and_serves_it_from_the_cache_after_a_restart() {
    if !pebble_installed() {
        skip("pebble is not installed (apt-get install pebble); ACME issuance not tested");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let own = TestCert::new();
    let relay_port = free_port();
    let pebble = start_pebble(work.path(), &own, relay_port);
    let cache = work.path().join("acme-cache");
    let settings = acme_settings(
        &pebble.directory,
        &work.path().join("pebble.crt"),
        cache.clone(),
    );

    let app = spawn_app_with(vec![Studio::new("berlin")], {
        let settings = settings.clone();
        move |config| {
            config.http.listen = ([127, 0, 0, 1], relay_port).into();
            config.http.acme = Some(settings);
        }
    })
    .await;
    let addr = format!("127.0.0.1:{relay_port}");
    let root = pebble_root(&pebble, &own).await;
    let trust_pebble = trusting(&[&root]);

    // The relay orders at start; the certificate is there once a handshake verifies against
    // pebble's root for the domain.
    let issued = eventually("a certificate issued by pebble", || {
        let (addr, config) = (addr.clone(), trust_pebble.clone());
        async move { connect(&addr, config).await.ok().map(|s| served(&s)) }
    })
    .await;
    let mut stream = connect(&addr, trust_pebble.clone()).await.unwrap();
    let body = notification(&unique("acme"), "CUSTOMER_CREATED", 7, None).to_string();
    assert_eq!(
        post_on(&mut stream, &webhook_key("berlin"), &body).await,
        200
    );
    drop(stream);
    // The certificate is served first and written to the cache a moment later.
    eventually("the certificate in the cache", || {
        let cached = std::fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("cached_cert_"));
        async move { cached.then_some(()) }
    })
    .await;
    app.stop().await;

    // Without the CA, a restart serves the cached certificate.
    drop(pebble);
    std::fs::create_dir_all(work.path().join("tenants")).unwrap();
    let mut config = config_for(work.path());
    config.http.acme = Some(settings);
    let relay = Relay::start(&config).await.unwrap();
    let addr = relay.addr().to_string();
    let handle = relay.handle();
    actix_web::rt::spawn(relay.run());
    let again = eventually("the cached certificate", || {
        let (addr, config) = (addr.clone(), trust_pebble.clone());
        async move { connect(&addr, config).await.ok().map(|s| served(&s)) }
    })
    .await;
    assert_eq!(again, issued);
    handle.stop().await;
}

#[actix_rt::test]
async fn acme_mode_starts_without_reaching_the_ca() {
    let work = tempfile::tempdir().unwrap();
    let closed = format!("https://127.0.0.1:{}/dir", free_port());
    let ca = TestCert::new();
    std::fs::write(work.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let cache = work.path().join("nested/acme");
    let settings = acme_settings(&closed, &work.path().join("ca.pem"), cache.clone());
    let app = spawn_app_with(vec![Studio::new("berlin")], move |config| {
        config.http.acme = Some(settings);
    })
    .await;
    assert!(app.url.starts_with("https://"));
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the cache holds private keys");
    // No certificate yet: the handshake fails rather than falling back to plain HTTP.
    let addr = app.url.trim_start_matches("https://").to_string();
    assert!(connect(&addr, trusting(&[&ca.der])).await.is_err());
    let status = app.admin("GET", "/healthz").await.0;
    assert_eq!(status, 200, "the rest of the relay runs meanwhile");
    app.stop().await;
}
