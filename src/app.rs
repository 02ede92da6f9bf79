//! Starting and stopping the relay: storage, studios, listeners, reload, background pruning.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actix_web::dev::{Server, ServerHandle};
use actix_web::rt::task::JoinHandle;
use actix_web::{web, App, HttpServer};

use crate::activity::Activity;
use crate::config::Config;
use crate::disk_space::DiskSpace;
use crate::downtime::Reachability;
use crate::event::now_millis;
use crate::http::admin::{self, AdminState};
use crate::http::ingest::{self, IngestState};
use crate::http::limits::{AuthFailures, InFlight, StudioRates};
use crate::metrics::Metrics;
use crate::registry;
use crate::reload::Reloader;
use crate::sink::{FileWriters, FILE_WRITES_AT_ONCE};
use crate::store::{Store, StoreError};
use crate::studios::Studios;
use crate::tls::ServedCertificate;

/// How long in-flight acknowledgements get to finish when stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenants(#[from] registry::DirError),
    #[error("cannot watch the tenants directory: {0}")]
    Watch(#[from] notify::Error),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the file sinks' writer threads: {0}")]
    FileWriters(std::io::Error),
}

/// A started relay. Run it with [`Relay::run`]; stop it with its [`RelayHandle`], SIGINT or SIGTERM.
pub struct Relay {
    ingest: Server,
    admin: Server,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    accepting: Arc<AtomicBool>,
    store: Store,
    arbiters: Vec<Arbiter>,
    file_writers: FileWriters,
    pruner: JoinHandle<()>,
    outage_watch: JoinHandle<()>,
    reachability: Arc<Reachability>,
    disk_watch: JoinHandle<()>,
    reloader: Reloader,
}

impl Relay {
    /// Opens storage, starts one actor per valid studio and binds both listeners.
    /// Must be called inside an actix system.
    pub async fn start(config: &Config) -> Result<Relay, StartError> {
        refuse_unsupported(config)?;
        let store = Store::open(&config.storage.store_settings())?;
        let metrics = Arc::new(Metrics::new());
        let activity = Arc::new(Activity::default());
        // Studio actors live on their own threads, apart from the HTTP workers, so a burst of
        // enrichment or sink work never delays an acknowledgement.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let file_writers =
            FileWriters::start(FILE_WRITES_AT_ONCE).map_err(StartError::FileWriters)?;
        let (studios, _) = Studios::start(
            &config.tenants.dir,
            arbiters.iter().map(Arbiter::handle).collect(),
            store.clone(),
            metrics.clone(),
            activity.clone(),
            config.delivery.dead_letter_after,
            file_writers.writes(),
        )?;
        let studios = Arc::new(studios);
        let registry = studios.registry();
        if registry.is_empty() {
            tracing::warn!(dir = %config.tenants.dir.display(), "no studio loaded: every webhook will get 401");
        }
        // Events on disk for studios without a (valid) tenant file are kept, and said so.
        for (studio, pending) in studios.not_loaded_with_pending() {
            tracing::warn!(%studio, pending, "events kept on disk for a studio that is not loaded");
        }
        tracing::info!(studios = registry.len(), "studios loaded");
        let reloader = Reloader::start(studios.clone())?;

        let pruner = spawn_pruner(
            store.clone(),
            Retention {
                uuids: config.storage.retention,
                dead_letters: config.delivery.dead_letter_retention,
                every: config.storage.prune_interval,
            },
            metrics.clone(),
        );

        let disk = DiskSpace::watch(config.storage.path.clone(), config.storage.min_free_bytes);
        let disk_watch = spawn_disk_watch(disk.clone(), metrics.clone());

        let accepting = Arc::new(AtomicBool::new(true));
        let ingest_state = web::Data::new(IngestState {
            studios: studios.clone(),
            activity: activity.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            accepting: accepting.clone(),
            in_flight: InFlight::new(config.http.max_in_flight),
            rates: StudioRates::new(
                config.http.studio_requests_per_second,
                config.http.studio_burst,
            ),
            auth_failures: AuthFailures::new(),
            max_body_bytes: config.http.max_body_bytes,
            body_timeout: config.http.body_timeout,
            disk: disk.clone(),
        });
        let workers = match config.http.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let ingest = HttpServer::new(move || {
            App::new()
                .app_data(ingest_state.clone())
                .configure(ingest::configure)
        })
        .workers(workers)
        // actix counts connections per worker.
        .max_connections(config.http.max_connections.div_ceil(workers).max(1))
        // Slow headers get 408 from actix; slow bodies get it from the handler.
        .client_request_timeout(config.http.header_timeout)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        // Signals are handled in `run`, which first turns new webhooks away with 503.
        .disable_signals();
        let listen = config.http.listen;
        let certificate = Arc::new(ServedCertificate::default());
        let ingest = match crate::tls::server_config(&config.http, certificate.clone())? {
            Some(tls) => ingest.bind_rustls_0_23(listen, tls),
            None => ingest.bind(listen),
        }
        .map_err(bind_error(listen))?;
        let addr = ingest.addrs().first().copied().unwrap_or(listen);
        let ingest = ingest.run();
        tracing::info!(%addr, "listening for webhooks on POST /webhook");
        let reachability = Arc::new(Reachability::new(disk, certificate, accepting.clone()));
        let outage_watch =
            crate::downtime::spawn_watch(store.clone(), studios.clone(), reachability.clone());

        let admin_state = web::Data::new(AdminState {
            studios,
            activity,
            store: store.clone(),
            metrics,
            token: config.admin.token.clone(),
            reachability: reachability.clone(),
        });
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .configure(admin::configure)
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals();
        let listen = config.admin.listen;
        let admin = admin.bind(listen).map_err(bind_error(listen))?;
        let admin_addr = admin.addrs().first().copied().unwrap_or(listen);
        let admin = admin.run();
        tracing::info!(addr = %admin_addr, "admin listener: /healthz /readyz /metrics /api");

        Ok(Relay {
            ingest,
            admin,
            addr,
            admin_addr,
            accepting,
            store,
            arbiters,
            file_writers,
            pruner,
            outage_watch,
            reachability,
            disk_watch,
            reloader,
        })
    }

