//! The studio's worker loop: reads the inbox into the fetch-ahead window, sends what the
//! budget allows, takes answers as they come, and hands the window's head to the sinks, all at
//! once on the studio's thread. It sleeps when there is nothing to do until the inbox is rung
//! or a budget, hold or retry delay ends.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::deliver::{Deliverer, STORE_RETRY};
use super::enrich::{Enricher, Fetched, Go, Outcome};
use super::report::Report;
use super::sweep::SweepStage;
use super::window::Window;
use super::{InboxBell, StudioDeps};
use crate::event::now_millis;
use crate::openapi::OpenApiClient;
use crate::ratelimit::Budget;
use crate::route::{Endpoint, Request};
use crate::sink::Sink;
use crate::store::{InboxEntry, Store};
use crate::tenant::{StudioId, Tenant};

/// Most events handed to the sinks together.
pub const DELIVERY_BATCH: usize = 64;

pub struct Worker {
    pub studio: StudioId,
    pub store: Store,
    pub wake: Arc<InboxBell>,
    pub window: Window,
    pub enricher: Enricher,
    pub deliverer: Rc<Deliverer>,
    pub report: Rc<Report>,
    pub sweep: SweepStage,
}

/// What the delivery under way was.
enum Delivered {
    /// Live events, delivered and removed from the inbox (buried ones left out).
    Live(Vec<InboxEntry>),
    /// Reconciled events of a sweep's page: how many, how long the sinks took, and the
    /// customers whose event a sink did not take.
    Reconciled(usize, std::time::Duration, Vec<i64>),
}

