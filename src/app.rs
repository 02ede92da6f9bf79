//! Starting and stopping the relay: storage, studios, listeners, background pruning.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Arbiter};
use actix_web::dev::{Server, ServerHandle};
use actix_web::rt::task::JoinHandle;
use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::event::now_millis;
use crate::http::ingest::{self, IngestState};
use crate::registry::{self, Registry, StudioHandle};
use crate::store::{Store, StoreError};
use crate::studio::StudioActor;

/// How long in-flight acknowledgements get to finish when stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tenants(#[from] registry::DirError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// A started relay. Run it with [`Relay::run`]; stop it with its [`RelayHandle`], SIGINT or SIGTERM.
pub struct Relay {
    server: Server,
    accepting: Arc<AtomicBool>,
    addr: SocketAddr,
    store: Store,
    arbiters: Vec<Arbiter>,
    pruner: JoinHandle<()>,
}

impl Relay {
    /// Opens storage, starts one actor per valid studio and binds the ingest listener.
    /// Must be called inside an actix system.
    pub async fn start(config: &Config) -> Result<Relay, StartError> {
        let store = Store::open(&config.storage)?;
        let loaded = registry::load_dir(&config.tenants.dir)?;
        for error in &loaded.errors {
            tracing::error!("{error}; studio skipped");
        }
        // Studio actors live on their own threads, apart from the HTTP workers, so a burst of
        // enrichment or sink work never delays an acknowledgement.
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let mut registry = Registry::default();
        for (i, tenant) in loaded.tenants.into_iter().enumerate() {
            let tenant = Arc::new(tenant);
            let (t, s) = (tenant.clone(), store.clone());
            let actor = StudioActor::start_in_arbiter(&arbiters[i % threads].handle(), move |_| {
                StudioActor::new(t, s)
            });
            registry.insert(StudioHandle { tenant, actor });
        }
        if registry.is_empty() {
            tracing::warn!(dir = %config.tenants.dir.display(), "no studio loaded: every webhook will get 401");
        }
        report_orphans(&store, &registry);
        let known: Vec<String> = registry
            .studios()
            .map(|s| s.tenant.id.to_string())
            .collect();
        tracing::info!(studios = registry.len(), ids = ?known, "studios loaded");

        let pruner = spawn_pruner(
            store.clone(),
            config.storage.retention,
            config.storage.prune_interval,
        );

        let accepting = Arc::new(AtomicBool::new(true));
        let state = web::Data::new(IngestState {
            registry: Arc::new(registry),
            store: store.clone(),
            accepting: accepting.clone(),
        });
        let max_body = config.http.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(ingest::configure(max_body))
        })
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        // Signals are handled in `run`, which first turns new webhooks away with 503.
        .disable_signals();
        if config.http.workers > 0 {
            server = server.workers(config.http.workers);
        }
        let listen = config.http.listen;
        let server = server.bind(listen).map_err(|e| StartError::Bind {
            addr: listen,
            reason: e.to_string(),
        })?;
        let addr = server.addrs().first().copied().unwrap_or(listen);
        tracing::info!(%addr, "listening for webhooks on POST /webhook");
        Ok(Relay {
            server: server.run(),
            accepting,
            addr,
            store,
            arbiters,
            pruner,
        })
    }

    /// The bound ingest address (useful when the configured port is 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            server: self.server.handle(),
            accepting: self.accepting.clone(),
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
        let result = self.server.await;
        signals.abort();
        self.pruner.abort();
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for arbiter in self.arbiters {
            let _ = actix_web::rt::task::spawn_blocking(move || arbiter.join()).await;
        }
        if let Err(e) = self.store.sync().await {
            tracing::error!(error = %e, "final flush failed");
        }
        tracing::info!("stopped");
        result
    }
}

/// Stops a running relay.
#[derive(Clone)]
pub struct RelayHandle {
    server: ServerHandle,
    accepting: Arc<AtomicBool>,
}

impl RelayHandle {
    /// From now on new webhooks are answered 503 (the vendor resends them later); requests
    /// already past that check are acknowledged as usual.
    pub fn refuse_new_webhooks(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Refuses new webhooks, lets in-flight ones finish (up to the grace period) and stops.
    pub async fn stop(&self) {
        self.refuse_new_webhooks();
        self.server.stop(true).await;
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

/// Events on disk for studios that have no (valid) tenant file are kept, and said so.
fn report_orphans(store: &Store, registry: &Registry) {
    let Ok(pending) = store.pending_by_studio() else {
        return;
    };
    for (studio, count) in pending {
        if !registry.studios().any(|s| s.tenant.id.as_str() == studio) {
            tracing::warn!(%studio, pending = count, "events kept on disk for a studio that is not loaded");
        }
    }
}

fn spawn_pruner(store: Store, retention: Duration, every: Duration) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(every);
        loop {
            interval.tick().await;
            let cutoff = now_millis() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            let store = store.clone();
            match actix_web::rt::task::spawn_blocking(move || store.prune_seen(cutoff)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(pruned = n, "forgot uuids past retention"),
                Ok(Err(e)) => tracing::error!(error = %e, "pruning failed"),
                Err(e) => tracing::error!(error = %e, "pruning task failed"),
            }
        }
    })
}
