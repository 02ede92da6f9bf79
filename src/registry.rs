//! All studios: loads `tenants/`, and finds a studio by its webhook key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::Addr;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::status::StudioStatus;
use crate::studio::{InboxBell, StudioActor};
use crate::tenant::{self, StudioId, Tenant, TenantError};

/// Webhook keys are indexed by their SHA-256 so that the plain keys are not what the lookup
/// table holds, and a lookup costs the same whichever key is sent.
type KeyHash = [u8; 32];

pub fn hash_key(key: &[u8]) -> KeyHash {
    Sha256::digest(key).into()
}

/// The outcome of reading a tenants directory: the studios that loaded and the files that did not.
#[derive(Debug, Default)]
pub struct Loaded {
    pub tenants: Vec<Tenant>,
    pub errors: Vec<TenantError>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the tenants directory {}: {reason}", dir.display())]
pub struct DirError {
    pub dir: PathBuf,
    pub reason: String,
}

/// Reads every `*.toml` in `dir` (sorted). A broken file is reported and skipped; a webhook key
/// already used by an earlier studio makes the later file an error, since one key must name one
/// studio.
pub fn load_dir(dir: &Path) -> Result<Loaded, DirError> {
    let read = std::fs::read_dir(dir).map_err(|e| DirError {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut loaded = Loaded::default();
    let mut owners: HashMap<KeyHash, StudioId> = HashMap::new();
    for file in files {
        match tenant::load(&file) {
            Ok(t) => {
                let clash = t.webhook_keys.iter().find_map(|k| {
                    owners
                        .get(&hash_key(k.expose_secret().as_bytes()))
                        .filter(|owner| **owner != t.id)
                });
                if let Some(owner) = clash {
                    loaded.errors.push(TenantError {
                        file,
                        field: "webhook_api_keys".into(),
                        reason: format!("a webhook key is already used by studio {owner}"),
                    });
                    continue;
                }
                for k in &t.webhook_keys {
                    owners.insert(hash_key(k.expose_secret().as_bytes()), t.id.clone());
                }
                loaded.tenants.push(t);
            }
            Err(e) => loaded.errors.push(e),
        }
    }
    Ok(loaded)
}

/// A running studio as the ingest and the admin API see it.
#[derive(Clone)]
pub struct StudioHandle {
    pub tenant: Arc<Tenant>,
    pub actor: Addr<StudioActor>,
    pub status: Arc<StudioStatus>,
    pub wake: Arc<InboxBell>,
}

impl StudioHandle {
    /// Tells the studio that events were put in its inbox.
    pub fn event_stored(&self) {
        self.wake.stored();
    }

    /// Tells the studio that dead letters were put back in its inbox.
    pub fn events_replayed(&self) {
        self.wake.replayed();
    }
}

/// One immutable snapshot of the running studios, by id and by webhook key. A reload builds a
/// new one and swaps it in whole, so a lookup never sees half an edit.
#[derive(Default)]
pub struct Registry {
    by_key: HashMap<KeyHash, StudioId>,
    studios: HashMap<StudioId, StudioHandle>,
}

impl Registry {
    pub fn insert(&mut self, handle: StudioHandle) {
        for key in &handle.tenant.webhook_keys {
            self.by_key.insert(
                hash_key(key.expose_secret().as_bytes()),
                handle.tenant.id.clone(),
            );
        }
        self.studios.insert(handle.tenant.id.clone(), handle);
    }

    /// Every key, known or not, costs one SHA-256 and one lookup of the digest: the map only
    /// ever compares digests, so how long a lookup takes says nothing about the plain key.
    pub fn by_webhook_key(&self, key: &[u8]) -> Option<&StudioHandle> {
        self.by_key
            .get(&hash_key(key))
            .and_then(|id| self.studios.get(id))
    }

    pub fn get(&self, id: &StudioId) -> Option<&StudioHandle> {
        self.studios.get(id)
    }

    pub fn studios(&self) -> impl Iterator<Item = &StudioHandle> {
        self.studios.values()
    }

    pub fn len(&self) -> usize {
        self.studios.len()
    }

    pub fn is_empty(&self) -> bool {
        self.studios.is_empty()
    }
}