impl Worker {
    /// The worker for this version of the tenant file, and the span it logs in. Clients are built
    /// here, on the actor's own thread: awc clients are not `Send`.
    pub fn build(
        tenant: &Tenant,
        deps: &StudioDeps,
        budget: &Rc<RefCell<Budget>>,
    ) -> Result<(Worker, tracing::Span), String> {
        let report = Rc::new(Report::new(
            tenant.id.clone(),
            deps.metrics.clone(),
            deps.status.clone(),
            deps.activity.clone(),
        ));
        let settings = &tenant.open_api;
        let client = OpenApiClient::new(
            &settings.base_url,
            &settings.api_key,
            settings.timeout,
            &deps.outbound,
        )
        .map_err(|e| e.to_string())?;
        let sinks = tenant
            .sinks
            .iter()
            .zip(tenant.sink_keys())
            .map(|(s, key)| {
                let sink = Sink::new(
                    s,
                    tenant.id.as_str(),
                    &deps.outbound,
                    &deps.file_writes,
                    &deps.nats,
                );
                sink.map(|sink| (key, sink))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let max_in_flight = settings.max_in_flight;
        // Room for every request in flight several times over (skipped events, shared answers),
        // and for a full delivery batch behind the one under way.
        let window = Window::new(DELIVERY_BATCH.max(4 * max_in_flight as usize));
        let span = report.span();
        let worker = Worker {
            studio: tenant.id.clone(),
            store: deps.store.clone(),
            wake: deps.wake.clone(),
            window,
            enricher: Enricher::new(
                client,
                Rc::clone(budget),
                settings.requests_per_minute,
                max_in_flight,
                tenant.entity.clone(),
                Rc::clone(&report),
            ),
            sweep: SweepStage::new(
                tenant.id.clone(),
                deps.store.clone(),
                tenant.reconcile.clone(),
                tenant.entity.clone(),
                Rc::clone(&report),
            ),
            report: Rc::clone(&report),
            deliverer: Rc::new(Deliverer::new(
                sinks,
                deps.store.clone(),
                report,
                deps.dead_letter_after,
            )),
        };
        Ok((worker, span))
    }

    pub async fn run(mut self) {
        tracing::info!("studio running");
        // A new worker (start, resume, tenant edit) starts with nothing known to be wrong.
        self.report.running();
        let mut fetches: FuturesUnordered<LocalBoxFuture<'static, Fetched>> =
            FuturesUnordered::new();
        let mut delivery: Option<LocalBoxFuture<'static, Delivered>> = None;
        let mut inbox_may_have_more = true;
        let mut rewind = false;
        loop {
            let mut wake_at: Option<Instant> = None;
            // Replayed events sit behind what was read: once the delivery under way is done, read
            // the inbox again from its head (requests in flight stay known to the window).
            if rewind && delivery.is_none() {
                self.window.rewind();
                inbox_may_have_more = true;
                rewind = false;
            }
            if inbox_may_have_more && self.window.room() > 0 {
                match self.read_inbox() {
                    Ok(more) => inbox_may_have_more = more,
                    Err(()) => wake_at = Some(Instant::now() + STORE_RETRY),
                }
            }
            if delivery.is_none() && !rewind {
                let run = self.window.pop_ready(DELIVERY_BATCH);
                if !run.is_empty() {
                    let deliverer = Rc::clone(&self.deliverer);
                    delivery = Some(Box::pin(async move {
                        Delivered::Live(deliverer.deliver(run).await)
                    }));
                    inbox_may_have_more = true;
                } else if let Some(events) = self.sweep.next_chunk(self.window.entries()) {
                    let deliverer = Rc::clone(&self.deliverer);
                    delivery = Some(Box::pin(async move {
                        let started = Instant::now();
                        let refused = deliverer.hand_over(&events).await;
                        Delivered::Reconciled(events.len(), started.elapsed(), refused)
                    }));
                }
            }
            if let Some(due_ms) = self.sweep.start_due(now_millis()) {
                let due = Instant::now()
                    + std::time::Duration::from_millis((due_ms - now_millis()).max(0) as u64);
                wake_at = Some(wake_at.map_or(due, |w| w.min(due)));
            }
            // While a rewind waits, nothing new is asked: the window is about to be read again.
            if !rewind {
                if let Some(at) = self.send_what_may_go(&mut fetches) {
                    wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                }
            }
            tokio::select! {
                Some((request, sent_at, reply)) = fetches.next(), if !fetches.is_empty() => {
                    let outcome = self.enricher.receive(&request, sent_at, reply, Instant::now());
                    self.apply(&request, outcome).await;
                }
                done = run_to_end(&mut delivery), if delivery.is_some() => {
                    delivery = None;
                    match done {
                        Delivered::Live(entries) => self.sweep.observe(&entries),
                        Delivered::Reconciled(events, took, refused) => {
                            self.sweep.chunk_delivered(events, took, refused)
                        }
                    }
                }
                () = self.wake.stored.notified() => inbox_may_have_more = true,
                () = self.wake.reconcile.notified() => self.sweep.reload(),
                () = self.wake.replayed.notified() => rewind = true,
                () = sleep_until(wake_at), if wake_at.is_some() => {}
            }
            // A backlog that needs no request may never wait on anything: let the other studios
            // on this thread, and this actor's own messages, have their turn.
            tokio::task::yield_now().await;
        }
    }

    /// Fills the window from the inbox; says whether the inbox may hold more than was read.
    fn read_inbox(&mut self) -> Result<bool, ()> {
        let room = self.window.room();
        let read = self
            .store
            .pending_after(&self.studio, self.window.read_up_to(), room);
        let entries = read.map_err(|e| tracing::error!(error = %e, "cannot read the inbox"))?;
        let full = entries.len() == room;
        for entry in entries {
            let sequence = entry.sequence();
            if self.window.admit(entry) {
                tracing::debug!(sequence, "a queued event shares an answer already fetched");
            }
        }
        Ok(full)
    }

    /// Sends, oldest event first, every request the budget and the in-flight cap allow; returns
    /// when the next one that had to wait may go.
    fn send_what_may_go(
        &mut self,
        fetches: &mut FuturesUnordered<LocalBoxFuture<'static, Fetched>>,
    ) -> Option<Instant> {
        let mut next = None;
        let now = Instant::now();
        let mut live_waits_for_room = false;
        for request in self.window.to_ask() {
            match self.enricher.send(&request, now) {
                Go::Send(fetch) => {
                    // The entries in the window all arrived before this point; entries that
                    // arrive later get a higher sequence and will not share this answer.
                    let asked_at = match self.store.sequence() {
                        Ok(sequence) => sequence,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the inbox sequence");
                            0
                        }
                    };
                    self.window.asked(&request, asked_at);
                    fetches.push(fetch);
                }
                Go::Later(at) => next = Some(next.map_or(at, |n: Instant| n.min(at))),
                Go::Full => {
                    live_waits_for_room = true;
                    break;
                }
            }
        }
        // A sweep's page only while no live request waits for room: webhooks always go first,
        // and the page uses an in-flight place and a budget (the list's) they leave unused.
        if !live_waits_for_room {
            if let Some(request) = self.sweep.next_request() {
                match self.enricher.send(&request, now) {
                    Go::Send(fetch) => {
                        self.sweep.asked(request);
                        fetches.push(fetch);
                    }
                    Go::Later(at) => next = Some(next.map_or(at, |n: Instant| n.min(at))),
                    Go::Full => {}
                }
            }
        }
        next
    }

    async fn apply(&mut self, request: &Request, outcome: Outcome) {
        if request.endpoint == Endpoint::CustomerList {
            self.sweep.receive(request, outcome);
            return;
        }
        match outcome {
            Outcome::Answer(result) => {
                // Not saved: answers are personal data and stay in memory (see QueuedEvent).
                let ready = self.window.answered(request, result);
                if ready > 1 {
                    tracing::debug!(%request, events = ready, "one Open API answer shared by queued events");
                }
            }
            Outcome::Again => {
                self.window.unanswered(request, |_| None);
            }
            Outcome::Failed { failure, attempt } => {
                let deliverer = Rc::clone(&self.deliverer);
                let (still_needed, dead) = self.window.unanswered(request, |entry| {
                    let decided =
                        deliverer.record_failure(&mut entry.event, "enrichment", &failure, attempt);
                    if decided.is_ok() {
                        deliverer.save(entry);
                    }
                    decided.err()
                });
                if !still_needed {
                    self.enricher.forget_failures(request);
                }
                for (entry, why) in dead {
                    self.deliverer.bury(entry, why).await;
                }
            }
        }
    }
}

async fn run_to_end<T>(delivery: &mut Option<LocalBoxFuture<'static, T>>) -> T {
    match delivery {
        Some(delivery) => delivery.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => actix_rt::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
