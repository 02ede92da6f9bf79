//! The running studios: starts one actor per tenant file, and on reload restarts only the
//! studios whose file (or secrets) changed, retires the removed ones and keeps the last good
//! version of a broken one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ArbiterHandle};
use arc_swap::ArcSwap;
use serde::Serialize;

use crate::activity::Activity;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::registry::{self, DirError, Registry, StudioHandle};
use crate::sink::{FileWrites, NatsConnections};
use crate::status::StudioStatus;
use crate::store::Store;
use crate::studio::{InboxBell, Reconfigure, Retire, StudioActor, StudioDeps};
use crate::tenant::{StudioId, Tenant, TenantError};

/// What a reload did, for logs and tests.
#[derive(Debug, Default, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Broken files; a studio already running keeps its last good version.
    pub errors: Vec<String>,
}

pub struct Studios {
    dir: PathBuf,
    current: ArcSwap<Registry>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    store: Store,
    metrics: Arc<Metrics>,
    activity: Arc<Activity>,
    dead_letter_after: Duration,
    outbound: Outbound,
    file_writes: FileWrites,
    nats: NatsConnections,
    /// Reloads are applied one at a time.
    reloading: Mutex<()>,
}

impl Studios {
    /// Loads `dir` and starts a studio per valid file, spreading them over `arbiters`.
    pub fn start(
        dir: &Path,
        arbiters: Vec<ArbiterHandle>,
        store: Store,
        metrics: Arc<Metrics>,
        activity: Arc<Activity>,
        dead_letter_after: Duration,
        file_writes: FileWrites,
    ) -> Result<(Studios, ReloadReport), DirError> {
        let studios = Studios {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(Registry::default()),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            store,
            metrics,
            activity,
            dead_letter_after,
            outbound: Outbound::default(),
            file_writes,
            nats: NatsConnections::default(),
            reloading: Mutex::new(()),
        };
        let report = studios.reload()?;
        Ok((studios, report))
    }

    /// Studios with events on disk but no loaded tenant file (removed, or never valid), with
    /// their counts: their events are kept, and must be reported rather than hidden.
    pub fn not_loaded_with_pending(&self) -> Vec<(String, usize)> {
        let registry = self.registry();
        self.store
            .pending_by_studio()
            .into_iter()
            .filter(|(id, _)| StudioId::parse(id).is_ok_and(|id| registry.get(&id).is_none()))
            .collect()
    }

    /// The current snapshot. Clone what you need out of it before awaiting.
    pub fn registry(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory again and applies the difference. Studios that did not change are
    /// not touched; their in-flight work continues.
    pub fn reload(&self) -> Result<ReloadReport, DirError> {
        let _one_at_a_time = crate::lock::lock(&self.reloading);
        let loaded = registry::load_dir(&self.dir)?;
        let old = self.current.load_full();
        let mut next = Registry::default();
        let mut report = ReloadReport::default();

        for tenant in loaded.tenants {
            let id = tenant.id.to_string();
            let unchanged = old
                .get(&tenant.id)
                .is_some_and(|running| running.tenant.fingerprint == tenant.fingerprint);
            // Said when a file is new or edited, not again on every reload of the directory.
            if !unchanged {
                for warning in tenant.warnings() {
                    tracing::warn!(studio = %id, "{warning}");
                }
            }
            match old.get(&tenant.id) {
                Some(running) if unchanged => {
                    running.status.set_config_error(None);
                    next.insert(running.clone());
                }
                Some(running) => {
                    let tenant = Arc::new(tenant);
                    running.actor.do_send(Reconfigure(tenant.clone()));
                    running.status.set_config_error(None);
                    next.insert(StudioHandle {
                        tenant,
                        actor: running.actor.clone(),
                        status: running.status.clone(),
                        wake: running.wake.clone(),
                    });
                    report.changed.push(id);
                }
                None => {
                    next.insert(self.spawn(tenant));
                    report.added.push(id);
                }
            }
        }

        let broken: HashSet<StudioId> = loaded.errors.iter().filter_map(studio_of).collect();
        for error in &loaded.errors {
            report.errors.push(error.to_string());
        }
        for running in old.studios() {
            let id = &running.tenant.id;
            if next.get(id).is_some() {
                continue;
            }
            if broken.contains(id) {
                let error = loaded
                    .errors
                    .iter()
                    .find(|e| studio_of(e).as_ref() == Some(id));
                running
                    .status
                    .set_config_error(error.map(|e| format!("{}: {}", e.field, e.reason)));
                next.insert(running.clone());
            } else {
                running.actor.do_send(Retire);
                report.removed.push(id.to_string());
                let pending = self.store.pending_count(id);
                if pending > 0 {
                    tracing::warn!(studio = %id, pending, "studio removed: its pending events stay on disk until its file returns");
                }
            }
        }
        self.current.store(Arc::new(next));
        log(&report);
        Ok(report)
    }

    fn spawn(&self, tenant: Tenant) -> StudioHandle {
        let tenant = Arc::new(tenant);
        let status = Arc::new(StudioStatus::default());
        let wake = Arc::new(InboxBell::default());
        let deps = StudioDeps {
            wake: wake.clone(),
            store: self.store.clone(),
            activity: self.activity.clone(),
            metrics: self.metrics.clone(),
            status: status.clone(),
            dead_letter_after: self.dead_letter_after,
            outbound: self.outbound.clone(),
            file_writes: self.file_writes.clone(),
            nats: self.nats.clone(),
        };
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        let t = tenant.clone();
        let actor =
            StudioActor::start_in_arbiter(&self.arbiters[i], move |_| StudioActor::new(t, deps));
        StudioHandle {
            tenant,
            actor,
            status,
            wake,
        }
    }
}

/// The studio a broken file belongs to, if its name is a valid id.
fn studio_of(error: &TenantError) -> Option<StudioId> {
    let stem = error.file.file_stem()?.to_str()?;
    StudioId::parse(stem).ok()
}

fn log(report: &ReloadReport) {
    for error in &report.errors {
        tracing::error!("{error}; the studio keeps its last good version, if any");
    }
    if !(report.added.is_empty() && report.changed.is_empty() && report.removed.is_empty()) {
        tracing::info!(added = ?report.added, changed = ?report.changed, removed = ?report.removed, "tenants applied");
    }
}
