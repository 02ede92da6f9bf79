//! One actor per studio. It owns the studio's Open API client, budget and sinks, drains the
//! studio's inbox in arrival order with at most one Open API request in flight, and removes an
//! event only once every sink has it. What keeps failing past `dead_letter_after` is moved to
//! the dead letters; nothing is dropped.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Notify;

use crate::activity::{Activity, RecentEvent};
use crate::backoff::Backoff;
use crate::event::{now_millis, DeadLetter, Enrichment, EnrichmentResult, EnrichmentStatus};
use crate::metrics::Metrics;
use crate::openapi::{route, route_for, Answer, OpenApiClient, Route, ENDPOINTS};
use crate::outbound::Outbound;
use crate::ratelimit::{Budget, BudgetSnapshot, WINDOW};
use crate::sink::{FileWrites, Sink};
use crate::status::{EndpointUse, StudioState, StudioStatus};
use crate::store::{InboxEntry, Store};
use crate::tenant::Tenant;

/// How long to wait before looking at the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How far ahead in the inbox an Open API answer is offered to events needing the same request.
const COALESCE_LOOKAHEAD: usize = 64;

/// Most events handed to the sinks together when a backlog needs no Open API request.
const DELIVERY_BATCH: usize = 64;

/// How often the Open API budget is saved. After a crash up to this much of the current
/// minute's use is forgotten; the default budget (900 of the vendor's 1000) absorbs that.
const BUDGET_SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// What a studio shares with the rest of the relay.
#[derive(Clone)]
pub struct StudioDeps {
    pub store: Store,
    pub activity: Arc<Activity>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<StudioStatus>,
    /// Rung after events are put in the studio's inbox (intake, replay). It keeps one permit,
    /// so a ring while the worker is busy costs an atomic operation and is not lost.
    pub wake: Arc<Notify>,
    pub dead_letter_after: Duration,
    pub outbound: Outbound,
    pub file_writes: FileWrites,
}

/// A new version of the studio's tenant file: the worker restarts with it. Cancelling the old
/// worker and starting the new one happen in one handler, so two never run at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Arc<Tenant>);

/// Stop processing (webhooks are still accepted and queued) until [`Resume`]. For a partner's
/// maintenance window; not remembered across restarts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pause;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume;

/// The tenant file is gone: stop; the studio's events stay on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

pub struct StudioActor {
    tenant: Arc<Tenant>,
    deps: StudioDeps,
    worker: Option<SpawnHandle>,
    paused: bool,
    /// Owned by the actor, not the worker, so a reconfigure or pause keeps what was used.
    budget: Rc<RefCell<Budget>>,
    /// What was last written by `save_budget`.
    saved_budget: Vec<u8>,
}

impl StudioActor {
    pub fn new(tenant: Arc<Tenant>, deps: StudioDeps) -> StudioActor {
        let budget = Budget::new(tenant.open_api.requests_per_minute);
        StudioActor {
            tenant,
            deps,
            worker: None,
            paused: false,
            budget: Rc::new(RefCell::new(budget)),
            saved_budget: Vec::new(),
        }
    }

