//! Starting and stopping the relay: storage, studios, listeners, background pruning.

use std::net::SocketAddr;
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

/// A started relay. Run it with [`Relay::run`]; stop it with its [`ServerHandle`] or a signal.
pub struct Relay {
    server: Server,
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

        let state = web::Data::new(IngestState {
            registry: Arc::new(registry),
            store: store.clone(),
        });
        let max_body = config.http.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(ingest::configure(max_body))
        })
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
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

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle), then stops the studios and makes
    /// storage durable.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.server.await;
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
