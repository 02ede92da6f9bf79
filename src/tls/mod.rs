//! HTTPS for the public ingest: which certificate source the config asks for, and the rustls
//! server config that serves it (TLS 1.2 and 1.3, HTTP/1.1).

mod acme;
mod files;
mod reload;
mod served;

use std::path::Path;
use std::sync::Arc;

use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;

pub use acme::AcmeSetupError;
pub use files::{load, provider, LoadError, Reason};
pub use served::ServedCertificate;

use crate::config::{AcmeConfig, HttpConfig};

/// Where the ingest's certificate comes from.
#[derive(Debug)]
pub enum Mode<'a> {
    Plain,
    Files { cert: &'a Path, key: &'a Path },
    Acme(&'a AcmeConfig),
}

/// TLS settings that cannot be honoured as written. Refusing beats serving plain HTTP, or a
/// certificate the operator did not mean, where HTTPS was asked for.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("http.tls_cert is set without http.tls_key; HTTPS needs both")]
    CertWithoutKey,
    #[error("http.tls_key is set without http.tls_cert; HTTPS needs both")]
    KeyWithoutCert,
    #[error("http.acme and http.tls_cert / http.tls_key are mutually exclusive; keep one certificate source")]
    AcmeAndFiles,
    #[error("http.acme.domains is empty; name the domain(s) the certificate is for")]
    NoDomains,
    #[error(
        "http.acme.domains: {0:?} is not a domain name (TLS-ALPN-01 cannot validate wildcards)"
    )]
    BadDomain(String),
    #[error("http.acme.contact: {0:?} is not an email address")]
    BadContact(String),
    #[error("http.acme.directory_url: {0:?} is not an https:// URL")]
    BadDirectory(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("http.tls_cert / http.tls_key: {0}")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Acme(#[from] AcmeSetupError),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

impl<'a> Mode<'a> {
    pub fn of(http: &'a HttpConfig) -> Result<Mode<'a>, SettingsError> {
        let files = match (&http.tls_cert, &http.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            (Some(_), None) => return Err(SettingsError::CertWithoutKey),
            (None, Some(_)) => return Err(SettingsError::KeyWithoutCert),
        };
        match (files, &http.acme) {
            (Some(_), Some(_)) => Err(SettingsError::AcmeAndFiles),
            (Some((cert, key)), None) => Ok(Mode::Files { cert, key }),
            (None, Some(acme)) => validate_acme(acme).map(|()| Mode::Acme(acme)),
            (None, None) => Ok(Mode::Plain),
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Mode::Plain)
    }
}

fn validate_acme(acme: &AcmeConfig) -> Result<(), SettingsError> {
    if acme.domains.is_empty() {
        return Err(SettingsError::NoDomains);
    }
    if let Some(bad) = acme.domains.iter().find(|d| !is_domain(d)) {
        return Err(SettingsError::BadDomain(bad.clone()));
    }
    if let Some(contact) = &acme.contact {
        let address = contact.strip_prefix("mailto:").unwrap_or(contact);
        let valid = address
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && is_domain(host));
        if !valid {
            return Err(SettingsError::BadContact(contact.clone()));
        }
    }
    if !acme.directory_url.starts_with("https://") {
        return Err(SettingsError::BadDirectory(acme.directory_url.clone()));
    }
    Ok(())
}

/// Dot-separated labels of letters, digits and hyphens; enough to catch a URL, a wildcard or a
/// stray space, the CA judges the rest.
fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The rustls config for the ingest listener, or `None` for plain HTTP. Also starts the task
/// that reloads or renews the certificate, which is why it must be called inside an actix
/// system. `served` follows the certificate handshakes get.
pub fn server_config(
    http: &HttpConfig,
    served: Arc<ServedCertificate>,
) -> Result<Option<ServerConfig>, TlsError> {
    let provider = provider();
    let (resolver, alpn): (Arc<dyn ResolvesServerCert>, _) = match Mode::of(http)? {
        Mode::Plain => return Ok(None),
        Mode::Files { cert, key } => {
            let resolver = reload::FileResolver::start(cert, key, provider.clone(), served)?;
            tracing::info!(cert = %cert.display(), "HTTPS with the certificate from http.tls_cert");
            (resolver, Vec::new())
        }
        Mode::Acme(settings) => {
            let resolver = acme::start(settings, provider.clone(), served)?;
            // The CA's validation handshake asks for this protocol only.
            (resolver, vec![acme::ACME_TLS_ALPN_NAME.to_vec()])
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // actix puts "h2" and "http/1.1" in front of these itself: "h2" because awc turns on
    // actix-http's http2 feature for the whole build, and HttpServer offers no way to leave it
    // out. The vendor's client speaks HTTP/1.1 and gets it.
    config.alpn_protocols = alpn;
    Ok(Some(config))
}

/// What `check` can find wrong without serving: the settings, and that the certificate files
/// load (or, for ACME, that its local files are usable).
pub fn verify(http: &HttpConfig) -> Result<Mode<'_>, TlsError> {
    let mode = Mode::of(http)?;
    match &mode {
        Mode::Plain => {}
        Mode::Files { cert, key } => {
            load(cert, key, &provider())?;
        }
        Mode::Acme(settings) => acme::verify(settings)?,
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(domains: &[&str]) -> AcmeConfig {
        AcmeConfig {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            contact: Some("ops@example.com".into()),
            cache_dir: "acme".into(),
            directory_url: AcmeConfig::LETS_ENCRYPT.into(),
            directory_ca: None,
        }
    }

    fn http(cert: bool, key: bool, acme_domains: Option<&[&str]>) -> HttpConfig {
        HttpConfig {
            tls_cert: cert.then(|| "cert.pem".into()),
            tls_key: key.then(|| "key.pem".into()),
            acme: acme_domains.map(acme),
            ..HttpConfig::default()
        }
    }

    fn refused(http: &HttpConfig) -> String {
        Mode::of(http).unwrap_err().to_string()
    }

    #[test]
    fn one_certificate_source_or_none() {
        assert!(matches!(
            Mode::of(&http(false, false, None)),
            Ok(Mode::Plain)
        ));
        assert!(matches!(
            Mode::of(&http(true, true, None)),
            Ok(Mode::Files { .. })
        ));
        assert!(matches!(
            Mode::of(&http(false, false, Some(&["relay.example.com"]))),
            Ok(Mode::Acme(_))
        ));
        assert!(refused(&http(true, false, None))
            .starts_with("http.tls_cert is set without http.tls_key"));
        assert!(refused(&http(false, true, None))
            .starts_with("http.tls_key is set without http.tls_cert"));
        assert!(
            refused(&http(true, true, Some(&["relay.example.com"]))).contains("mutually exclusive")
        );
    }

    #[test]
    fn acme_settings_are_checked_before_any_request() {
        assert!(refused(&http(false, false, Some(&[]))).starts_with("http.acme.domains is empty"));
        for bad in [
            "",
            "*.example.com",
            "https://relay.example.com",
            "relay example.com",
            "-a.com",
        ] {
            let message = refused(&http(false, false, Some(&["ok.example.com", bad])));
            assert!(message.starts_with("http.acme.domains"), "{bad}: {message}");
        }
        let mut h = http(false, false, Some(&["localhost"]));
        assert!(Mode::of(&h).is_ok(), "single-label names are the CA's call");
        h.acme.as_mut().unwrap().contact = Some("mailto:ops@example.com".into());
        assert!(Mode::of(&h).is_ok());
        h.acme.as_mut().unwrap().contact = Some("ops".into());
        assert!(refused(&h).starts_with("http.acme.contact"));
        h.acme.as_mut().unwrap().contact = None;
        h.acme.as_mut().unwrap().directory_url = "http://127.0.0.1:14000/dir".into();
        assert!(refused(&h).starts_with("http.acme.directory_url"));
    }

    #[test]
    // figment's Jail closures return its large error type by design.
    #[allow(clippy::result_large_err)]
    fn acme_section_loads_with_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gymrelay.toml",
                "[http.acme]\ndomains = [\"relay.example.com\"]\ncontact = \"ops@example.com\"\n",
            )?;
            let config = crate::Config::load(Some(Path::new("gymrelay.toml"))).expect("loads");
            let acme = config.http.acme.expect("the section is read");
            assert_eq!(acme.directory_url, AcmeConfig::LETS_ENCRYPT);
            assert_eq!(acme.cache_dir, std::path::PathBuf::from("acme"));
            assert!(crate::Config::load(None)
                .expect("loads")
                .http
                .acme
                .is_none());

            jail.create_file("gymrelay.toml", "[http.acme]\ndomain = [\"x\"]\n")?;
            let e = crate::Config::load(Some(Path::new("gymrelay.toml"))).unwrap_err();
            assert!(e.to_string().contains("http.acme"), "{e}");
            Ok(())
        });
    }
}