    /// The bound ingest address (useful when the configured port is 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            ingest: self.ingest.handle(),
            admin: self.admin.handle(),
            accepting: self.accepting.clone(),
            store: self.store.clone(),
            reachability: self.reachability.clone(),
        }
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle), then stops the studios and makes
    /// storage durable.
    pub async fn run(self) -> std::io::Result<()> {
        let handle = self.handle();
        let signals = actix_web::rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: new webhooks get 503, acknowledgements in flight finish");
            handle.stop().await;
        });
        // After a failed sync nothing more can be acknowledged (PostgreSQL's rule: the pages may
        // be gone from the cache, so only what is on disk can be trusted). Stop, and let the
        // service manager start the relay again on what is on disk.
        let (handle, store) = (self.handle(), self.store.clone());
        let failure = Arc::new(std::sync::OnceLock::new());
        let failed = failure.clone();
        let storage = actix_web::rt::spawn(async move {
            let reason = store.sync_failed().await;
            tracing::error!(%reason, "storage sync failed: stopping with exit code {SYNC_FAILED_EXIT}, to be restarted on what is on disk");
            let _ = failed.set(reason);
            handle.stop().await;
        });
        let (ingest, admin) = futures_util::future::join(self.ingest, self.admin).await;
        signals.abort();
        storage.abort();
        let sync_failed = failure.get().cloned();
        self.pruner.abort();
        self.outage_watch.abort();
        self.disk_watch.abort();
        self.reloader.stop();
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for arbiter in self.arbiters {
            let _ = actix_web::rt::task::spawn_blocking(move || arbiter.join()).await;
        }
        // A file write outlives its studio's stopped delivery; the event stays queued and is
        // delivered again after a restart, but a line left half written there is avoidable.
        if !self.file_writers.finish(SHUTDOWN_GRACE).await {
            tracing::warn!(
                grace_secs = SHUTDOWN_GRACE.as_secs(),
                "file sink writes still under way at exit; their events are delivered again after a restart"
            );
        }
        if let Err(e) = self.store.sync().await {
            tracing::error!(error = %e, "final flush failed");
        }
        tracing::info!("stopped");
        if let Some(reason) = sync_failed {
            return Err(std::io::Error::other(SyncFailed(reason)));
        }
        ingest.and(admin)
    }
}

