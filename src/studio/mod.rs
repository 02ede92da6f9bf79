//! One actor per studio. It owns the studio's Open API client, budget and sinks, and runs the
//! worker that drains the studio's inbox: Open API calls go out one by one through the
//! studio's budget, several may be outstanding, and events reach the sinks in arrival order.
//! An event leaves the inbox only once every sink has it; what keeps failing past
//! `dead_letter_after` is moved to the dead letters; nothing is dropped.
//!
//! The worker's stages, one module each: `drain` (the loop), `window` (order and sharing),
//! `enrich` (budget, holds, requests), `deliver` (sinks, retries, dead letters), `report`
//! (metrics, status, activity, the studio's log span).

mod deliver;
mod drain;
mod enrich;
mod report;
mod sweep;
#[cfg(test)]
mod test_entries;
mod window;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::activity::Activity;
use crate::event::now_millis;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::ratelimit::{Budget, BudgetSnapshot};
use crate::route::ENDPOINTS;
use crate::sink::{FileWrites, NatsConnections};
use crate::status::{StudioState, StudioStatus};
use crate::store::Store;
use crate::tenant::Tenant;
use drain::Worker;

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
    /// Rung after events are put in the studio's inbox (intake, replay).
    pub wake: Arc<InboxBell>,
    pub dead_letter_after: Duration,
    pub outbound: Outbound,
    pub file_writes: FileWrites,
    /// NATS connections, shared by every studio whose sinks name the same servers.
    pub nats: NatsConnections,
}

/// How the rest of the relay tells a studio's worker about its inbox. Each bell keeps one
/// permit, so a ring while the worker is busy costs an atomic operation and is not lost.
#[derive(Default)]
pub struct InboxBell {
    stored: Notify,
    replayed: Notify,
    reconcile: Notify,
}

impl InboxBell {
    /// New events at the end of the inbox.
    pub fn stored(&self) {
        self.stored.notify_one();
    }

    /// Dead letters put back at their old places, behind what the worker has already read.
    pub fn replayed(&self) {
        self.replayed.notify_one();
    }

    /// A reconcile sweep was started from outside the worker (API, CLI, a long downtime).
    pub fn reconcile(&self) {
        self.reconcile.notify_one();
    }
}

/// A new version of the studio's tenant file: the worker restarts with it. Cancelling the old
/// worker and starting the new one happen in one handler, so two never run at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Arc<Tenant>);

/// Start the worker afresh: what it holds in memory (answers fetched, a delivery under way,
/// requests in flight) is dropped, and the inbox is read again from its head. For an erasure,
/// so that nothing fetched before it is delivered after it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;

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
                .restore(&snapshot, &ENDPOINTS, Instant::now(), now_millis());
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
        match Worker::build(&self.tenant, &self.deps, &self.budget) {
            Ok((worker, span)) => {
                // The old worker is cancelled in the same handler, so two never run at once.
                self.stop_worker(ctx);
                let run = worker.run().instrument(span);
                self.worker = Some(ctx.spawn(actix::fut::wrap_future(run)));
                // Look at the inbox at once: the new worker has no memory of earlier wake-ups.
                self.deps.wake.stored();
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

impl Handler<Restart> for StudioActor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Self::Context) {
        // A paused studio has no worker; it starts afresh on resume anyway.
        if !self.paused {
            self.start_worker(ctx);
        }
    }
}

impl Handler<Pause> for StudioActor {
    type Result = ();

    fn handle(&mut self, _: Pause, ctx: &mut Self::Context) {
        // An Open API request or delivery in flight is abandoned; the event stays at the head
        // of the inbox and is taken up again on resume.
        self.paused = true;
        self.stop_worker(ctx);
        self.deps.status.set_state(StudioState::Paused);
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