    fn restore_budget(&self) {
        let saved = self.deps.store.load_budget(&self.tenant.id);
        let snapshot = saved
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<BudgetSnapshot>(&bytes).ok());
        if let Some(snapshot) = snapshot {
            self.budget
                .borrow_mut()
                .restore(&snapshot, ENDPOINTS, Instant::now(), now_millis());
        }
    }

    /// Saves the budget if it changed since the last save: an idle studio writes nothing, where
    /// a thousand idle studios would otherwise write 500 times a second.
    fn save_budget(&mut self) {
        let snapshot = self
            .budget
            .borrow_mut()
            .snapshot(Instant::now(), now_millis());
        let bytes = match serde_json::to_vec(&snapshot) {
            Ok(bytes) if bytes == self.saved_budget => return,
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(studio = %self.tenant.id, error = %e, "cannot encode the Open API budget");
                return;
            }
        };
        match self.deps.store.save_budget(&self.tenant.id, &bytes) {
            Ok(()) => self.saved_budget = bytes,
            Err(e) => {
                tracing::warn!(studio = %self.tenant.id, error = %e, "cannot save the Open API budget")
            }
        }
    }

    fn stop_worker(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.worker.take() {
            ctx.cancel_future(handle);
        }
    }

    fn start_worker(&mut self, ctx: &mut Context<Self>) {
        if self.paused {
            self.stop_worker(ctx);
            return;
        }
        // Clients are built here, on the actor's own thread: awc clients are not `Send`.
        let worker = Worker::new(self.tenant.clone(), self.deps.clone(), self.budget.clone());
        match worker {
            Ok(worker) => {
                // The old worker is cancelled in the same handler, so two never run at once.
                self.stop_worker(ctx);
                self.worker = Some(ctx.spawn(actix::fut::wrap_future(worker.run())));
                // Look at the inbox at once: the new worker has no memory of earlier wake-ups.
                self.deps.wake.notify_one();
            }
            Err(reason) => {
                // Tenant validation makes this unexpected; a running worker keeps running.
                tracing::error!(studio = %self.tenant.id, %reason, "studio cannot start with this configuration");
                self.deps.status.set_config_error(Some(reason));
            }
        }
    }
}

impl Actor for StudioActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.restore_budget();
        ctx.run_interval(BUDGET_SAVE_INTERVAL, |actor, _| actor.save_budget());
        self.start_worker(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.save_budget();
    }
}

impl Handler<Reconfigure> for StudioActor {
    type Result = ();

    fn handle(&mut self, Reconfigure(tenant): Reconfigure, ctx: &mut Self::Context) {
        self.budget
            .borrow_mut()
            .set_limit(tenant.open_api.requests_per_minute);
        self.tenant = tenant;
        self.start_worker(ctx);
        tracing::info!(studio = %self.tenant.id, "studio reconfigured");
    }
}

impl Handler<Pause> for StudioActor {
    type Result = ();

    fn handle(&mut self, _: Pause, ctx: &mut Self::Context) {
        // An Open API request or delivery in flight is abandoned; the event stays at the head
        // of the inbox and is taken up again on resume.
        self.paused = true;
        self.stop_worker(ctx);
        self.deps.status.set_state(StudioState::Paused, None);
        tracing::info!(studio = %self.tenant.id, "studio paused");
    }
}

impl Handler<Resume> for StudioActor {
    type Result = ();

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) {
        if self.paused {
            self.paused = false;
            self.start_worker(ctx);
            tracing::info!(studio = %self.tenant.id, "studio resumed");
        }
    }
}

impl Handler<Retire> for StudioActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

struct Worker {
    tenant: Arc<Tenant>,
    deps: StudioDeps,
    open_api: OpenApiClient,
    budget: Rc<RefCell<Budget>>,
    sinks: Vec<(String, Sink)>,
}

/// Why an event is given up on.
struct Dead {
    stage: String,
    reason: String,
}

