//! Reads a PEM certificate chain and its private key into what rustls serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Which file could not be used, and why. The reasons are fixed sentences on purpose: a parser's
/// own message may quote the line it choked on, and in a key file that line is key material.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: Reason,
}

#[derive(Debug, thiserror::Error)]
pub enum Reason {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("not a PEM file, or a damaged one")]
    NotPem,
    #[error("holds no CERTIFICATE block")]
    NoCertificate,
    #[error("holds no private key (a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)")]
    NoKey,
    #[error("the private key is of a type rustls cannot sign with")]
    UnsupportedKey,
    #[error("the certificate cannot be parsed")]
    BadCertificate,
    #[error("the private key does not belong to the certificate in {}", .0.display())]
    Mismatch(PathBuf),
}

/// Loads `cert` (leaf first, then intermediates) and `key`, and makes sure they belong together,
/// so a renewal that replaced only one of them is refused instead of failing every handshake.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, LoadError> {
    let chain = read_chain(cert).map_err(|reason| LoadError {
        file: cert.to_path_buf(),
        reason,
    })?;
    let key_error = |reason| LoadError {
        file: key.to_path_buf(),
        reason,
    };
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(pem_reason(e, Reason::NoKey)))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|_| key_error(Reason::UnsupportedKey))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(key_error(Reason::Mismatch(cert.to_path_buf())))
        }
        // Key types whose public half rustls cannot derive are served unchecked, as rustls does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(_) => Err(LoadError {
            file: cert.to_path_buf(),
            reason: Reason::BadCertificate,
        }),
    }
}

/// The certificates of a PEM file, in file order.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Reason> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_reason(e, Reason::NoCertificate))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_reason(e, Reason::NoCertificate))?;
    if chain.is_empty() {
        return Err(Reason::NoCertificate);
    }
    Ok(chain)
}

fn pem_reason(error: pem::Error, missing: Reason) -> Reason {
    match error {
        pem::Error::Io(e) => Reason::Read(e),
        pem::Error::NoItemsFound => missing,
        _ => Reason::NotPem,
    }
}

/// The provider the relay serves with: ring, as everywhere else in the build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key_pair.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn loads_a_matching_pair_and_names_the_file_that_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let provider = provider();
        assert!(load(&cert, &key, &provider).is_ok());

        let e = load(&cert, &other_key, &provider).unwrap_err();
        assert_eq!(e.file, other_key);
        assert!(matches!(e.reason, Reason::Mismatch(_)), "{e}");

        let e = load(&dir.path().join("absent.crt"), &key, &provider).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "{}: cannot read it",
                dir.path().join("absent.crt").display()
            )),
            "{e}"
        );

        let e = load(&key, &key, &provider).unwrap_err();
        assert!(matches!(e.reason, Reason::NoCertificate), "{e}");
        let e = load(&cert, &cert, &provider).unwrap_err();
        assert!(matches!(e.reason, Reason::NoKey), "{e}");
    }

    #[test]
    fn a_damaged_key_file_is_reported_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let text = std::fs::read_to_string(&key).unwrap();
        let secret_line = text.lines().nth(1).unwrap().to_string();
        // Cut inside the base64: the END marker is gone.
        std::fs::write(&key, &text[..text.len() / 2]).unwrap();
        let e = load(&cert, &key, &provider()).unwrap_err().to_string();
        assert!(e.contains("not a PEM file"), "{e}");
        assert!(!e.contains(&secret_line[..16]), "{e}");
    }
}
