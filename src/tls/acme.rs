//! Certificates from an ACME CA: rustls-acme orders, caches and renews them, answering the CA's
//! TLS-ALPN-01 challenge on the HTTPS listener itself.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeState, EventOk, ResolvesServerCertAcme};

use super::files;
use super::served::ServedCertificate;
use crate::config::AcmeConfig;

/// The ALPN protocol the CA's validation connection asks for.
pub use rustls_acme::acme::ACME_TLS_ALPN_NAME;

/// How often the driver looks whether the listener is still there. Renewal itself is scheduled
/// by rustls-acme (when a third of the certificate's lifetime is left).
const LIVENESS: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AcmeSetupError {
    #[error("http.acme.cache_dir {}: {reason}", path.display())]
    CacheDir {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("http.acme.directory_ca {}: {reason}", path.display())]
    DirectoryCa {
        path: PathBuf,
        reason: files::Reason,
    },
    #[error("http.acme.directory_ca {}: a certificate is not usable as a root: {reason}", path.display())]
    BadRoot {
        path: PathBuf,
        reason: rustls::Error,
    },
    #[error("TLS client for the ACME directory: {0}")]
    Client(rustls::Error),
}

/// What `check` can verify without talking to the CA: the extra roots load and the cache
/// directory is (or can become) a directory.
pub fn verify(settings: &AcmeConfig) -> Result<(), AcmeSetupError> {
    if let Some(ca) = &settings.directory_ca {
        roots(ca)?;
    }
    let dir = &settings.cache_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(cache_error(dir)(std::io::Error::other("not a directory")));
    }
    Ok(())
}

/// Starts ordering (or loads the cached certificate) in the background and returns the
/// resolver for the HTTPS listener. Until a certificate is there, handshakes other than the
/// CA's challenge fail. Must be called inside an actix system.
pub fn start(
    settings: &AcmeConfig,
    provider: Arc<CryptoProvider>,
    served: Arc<ServedCertificate>,
) -> Result<Arc<AcmeResolver>, AcmeSetupError> {
    private_dir(&settings.cache_dir)?;
    let acme = match &settings.directory_ca {
        // A private CA's directory: trust its root only, the public ones have no say there.
        Some(ca) => {
            let client = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(AcmeSetupError::Client)?
                .with_root_certificates(roots(ca)?)
                .with_no_client_auth();
            rustls_acme::AcmeConfig::new_with_client_config(&settings.domains, Arc::new(client))
        }
        None => rustls_acme::AcmeConfig::new_with_provider(&settings.domains, provider),
    };
    let state = acme
        .contact(settings.contact.iter().map(|c| mailto(c)))
        .directory(&settings.directory_url)
        .cache(DirCache::new(settings.cache_dir.clone()))
        .state();
    let resolver = Arc::new(AcmeResolver {
        acme: state.resolver(),
        served,
    });
    tracing::info!(
        domains = ?settings.domains,
        directory = %settings.directory_url,
        cache = %settings.cache_dir.display(),
        "HTTPS with certificates from ACME (TLS-ALPN-01)"
    );
    actix_web::rt::spawn(drive(state, Arc::downgrade(&resolver)));
    Ok(resolver)
}

/// The ACME resolver as the listener holds it; the driver watches it to know when to stop.
#[derive(Debug)]
pub struct AcmeResolver {
    acme: Arc<ResolvesServerCertAcme>,
    /// rustls-acme does not say which certificate it serves, so it is noted as handshakes get
    /// it: what the vendor's client saw last.
    served: Arc<ServedCertificate>,
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN_NAME));
        let pair = self.acme.resolve(hello)?;
        if !challenge {
            self.served.record(&pair);
        }
        Some(pair)
    }
}

/// rustls-acme does its work (cache load, orders, renewals, retries with backoff) while its
/// state stream is polled; each item is one thing that happened.
async fn drive(mut state: AcmeState<std::io::Error>, listener: Weak<AcmeResolver>) {
    let mut liveness = actix_web::rt::time::interval(LIVENESS);
    loop {
        tokio::select! {
            event = state.next() => match event {
                Some(Ok(event)) => log(&event),
                Some(Err(e)) => tracing::error!(error = %e, "ACME: certificate not obtained yet; retrying with backoff"),
                None => return,
            },
            _ = liveness.tick() => if listener.strong_count() == 0 {
                return;
            },
        }
    }
}

fn log(event: &EventOk) {
    match event {
        EventOk::DeployedCachedCert => tracing::info!("ACME: serving the cached certificate"),
        EventOk::DeployedNewCert => tracing::info!("ACME: new certificate issued and served"),
        EventOk::CertCacheStore => tracing::info!("ACME: certificate stored in the cache"),
        EventOk::AccountCacheStore => tracing::info!("ACME: account key stored in the cache"),
    }
}

fn mailto(contact: &str) -> String {
    if contact.starts_with("mailto:") {
        contact.to_string()
    } else {
        format!("mailto:{contact}")
    }
}

/// The cache holds the certificate's private key and the account key: owner only.
fn private_dir(dir: &Path) -> Result<(), AcmeSetupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(cache_error(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(cache_error(dir))
}

fn cache_error(dir: &Path) -> impl FnOnce(std::io::Error) -> AcmeSetupError + '_ {
    move |reason| AcmeSetupError::CacheDir {
        path: dir.to_path_buf(),
        reason,
    }
}

fn roots(path: &Path) -> Result<RootCertStore, AcmeSetupError> {
    let mut roots = RootCertStore::empty();
    let certs = files::read_chain(path).map_err(|reason| AcmeSetupError::DirectoryCa {
        path: path.to_path_buf(),
        reason,
    })?;
    for cert in certs {
        roots.add(cert).map_err(|reason| AcmeSetupError::BadRoot {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> AcmeConfig {
        AcmeConfig {
            domains: vec!["relay.example.com".into()],
            contact: Some("ops@example.com".into()),
            cache_dir: dir.join("acme"),
            directory_url: AcmeConfig::LETS_ENCRYPT.into(),
            directory_ca: None,
        }
    }

    #[test]
    fn contacts_become_mailto_urls_once() {
        assert_eq!(mailto("ops@example.com"), "mailto:ops@example.com");
        assert_eq!(mailto("mailto:ops@example.com"), "mailto:ops@example.com");
    }

    #[test]
    fn the_cache_dir_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("a/b/acme");
        private_dir(&cache).unwrap();
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // An existing, too open directory is tightened.
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&cache).unwrap();
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn verify_reports_a_bad_directory_ca_and_a_file_as_cache_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        assert!(
            verify(&s).is_ok(),
            "a missing cache dir is created at start"
        );

        std::fs::write(dir.path().join("acme"), "").unwrap();
        let e = verify(&s).unwrap_err().to_string();
        assert!(e.starts_with("http.acme.cache_dir"), "{e}");
        assert!(e.contains("not a directory"), "{e}");

        s.cache_dir = dir.path().join("cache");
        s.directory_ca = Some(dir.path().join("absent.pem"));
        let e = verify(&s).unwrap_err().to_string();
        assert!(e.starts_with("http.acme.directory_ca"), "{e}");
        assert!(e.contains("cannot read it"), "{e}");

        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        s.directory_ca = Some(dir.path().join("ca.pem"));
        assert!(verify(&s).is_ok());
    }
}