/// The exit code after a failed storage sync: EX_TEMPFAIL, "try again later". The shipped
/// systemd unit and the Docker instructions restart the relay on it.
pub const SYNC_FAILED_EXIT: u8 = 75;

/// Why [`Relay::run`] ended without being asked to: a storage sync failed.
#[derive(Debug, thiserror::Error)]
#[error("storage sync failed: {0}")]
pub struct SyncFailed(pub String);

fn bind_error(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> StartError {
    move |e| StartError::Bind {
        addr,
        reason: e.to_string(),
    }
}

/// Settings that cannot be honoured as written (half a certificate pair, two certificate
/// sources), refused before anything starts. Refusing beats silently serving plain HTTP where
/// HTTPS was asked for.
pub fn refuse_unsupported(config: &Config) -> Result<(), StartError> {
    crate::tls::Mode::of(&config.http)
        .map(drop)
        .map_err(|e| StartError::Tls(e.into()))
}

/// Stops a running relay.
#[derive(Clone)]
pub struct RelayHandle {
    ingest: ServerHandle,
    admin: ServerHandle,
    accepting: Arc<AtomicBool>,
    store: Store,
    reachability: Arc<Reachability>,
}

impl RelayHandle {
    /// From now on new webhooks are answered 503 (the vendor resends them later); requests
    /// already past that check are acknowledged as usual.
    pub fn refuse_new_webhooks(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Refuses new webhooks, lets in-flight ones finish (up to the grace period) and stops.
    pub async fn stop(&self) {
        // The last moment webhooks could get in: the downtime the next start measures begins
        // here, not after the studios and file writes have wound down.
        crate::downtime::beat_at_stop(&self.store, &self.reachability);
        self.refuse_new_webhooks();
        self.ingest.stop(true).await;
        self.admin.stop(true).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the relay");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reads the storage's free space every half second, off the async threads (`statvfs` on a
/// network file system can block).
fn spawn_disk_watch(disk: Arc<DiskSpace>, metrics: Arc<Metrics>) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(crate::disk_space::CHECK_EVERY);
        loop {
            interval.tick().await;
            let checked = disk.clone();
            if actix_web::rt::task::spawn_blocking(move || checked.check())
                .await
                .is_err()
            {
                tracing::error!("the free-space check failed");
            }
            metrics
                .storage_free_bytes
                .set(i64::try_from(disk.free_bytes()).unwrap_or(i64::MAX));
        }
    })
}

/// How long what is kept is kept.
struct Retention {
    uuids: Duration,
    dead_letters: Duration,
    every: Duration,
}

fn spawn_pruner(store: Store, retention: Retention, metrics: Arc<Metrics>) -> JoinHandle<()> {
    let cutoff =
        |keep: Duration| now_millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(retention.every);
        loop {
            interval.tick().await;
            let (seen, letters) = (cutoff(retention.uuids), cutoff(retention.dead_letters));
            let store = store.clone();
            let pruned = actix_web::rt::task::spawn_blocking(move || {
                (store.prune_seen(seen), store.prune_dead_letters(letters))
            })
            .await;
            let (seen, letters) = match pruned {
                Ok(pruned) => pruned,
                Err(e) => {
                    tracing::error!(error = %e, "pruning task failed");
                    continue;
                }
            };
            match seen {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "forgot uuids past retention"),
                Err(e) => tracing::error!(error = %e, "pruning uuids failed"),
            }
            match letters {
                Ok(expired) => {
                    for (studio, n) in expired {
                        tracing::info!(%studio, removed = n, "dead letters past delivery.dead_letter_retention removed");
                        metrics
                            .dead_letters_expired
                            .with_label_values(&[studio.as_str()])
                            .inc_by(n as u64);
                    }
                }
                Err(e) => tracing::error!(error = %e, "pruning dead letters failed"),
            }
        }
    })
}
