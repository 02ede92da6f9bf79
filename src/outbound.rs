//! HTTP clients for the relay's own requests (Open API, http sinks). Each studio keeps its own
//! clients and connection pools, but they share one TLS configuration: left to itself, awc
//! builds a root store and a session cache for every client, about 22 KiB each, which came to
//! 22 MiB of a 34 MiB idle relay with 1,000 studios. (`Connector::new` still builds its default
//! configuration before ours replaces it; awc has no constructor without one, and it is freed
//! at once.)

use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Outbound {
    tls: Arc<rustls::ClientConfig>,
}

impl Default for Outbound {
    fn default() -> Self {
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(public_roots())
            .with_no_client_auth();
        // What awc offers by default.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Outbound { tls: Arc::new(tls) }
    }
}

/// The certificate authorities browsers trust, as awc would load them.
fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
}

impl Outbound {
    /// A client that gives up after `timeout` and never follows a redirect (a redirect could
    /// carry the request's key to another host).
    pub fn client(&self, timeout: Duration) -> awc::Client {
        awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(self.tls.clone()))
            .disable_redirects()
            .timeout(timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared configuration still verifies certificates: a self-signed one is refused.
    #[actix_rt::test]
    async fn refuses_a_certificate_no_public_root_signed() {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key_pair.serialize_der()).unwrap();
        let server_tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().default_service(actix_web::web::to(actix_web::HttpResponse::Ok))
        })
        .workers(1)
        .bind_rustls_0_23("127.0.0.1:0", server_tls)
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);

        let client = Outbound::default().client(Duration::from_secs(5));
        let error = client
            .get(format!("https://localhost:{port}/"))
            .send()
            .await
            .expect_err("a self-signed certificate must be refused");
        assert!(
            error.to_string().to_lowercase().contains("certificate"),
            "{error}"
        );
        handle.stop(false).await;
        // Refusing is only half of it: a store with no roots would refuse every server too.
        assert!(public_roots().len() > 100, "{}", public_roots().len());
    }
}
