//! Serves the certificate from `tls_cert`/`tls_key` and picks up a renewal on disk without a
//! restart: new handshakes get the new pair, open connections keep theirs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::files::{self, LoadError};
use super::served::ServedCertificate;

/// How often the files' metadata is looked at. Polling rather than inotify: certbot and
/// Kubernetes secret volumes renew by swapping symlinks, which file watches follow poorly, and
/// two `stat` calls every few seconds cost nothing.
const POLL: Duration = Duration::from_secs(2);

/// The pair served to every new handshake.
pub struct FileResolver {
    current: ArcSwap<CertifiedKey>,
    served: Arc<ServedCertificate>,
}

// rustls wants Debug; the key must not show up in one.
impl std::fmt::Debug for FileResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for FileResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl FileResolver {
    /// Loads the pair (an error here stops the start) and keeps watching the files for as long
    /// as the resolver is in use. Must be called inside an actix system.
    pub fn start(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
        served: Arc<ServedCertificate>,
    ) -> Result<Arc<FileResolver>, LoadError> {
        // Stamped before reading: a change during the read is seen by the next poll.
        let stamp = Stamp::of(cert, key);
        let first = Arc::new(files::load(cert, key, &provider)?);
        served.record(&first);
        let resolver = Arc::new(FileResolver {
            current: ArcSwap::new(first),
            served,
        });
        let watch = Watch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
        };
        actix_web::rt::spawn(watch.run(Arc::downgrade(&resolver), stamp));
        Ok(resolver)
    }
}

struct Watch {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl Watch {
    /// Ends when the listener (the only holder of the resolver) is gone.
    async fn run(self, resolver: Weak<FileResolver>, mut loaded: Stamp) {
        let mut seen = loaded.clone();
        let mut ticks = actix_web::rt::time::interval(POLL);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            let now = Stamp::of(&self.cert, &self.key);
            // Only once both files stayed unchanged for a whole poll: a renewal writes the
            // certificate and the key one after the other, and half of one is not a pair.
            if now != loaded && now == seen {
                loaded = now.clone();
                self.reload(&resolver);
            }
            seen = now;
        }
    }

    /// A broken new pair leaves the old one in service; the error is logged once per change.
    fn reload(&self, resolver: &FileResolver) {
        match files::load(&self.cert, &self.key, &self.provider) {
            Ok(pair) => {
                let pair = Arc::new(pair);
                resolver.served.record(&pair);
                resolver.current.store(pair);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "the TLS certificate files changed but cannot be used; still serving the previous certificate"
            ),
        }
    }
}

/// What a renewal changes about a file: a rewrite changes the mtime or size, a rename or
/// symlink swap the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64, u64)>; 2]);

impl Stamp {
    fn of(cert: &Path, key: &Path) -> Stamp {
        let one = |path: &Path| {
            let m = std::fs::metadata(path).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        };
        Stamp([one(cert), one(key)])
    }
}
