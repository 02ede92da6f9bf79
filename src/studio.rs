//! One actor per studio. It owns the studio's Open API client, budget and sinks, drains the
//! studio's inbox in arrival order with at most one Open API request in flight, and removes an
//! event only once every sink has it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Notify;

use crate::backoff::Backoff;
use crate::event::{Enrichment, EnrichmentResult, EnrichmentStatus};
use crate::openapi::{route, Answer, OpenApiClient, Route};
use crate::ratelimit::{Budget, WINDOW};
use crate::sink::Sink;
use crate::store::{InboxEntry, Store};
use crate::tenant::Tenant;

/// How long to wait before looking at the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Tells a studio that its inbox has something new.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

pub struct StudioActor {
    tenant: Arc<Tenant>,
    store: Store,
    wake: Rc<Notify>,
}

impl StudioActor {
    pub fn new(tenant: Arc<Tenant>, store: Store) -> StudioActor {
        StudioActor {
            tenant,
            store,
            wake: Rc::new(Notify::new()),
        }
    }
}

impl Actor for StudioActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Clients are built here, on the actor's own thread: awc clients are not `Send`.
        match Worker::new(self.tenant.clone(), self.store.clone(), self.wake.clone()) {
            Ok(worker) => {
                ctx.spawn(actix::fut::wrap_future(worker.run()));
            }
            Err(reason) => {
                tracing::error!(studio = %self.tenant.id, %reason, "studio cannot start");
            }
        }
    }
}

impl Handler<Wake> for StudioActor {
    type Result = ();

    fn handle(&mut self, _: Wake, _: &mut Self::Context) {
        // A permit is stored if the worker is busy, so no wake-up is lost.
        self.wake.notify_one();
    }
}

struct Worker {
    tenant: Arc<Tenant>,
    store: Store,
    wake: Rc<Notify>,
    open_api: OpenApiClient,
    budget: Budget,
    sinks: Vec<(String, Sink)>,
}

impl Worker {
    fn new(tenant: Arc<Tenant>, store: Store, wake: Rc<Notify>) -> Result<Worker, String> {
        let open_api = OpenApiClient::new(
            &tenant.open_api.base_url,
            &tenant.open_api.api_key,
            tenant.open_api.timeout,
        )
        .map_err(|e| e.to_string())?;
        let sinks = tenant
            .sinks
            .iter()
            .map(|s| Sink::new(s).map(|sink| (s.key(), sink)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Worker {
            budget: Budget::new(tenant.open_api.requests_per_minute),
            tenant,
            store,
            wake,
            open_api,
            sinks,
        })
    }

    async fn run(mut self) {
        tracing::info!(studio = %self.tenant.id, "studio running");
        loop {
            match self.store.pending(&self.tenant.id, 1) {
                Ok(mut entries) => match entries.pop() {
                    Some(entry) => self.process(entry).await,
                    None => self.wake.notified().await,
                },
                Err(e) => {
                    tracing::error!(studio = %self.tenant.id, error = %e, "cannot read the inbox");
                    actix_rt::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }

    /// Enriches (unless already done before a restart), delivers to every sink that does not
    /// have it yet, then removes the event. Returns only when the event is done.
    async fn process(&mut self, mut entry: InboxEntry) {
        let result = match entry.event.enriched.clone() {
            Some(result) => result,
            None => {
                let result = self.enrich(&entry).await;
                entry.event.enriched = Some(result.clone());
                self.save(&entry).await;
                result
            }
        };
        let enriched = entry.event.to_enriched(self.tenant.id.as_str(), &result);
        let body = match serde_json::to_vec(&enriched) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(studio = %self.tenant.id, id = %entry.event.id, error = %e, "cannot encode event");
                return;
            }
        };
        for (key, sink) in &self.sinks {
            if entry.event.delivered_to.contains(key) {
                continue;
            }
            let mut attempt = 0;
            loop {
                match sink.deliver(&entry.event.id, &body).await {
                    Ok(()) => break,
                    Err(e) => {
                        attempt += 1;
                        let delay = Backoff::TRANSIENT.delay(attempt, None);
                        tracing::warn!(studio = %self.tenant.id, id = %entry.event.id, sink = %key, attempt, error = %e, retry_in = ?delay, "sink delivery failed");
                        actix_rt::time::sleep(delay).await;
                    }
                }
            }
            entry.event.delivered_to.push(key.clone());
            if self.sinks.len() > 1 {
                self.save(&entry).await;
            }
        }
        tracing::debug!(studio = %self.tenant.id, id = %entry.event.id, r#type = %entry.event.event_type, status = ?result.enrichment.status, "delivered");
        while let Err(e) = self.store.finish(&entry) {
            tracing::error!(studio = %self.tenant.id, error = %e, "cannot remove a delivered event");
            actix_rt::time::sleep(STORE_RETRY).await;
        }
    }

    async fn save(&self, entry: &InboxEntry) {
        while let Err(e) = self.store.save(entry) {
            tracing::error!(studio = %self.tenant.id, error = %e, "cannot record progress");
            actix_rt::time::sleep(STORE_RETRY).await;
        }
    }

    async fn enrich(&mut self, entry: &InboxEntry) -> EnrichmentResult {
        let (endpoint, path) = match route(&entry.event) {
            Route::Skip { reason } => {
                return EnrichmentResult {
                    enrichment: Enrichment {
                        status: EnrichmentStatus::Skipped,
                        request: None,
                        reason: Some(reason.to_string()),
                    },
                    entity: None,
                }
            }
            Route::Fetch { endpoint, path } => (endpoint, path),
        };
        let request = format!("GET {path}");
        let studio = self.tenant.id.clone();
        let mut failures = 0;
        let mut rejections = 0;
        loop {
            self.wait_for_budget(endpoint).await;
            let (status, entity) = match self.open_api.get(&path).await {
                Answer::Found(entity) => (EnrichmentStatus::Fetched, Some(entity)),
                Answer::NotFound => (EnrichmentStatus::NotFound, None),
                Answer::RateLimited => {
                    tracing::warn!(%studio, endpoint, "Open API answered 429: holding this endpoint for a minute");
                    self.budget.endpoint(endpoint).hold(Instant::now() + WINDOW);
                    continue;
                }
                Answer::CredentialsRejected(code) => {
                    rejections += 1;
                    let delay = Backoff::CREDENTIALS.delay(rejections, None);
                    tracing::error!(%studio, status = code, retry_in = ?delay, "Open API rejected the studio's key: events are kept until it is fixed");
                    actix_rt::time::sleep(delay).await;
                    continue;
                }
                Answer::Retry {
                    reason,
                    retry_after,
                } => {
                    failures += 1;
                    let delay = Backoff::TRANSIENT.delay(failures, retry_after);
                    tracing::warn!(%studio, %request, %reason, attempt = failures, retry_in = ?delay, "Open API request failed");
                    actix_rt::time::sleep(delay).await;
                    continue;
                }
            };
            return EnrichmentResult {
                enrichment: Enrichment {
                    status,
                    request: Some(request),
                    reason: None,
                },
                entity,
            };
        }
    }

    async fn wait_for_budget(&mut self, endpoint: &'static str) {
        loop {
            let now = Instant::now();
            match self.budget.endpoint(endpoint).try_acquire(now) {
                Ok(()) => return,
                Err(at) => actix_rt::time::sleep(at.saturating_duration_since(now)).await,
            }
        }
    }
}