impl Worker {
    fn new(
        tenant: Arc<Tenant>,
        deps: StudioDeps,
        budget: Rc<RefCell<Budget>>,
    ) -> Result<Worker, String> {
        let open_api = OpenApiClient::new(
            &tenant.open_api.base_url,
            &tenant.open_api.api_key,
            tenant.open_api.timeout,
            &deps.outbound,
        )
        .map_err(|e| e.to_string())?;
        let sinks = tenant
            .sinks
            .iter()
            .zip(tenant.sink_keys())
            .map(|(s, key)| Sink::new(s, &deps.outbound, &deps.file_writes).map(|sink| (key, sink)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Worker {
            budget,
            tenant,
            deps,
            open_api,
            sinks,
        })
    }

    async fn run(mut self) {
        tracing::info!(studio = %self.tenant.id, "studio running");
        self.deps.status.set_state(StudioState::Running, None);
        loop {
            match self.next_events() {
                Ok(mut entries) => match entries.len() {
                    0 => self.deps.wake.notified().await,
                    1 => {
                        self.process(entries.remove(0)).await;
                    }
                    _ => {
                        self.deliver_together(entries).await;
                    }
                },
                Err(e) => {
                    tracing::error!(studio = %self.tenant.id, error = %e, "cannot read the inbox");
                    actix_rt::time::sleep(STORE_RETRY).await;
                }
            }
            // A backlog of events that need no request never awaits anything: let the other
            // studios on this thread, and this actor's own messages (reconfigure, retire,
            // pause), have their turn.
            tokio::task::yield_now().await;
        }
    }

    /// The head of the inbox, with the events right behind it when none of them needs an Open
    /// API request or has a delivery under way: those can go to the sinks together.
    fn next_events(&self) -> Result<Vec<InboxEntry>, crate::store::StoreError> {
        self.deps
            .store
            .pending_run(&self.tenant.id, DELIVERY_BATCH, |e| {
                self.ready_to_deliver(e)
            })
    }

    fn ready_to_deliver(&self, entry: &InboxEntry) -> bool {
        let event = &entry.event;
        event.delivered_to.is_empty()
            && event.failing_since_ms.is_none()
            && (event.enriched.is_some() || matches!(route(event), Route::Skip { .. }))
    }

    /// Delivers consecutive events that need no request to each sink in one go. If a sink
    /// fails, what it did take is recorded and the head goes the one-by-one way, which retries.
    async fn deliver_together(&mut self, mut entries: Vec<InboxEntry>) {
        let mut statuses = Vec::with_capacity(entries.len());
        let mut bodies = Vec::with_capacity(entries.len());
        for entry in &mut entries {
            let computed;
            let result = match &entry.event.enriched {
                Some(result) => result,
                None => match self.enrich(entry).await {
                    Ok((result, _)) => {
                        computed = result;
                        &computed
                    }
                    Err(_) => break,
                },
            };
            let enriched = entry.event.to_enriched(self.tenant.id.as_str(), result);
            let Ok(body) = serde_json::to_vec(&enriched) else {
                break;
            };
            statuses.push(result.enrichment.status);
            bodies.push(body);
        }
        // Whatever could not be prepared goes the one-by-one way, which reports why.
        entries.truncate(bodies.len().max(1));
        if bodies.is_empty() {
            self.process(entries.remove(0)).await;
            return;
        }
        let mut failed = false;
        let sink_count = self.sinks.len();
        for (i, (key, sink)) in self.sinks.iter().enumerate() {
            let batch: Vec<(&str, &[u8])> = entries
                .iter()
                .zip(&bodies)
                .map(|(e, b)| (e.event.id.as_str(), b.as_slice()))
                .collect();
            let delivered = match sink.deliver_all(&batch).await {
                Ok(()) => batch.len(),
                Err((delivered, error)) => {
                    tracing::warn!(studio = %self.tenant.id, sink = %key, %error, "sink delivery failed");
                    self.deps
                        .metrics
                        .sink_deliveries
                        .with_label_values(&[self.tenant.id.as_str(), key.as_str(), "failed"])
                        .inc();
                    failed = true;
                    delivered
                }
            };
            drop(batch);
            self.deps
                .metrics
                .sink_deliveries
                .with_label_values(&[self.tenant.id.as_str(), key.as_str(), "delivered"])
                .inc_by(delivered as u64);
            for entry in &mut entries[..delivered] {
                entry.event.delivered_to.push(key.clone());
            }
            // Saved when something can still interrupt the batch (another sink, a retry), so
            // an interruption does not send these to this sink again.
            if failed || i + 1 < sink_count {
                for entry in &entries[..delivered] {
                    self.save(entry).await;
                }
            }
            if failed {
                break;
            }
        }
        if failed {
            let head = entries.into_iter().next().expect("a batch has a head");
            self.process(head).await;
            return;
        }
        tracing::debug!(studio = %self.tenant.id, events = entries.len(), first = %entries[0].event.id, "delivered together");
        for (entry, status) in entries.iter().zip(statuses) {
            self.record_delivery(entry, Ok(&status));
            self.finish(entry).await;
        }
    }

    /// Enriches (unless already done before a restart), delivers to every sink that does not
    /// have it yet, then removes the event. Returns when the event is delivered or buried.
    async fn process(&mut self, mut entry: InboxEntry) {
        let outcome = self.enrich_and_deliver(&mut entry).await;
        self.record_delivery(&entry, outcome.as_ref().map_err(|_| ()));
        match outcome {
            Ok(status) => {
                tracing::debug!(studio = %self.tenant.id, id = %entry.event.id, r#type = %entry.event.event_type, ?status, "delivered");
                self.finish(&entry).await;
            }
            Err(Dead { stage, reason }) => {
                let studio = &self.tenant.id;
                tracing::error!(%studio, id = %entry.event.id, %stage, %reason, "moved to the dead letters");
                let letter = DeadLetter {
                    event: entry.event.clone(),
                    stage,
                    reason,
                    dead_at_ms: now_millis(),
                };
                while let Err(e) = self.deps.store.bury(&entry, &letter) {
                    tracing::error!(%studio, error = %e, "cannot move an event to the dead letters");
                    actix_rt::time::sleep(STORE_RETRY).await;
                }
            }
        }
        self.deps.status.set_state(StudioState::Running, None);
    }

    /// For the activity list: delivered with its enrichment status, or dead-lettered.
    fn record_delivery(&self, entry: &InboxEntry, outcome: Result<&EnrichmentStatus, ()>) {
        let now = now_millis();
        self.deps.activity.record(RecentEvent {
            at_ms: now,
            studio: self.tenant.id.to_string(),
            kind: "delivered",
            event_type: entry.event.event_type.clone(),
            entity_id: entry.event.entity_id,
            outcome: match outcome {
                Ok(status) => status.as_str().to_string(),
                Err(()) => "dead_letter".into(),
            },
            latency_ms: (now - entry.event.received_at_ms) as f64,
        });
    }

    async fn finish(&self, entry: &InboxEntry) {
        while let Err(e) = self.deps.store.finish(entry) {
            tracing::error!(studio = %self.tenant.id, error = %e, "cannot remove a delivered event");
            actix_rt::time::sleep(STORE_RETRY).await;
        }
    }

    async fn enrich_and_deliver(
        &mut self,
        entry: &mut InboxEntry,
    ) -> Result<EnrichmentStatus, Dead> {
        let result = match entry.event.enriched.clone() {
            Some(result) => result,
            None => {
                let (result, asked_at) = self.enrich(entry).await?;
                entry.event.enriched = Some(result.clone());
                entry.event.failing_since_ms = None;
                // Only a fetched answer is worth keeping across a restart; a skip is recomputed.
                if let Some(asked_at) = asked_at {
                    self.save(entry).await;
                    self.share_answer(entry, &result, asked_at).await;
                }
                result
            }
        };
        let enriched = entry.event.to_enriched(self.tenant.id.as_str(), &result);
        let body = serde_json::to_vec(&enriched).map_err(|e| Dead {
            stage: "encoding".into(),
            reason: e.to_string(),
        })?;
        for (key, sink) in &self.sinks {
            if entry.event.delivered_to.contains(key) {
                continue;
            }
            let stage = format!("sink:{key}");
            let labels = [self.tenant.id.as_str(), key.as_str()];
            let mut attempt = 0;
            loop {
                match sink.deliver(&entry.event.id, &body).await {
                    Ok(()) => {
                        self.deps
                            .metrics
                            .sink_deliveries
                            .with_label_values(&[labels[0], labels[1], "delivered"])
                            .inc();
                        break;
                    }
                    Err(e) => {
                        self.deps
                            .metrics
                            .sink_deliveries
                            .with_label_values(&[labels[0], labels[1], "failed"])
                            .inc();
                        attempt += 1;
                        let error = e.to_string();
                        let failing_for = entry.event.record_failure(&stage, &error, now_millis());
                        if failing_for >= self.dead_letter_after_ms() {
                            return Err(Dead {
                                stage,
                                reason: format!("sink kept failing: {error}"),
                            });
                        }
                        self.save(entry).await;
                        let delay = Backoff::TRANSIENT.delay(attempt, None);
                        tracing::warn!(studio = %self.tenant.id, id = %entry.event.id, sink = %key, attempt, %error, retry_in = ?delay, "sink delivery failed");
                        self.deps.status.sink_failing(key, &error);
                        actix_rt::time::sleep(delay).await;
                    }
                }
            }
            entry.event.delivered_to.push(key.clone());
            entry.event.failing_since_ms = None;
            if self.sinks.len() > 1 {
                self.save(entry).await;
            }
        }
        Ok(result.enrichment.status)
    }

    fn dead_letter_after_ms(&self) -> i64 {
        i64::try_from(self.deps.dead_letter_after.as_millis()).unwrap_or(i64::MAX)
    }

    async fn save(&self, entry: &InboxEntry) {
        while let Err(e) = self.deps.store.save(entry) {
            tracing::error!(studio = %self.tenant.id, error = %e, "cannot record progress");
            actix_rt::time::sleep(STORE_RETRY).await;
        }
    }

    /// Gives the answer to `head`'s request to the queued events that need the same request and
    /// arrived before it was sent: the answer is at least as new as each of their changes, so
    /// fetching again for them would only spend budget. Each is still delivered on its own, in
    /// its place, with its own id.
    async fn share_answer(&self, head: &InboxEntry, result: &EnrichmentResult, asked_at: u64) {
        let request = route(&head.event);
        let queued = self.deps.store.pending_unenriched(
            &self.tenant.id,
            COALESCE_LOOKAHEAD,
            asked_at,
            |event_type, entity, class| route_for(event_type, entity, class) == request,
        );
        let queued = match queued {
            Ok(queued) => queued,
            Err(e) => {
                tracing::warn!(studio = %self.tenant.id, error = %e, "cannot look ahead in the inbox");
                return;
            }
        };
        let mut shared = 0;
        for mut other in queued {
            if other.is(head) {
                continue;
            }
            other.event.enriched = Some(result.clone());
            self.save(&other).await;
            shared += 1;
        }
        if shared > 0 {
            tracing::debug!(studio = %self.tenant.id, request = ?result.enrichment.request, shared, "one Open API answer shared by queued events");
        }
    }

    /// The enrichment, and when (in arrival order, see `Store::sequence`) the request that
    /// answered was sent; None when no request was needed.
    async fn enrich(
        &mut self,
        entry: &mut InboxEntry,
    ) -> Result<(EnrichmentResult, Option<u64>), Dead> {
        let (endpoint, path) = match route(&entry.event) {
            Route::Skip { reason } => {
                let result = EnrichmentResult {
                    enrichment: Enrichment {
                        status: EnrichmentStatus::Skipped,
                        request: None,
                        reason: Some(reason.to_string()),
                    },
                    entity: None,
                };
                return Ok((result, None));
            }
            Route::Fetch { endpoint, path } => (endpoint, path),
        };
        let request = format!("GET {path}");
        let studio = self.tenant.id.clone();
        let mut failures = 0;
        let mut rejections = 0;
        loop {
            self.wait_for_budget(endpoint).await;
            // Which queued events are older than this request decides who may share its answer;
            // the store's sequence orders them even if the wall clock steps back.
            let asked_at = self.deps.store.sequence().unwrap_or(0);
            let answer = self.open_api.get(&path).await;
            self.deps
                .metrics
                .openapi_requests
                .with_label_values(&[studio.as_str(), endpoint, &answer.status_label()])
                .inc();
            let (status, entity) = match answer {
                Answer::Found(entity) => (EnrichmentStatus::Fetched, Some(entity)),
                Answer::NotFound => (EnrichmentStatus::NotFound, None),
                Answer::RateLimited { retry_after } => {
                    tracing::warn!(%studio, endpoint, "Open API answered 429: holding this endpoint for a minute");
                    self.deps
                        .metrics
                        .openapi_holds
                        .with_label_values(&[studio.as_str(), endpoint])
                        .inc();
                    // The vendor refuses for a minute; a longer Retry-After wins.
                    let hold = retry_after.map_or(WINDOW, |r| r.max(WINDOW));
                    self.budget
                        .borrow_mut()
                        .endpoint(endpoint)
                        .hold(Instant::now() + hold);
                    continue;
                }
                Answer::CredentialsRejected(code) => {
                    rejections += 1;
                    let delay = Backoff::CREDENTIALS.delay(rejections, None);
                    tracing::error!(%studio, status = code, retry_in = ?delay, "Open API rejected the studio's key: events are kept until it is fixed");
                    self.deps.status.set_state(
                        StudioState::CredentialsRejected,
                        Some(format!("Open API answered {code} to the studio's key")),
                    );
                    actix_rt::time::sleep(delay).await;
                    continue;
                }
                Answer::Permanent { reason, .. } => {
                    entry
                        .event
                        .record_failure("enrichment", &reason, now_millis());
                    return Err(Dead {
                        stage: "enrichment".into(),
                        reason: format!("{request}: {reason}"),
                    });
                }
                Answer::Retry {
                    reason,
                    retry_after,
                    ..
                } => {
                    failures += 1;
                    let failing_for =
                        entry
                            .event
                            .record_failure("enrichment", &reason, now_millis());
                    if failing_for >= self.dead_letter_after_ms() {
                        return Err(Dead {
                            stage: "enrichment".into(),
                            reason: format!("{request} kept failing: {reason}"),
                        });
                    }
                    self.save(entry).await;
                    let delay = Backoff::TRANSIENT.delay(failures, retry_after);
                    tracing::warn!(%studio, %request, %reason, attempt = failures, retry_in = ?delay, "Open API request failed");
                    self.deps
                        .status
                        .set_state(StudioState::Retrying, Some(format!("{request}: {reason}")));
                    actix_rt::time::sleep(delay).await;
                    continue;
                }
            };
            let result = EnrichmentResult {
                enrichment: Enrichment {
                    status,
                    request: Some(request),
                    reason: None,
                },
                entity,
            };
            return Ok((result, Some(asked_at)));
        }
    }

    async fn wait_for_budget(&mut self, endpoint: &'static str) {
        let started = Instant::now();
        loop {
            let now = Instant::now();
            // The borrow ends before any await: the actor saves the budget in between.
            let (acquired, usage) = {
                let mut budget = self.budget.borrow_mut();
                let limiter = budget.endpoint(endpoint);
                let acquired = limiter.try_acquire(now);
                let usage = EndpointUse {
                    used: limiter.used(now),
                    limit: self.tenant.open_api.requests_per_minute,
                    held_for_seconds: limiter.held_until(now).map(|u| (u - now).as_secs()),
                };
                (acquired, usage)
            };
            self.deps.status.budget(endpoint, usage);
            match acquired {
                Ok(()) => break,
                Err(at) => actix_rt::time::sleep(at.saturating_duration_since(now)).await,
            }
        }
        let waited = started.elapsed().as_secs_f64();
        if waited > 0.0 {
            self.deps
                .metrics
                .limiter_wait_seconds
                .with_label_values(&[self.tenant.id.as_str(), endpoint])
                .inc_by(waited);
        }
    }
}
