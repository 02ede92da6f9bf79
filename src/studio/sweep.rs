//! The studio's reconcile sweep, as a stage of its worker: it asks for the next page of the
//! customer list only while no live event waits, compares the page with the last sweep when its
//! turn to deliver comes, and moves the stored position only once the sinks have the page's
//! events. Live events keep their order and their budget: the list is an endpoint of its own in
//! the vendor's count, and the worker sends a page request only when its window is empty.
//!
//! A live delivery of a customer after a page was asked is fresher than the page: the sweep
//! neither emits nor records that customer from the page, so the sinks never see a customer go
//! back in time.

use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use super::enrich::Outcome;
use super::report::Report;
use crate::entity_selection::EntitySelection;
use crate::event::{now_millis, EnrichedEvent, EnrichmentStatus};
use crate::failure::Failure;
use crate::reconcile::{self, ChangeKind, CustomerPage, Progress, Sweep, SweepRecord, Trigger};
use crate::route::{Endpoint, Request, Route};
use crate::store::{FingerprintUpdate, InboxEntry, Store};
use crate::tenant::{ReconcileSettings, StudioId};

/// Most reconciled events handed to the sinks in one turn.
const MAX_CHUNK: usize = 16;

/// About how long one turn of reconciled events may hold the sinks: a live run that becomes
/// ready meanwhile waits for at most this long (a fast sink takes [`MAX_CHUNK`] events in less).
const TURN: Duration = Duration::from_millis(5);

/// A page compared and on its way to the sinks; recorded once they have all its events.
struct PagePlan {
    /// Customer, change and event, in id order.
    events: VecDeque<(i64, ChangeKind, EnrichedEvent)>,
    updates: Vec<FingerprintUpdate>,
    record: SweepRecord,
    /// Customers whose event a sink did not take: not recorded, so the next sweep reports
    /// them again.
    refused: HashSet<i64>,
    /// Events handed to the sinks so far (those left to live events are not).
    emitted: u64,
}

pub struct SweepStage {
    studio: StudioId,
    store: Store,
    settings: ReconcileSettings,
    selection: EntitySelection,
    report: Rc<Report>,
    record: SweepRecord,
    /// The page request in flight.
    asked: Option<Request>,
    /// A page answer waiting for its turn to be delivered.
    answered: Option<(Request, Value, i64)>,
    /// A compared page on its way to the sinks: the next is asked once it is recorded.
    plan: Option<PagePlan>,
    /// Customers delivered live since the page in flight or waiting was asked.
    touched: HashSet<i64>,
    /// How long the sinks took per reconciled event, lately: sizes the next turn.
    per_event: Duration,
}

impl SweepStage {
    pub fn new(
        studio: StudioId,
        store: Store,
        settings: ReconcileSettings,
        selection: EntitySelection,
        report: Rc<Report>,
    ) -> SweepStage {
        let mut stage = SweepStage {
            studio,
            store,
            settings,
            selection,
            report,
            record: SweepRecord::default(),
            asked: None,
            answered: None,
            plan: None,
            touched: HashSet::new(),
            per_event: Duration::ZERO,
        };
        stage.reload();
        stage
    }

    /// Reads the record again: a sweep may have been started from outside.
    pub fn reload(&mut self) {
        match self.store.reconcile().record(&self.studio) {
            Ok(record) => self.record = record,
            Err(e) => tracing::error!(error = %e, "cannot read the reconcile record"),
        }
        if self.record.running.is_none() {
            self.asked = None;
            self.answered = None;
        }
        self.start_due(now_millis());
        self.report.reconcile(&self.record);
    }

    /// Starts what the tenant's `[reconcile]` asks for by now: a baseline when there is none, a
    /// scheduled sweep when `every` has passed since the last one ended. Returns when the next
    /// scheduled one is due (milliseconds since the epoch).
    pub fn start_due(&mut self, now_ms: i64) -> Option<i64> {
        if self.record.running.is_some() || !self.settings.is_on() {
            return None;
        }
        // `every` counts from the last sweep's end, or from a failure after it: a sweep that
        // keeps failing is tried again once per `every`, not in a loop.
        let due = match (&self.record.last, self.settings.every) {
            (None, _) => Some(now_ms),
            (Some(last), Some(every)) => {
                let since = last
                    .finished_ms
                    .max(self.record.failed_ms.unwrap_or(i64::MIN));
                Some(since.saturating_add(every.as_millis() as i64))
            }
            (Some(_), None) => None,
        }?;
        if due > now_ms {
            return Some(due);
        }
        let trigger = if self.record.has_baseline() {
            Trigger::Schedule
        } else {
            Trigger::Baseline
        };
        // A failed baseline is not retried in a loop: a person looks at it first.
        if trigger == Trigger::Baseline && self.record.failure.is_some() {
            return None;
        }
        match self.store.reconcile().start(&self.studio, |record| {
            Sweep::new(trigger, false, !record.has_baseline(), now_ms)
        }) {
            Ok((record, started)) => {
                if started {
                    tracing::info!(?trigger, "reconcile sweep started");
                }
                self.record = record;
                self.report.reconcile(&self.record);
            }
            Err(e) => tracing::error!(error = %e, "cannot start a reconcile sweep"),
        }
        None
    }

    /// The page to ask for now, if a sweep runs and no page is under way.
    pub fn next_request(&self) -> Option<Request> {
        let sweep = self.record.running.as_ref()?;
        let idle = self.asked.is_none() && self.answered.is_none() && self.plan.is_none();
        idle.then(|| sweep.next_request())
    }

    pub fn asked(&mut self, request: Request) {
        self.asked = Some(request);
        self.touched.clear();
        if let Some(sweep) = self.record.running.as_mut() {
            sweep.progress.requests += 1;
        }
    }

    /// Takes the page request's outcome.
    pub fn receive(&mut self, request: &Request, outcome: Outcome) {
        if self.asked.as_ref() != Some(request) {
            return;
        }
        self.asked = None;
        match outcome {
            Outcome::Answer(result) => match result.entity {
                Some(page) if result.enrichment.status == EnrichmentStatus::Fetched => {
                    self.answered = Some((request.clone(), page, now_millis()));
                    self.set_error(None);
                }
                _ => self.give_up("the Open API answered 404 to the customer list".into()),
            },
            // Held (429, a refused key): asked again when the hold ends.
            Outcome::Again => {}
            Outcome::Failed { failure, .. } => match failure {
                Failure::Permanent { .. } => self.give_up(failure.to_string()),
                // The enricher holds the request until its retry delay ends.
                failure => self.set_error(Some(failure.to_string())),
            },
        }
    }

    /// The next reconciled events for the sinks, when no live run is ready: from the page on
    /// its way, or from the waiting page, compared now. A customer delivered live since its
    /// page was asked, or with a live event in `waiting` (read from the inbox, not delivered
    /// yet), is left to the live event, at every turn: the sinks get that one after the
    /// page's, so the page's would be the one out of date whichever was fetched first.
    pub fn next_chunk<'a>(
        &mut self,
        waiting: impl Iterator<Item = &'a InboxEntry>,
    ) -> Option<Vec<EnrichedEvent>> {
        if self.plan.is_some() || self.answered.is_some() {
            self.touched.extend(waiting.filter_map(live_customer));
        }
        if self.plan.is_none() {
            self.plan = self.compare();
        }
        let touched = &self.touched;
        let plan = self.plan.as_mut()?;
        plan.events
            .retain(|(customer, _, _)| !touched.contains(customer));
        if plan.events.is_empty() {
            self.commit();
            return None;
        }
        let fits = TURN.as_nanos() / self.per_event.as_nanos().max(1);
        let take = plan.events.len().min(MAX_CHUNK).min(fits.max(1) as usize);
        let (kinds, events): (Vec<ChangeKind>, Vec<EnrichedEvent>) = plan
            .events
            .drain(..take)
            .map(|(_, kind, event)| (kind, event))
            .unzip();
        plan.emitted += take as u64;
        self.report.reconciled(&kinds);
        Some(events)
    }

    /// The sinks have the last chunk handed out, `events` of them in `took`.
    pub fn chunk_delivered(&mut self, events: usize, took: Duration, refused: Vec<i64>) {
        // A moving average: one slow answer must not shrink the sweep to an event a turn.
        let this = took / events.max(1) as u32;
        self.per_event = (self.per_event * 3 + this) / 4;
        let Some(plan) = self.plan.as_mut() else {
            return;
        };
        plan.refused.extend(refused);
        if plan.events.is_empty() {
            self.commit();
        }
    }

    /// Compares the waiting page with the last sweep.
    fn compare(&mut self) -> Option<PagePlan> {
        let (request, answer, seen_ms) = self.answered.take()?;
        let mut record = self.record.clone();
        let sweep = record.running.as_mut()?;
        let page = match CustomerPage::parse(answer, sweep.after) {
            Ok(page) => page,
            Err(e) => {
                self.give_up(e.to_string());
                return None;
            }
        };
        let range = page.range(sweep.after);
        let stored = match self.store.reconcile().fingerprints(&self.studio, range) {
            Ok(stored) => stored,
            Err(e) => {
                // Asked again: nothing was emitted or recorded for it.
                tracing::error!(error = %e, "cannot read the reconcile fingerprints");
                return None;
            }
        };
        let customers = page
            .customers
            .into_iter()
            .map(|(id, record)| (id, self.selection.apply(Endpoint::Customer, record)))
            .collect();
        let mut plan = PagePlan {
            events: VecDeque::new(),
            updates: Vec::new(),
            record: SweepRecord::default(),
            refused: HashSet::new(),
            emitted: 0,
        };
        for change in reconcile::compare(customers, &stored) {
            if self.touched.contains(&change.customer) {
                continue;
            }
            count(&mut sweep.progress, change.kind);
            let fingerprint = (change.kind != ChangeKind::Deleted).then_some(change.fingerprint);
            if change.kind != ChangeKind::Unchanged {
                plan.updates.push((change.customer, fingerprint));
            }
            if sweep.emits(change.kind) {
                let (customer, kind) = (change.customer, change.kind);
                let event = reconcile::event(
                    self.studio.as_str(),
                    sweep.started_ms,
                    change,
                    &request,
                    seen_ms,
                );
                plan.events.push_back((customer, kind, event));
            }
        }
        sweep.progress.pages += 1;
        sweep.last_error = None;
        match page.covers_up_to {
            Some(last) => sweep.after = Some(last),
            None => record.finish(now_millis()),
        }
        plan.record = record;
        Some(plan)
    }

    /// The sinks have the page's events: record its fingerprints and the sweep's new position.
    fn commit(&mut self) {
        let Some(mut plan) = self.plan.take() else {
            return;
        };
        if !plan.refused.is_empty() {
            tracing::warn!(
                customers = plan.refused.len(),
                "reconciled events a sink did not take; the next sweep reports them again"
            );
        }
        // What a live event delivered meanwhile is newer than the page.
        plan.updates.retain(|(customer, _)| {
            !self.touched.contains(customer) && !plan.refused.contains(customer)
        });
        if let Some(progress) = plan.record.progress_mut() {
            progress.emitted += plan.emitted;
        }
        let finished = plan.record.running.is_none();
        let saved = self.store.reconcile().commit_page(
            &self.studio,
            &plan.updates,
            &plan.record,
            now_millis(),
        );
        let record = match saved {
            Ok(record) => record,
            Err(e) => {
                // The page is asked again; its events go out again with the same ids.
                tracing::error!(error = %e, "cannot record a reconciled page");
                return;
            }
        };
        self.report.reconciled_page();
        if finished {
            if let Some(last) = &record.last {
                log_finished(&last.progress, last.baseline);
            }
            if let Some(next) = &record.running {
                tracing::info!(trigger = ?next.trigger, "reconcile sweep started, asked for while the last one ran");
            }
        }
        self.record = record;
        self.report.reconcile(&self.record);
    }

    /// Live events the sinks now have: their customers' fingerprints, so the next sweep does
    /// not report the same state again, and a page already asked does not overwrite them.
    pub fn observe(&mut self, delivered: &[InboxEntry]) {
        if self.record.running.is_none() && !self.record.has_baseline() {
            return;
        }
        let updates: Vec<FingerprintUpdate> = delivered.iter().filter_map(live_update).collect();
        if updates.is_empty() {
            return;
        }
        if self.asked.is_some() || self.answered.is_some() || self.plan.is_some() {
            self.touched.extend(updates.iter().map(|(id, _)| *id));
        }
        if let Err(e) = self
            .store
            .reconcile()
            .note_delivered(&self.studio, &updates)
        {
            tracing::warn!(error = %e, "cannot record delivered customers for reconcile");
        }
    }

    /// Notes why the page request is being retried, or that it no longer is. Saved, not only
    /// shown: `GET /api/studios/{id}/reconcile` and the command line read the stored record.
    fn set_error(&mut self, error: Option<String>) {
        let Some(sweep) = self.record.running.as_mut() else {
            return;
        };
        if sweep.last_error == error {
            return;
        }
        sweep.last_error = error;
        match self
            .store
            .reconcile()
            .save_record(&self.studio, &self.record, now_millis())
        {
            Ok(record) => self.record = record,
            Err(e) => tracing::warn!(error = %e, "cannot record why a reconcile page is retried"),
        }
        self.report.reconcile(&self.record);
    }

    fn give_up(&mut self, reason: String) {
        tracing::error!(%reason, "reconcile sweep given up");
        let now_ms = now_millis();
        self.record.fail(reason, now_ms);
        self.answered = None;
        match self
            .store
            .reconcile()
            .save_record(&self.studio, &self.record, now_ms)
        {
            Ok(record) => self.record = record,
            Err(e) => tracing::error!(error = %e, "cannot record a failed reconcile sweep"),
        }
        self.report.reconcile(&self.record);
    }
}

fn count(progress: &mut Progress, kind: ChangeKind) {
    match kind {
        ChangeKind::Added => progress.added += 1,
        ChangeKind::Changed => progress.changed += 1,
        ChangeKind::Deleted => progress.deleted += 1,
        ChangeKind::Unchanged => {}
    }
    if kind != ChangeKind::Deleted {
        progress.customers += 1;
    }
}

fn log_finished(progress: &Progress, baseline: bool) {
    tracing::info!(
        pages = progress.pages,
        customers = progress.customers,
        added = progress.added,
        changed = progress.changed,
        deleted = progress.deleted,
        emitted = progress.emitted,
        requests = progress.requests,
        baseline,
        "reconcile sweep finished"
    );
}

/// The customer whose record a live event delivers (or says is gone), if any.
fn live_customer(entry: &InboxEntry) -> Option<i64> {
    let event = &entry.event;
    let customer = event.entity_id?;
    if event.event_type == "CUSTOMER_DELETED" {
        return Some(customer);
    }
    match event.route() {
        Route::Fetch(request) if request.endpoint == Endpoint::Customer => Some(customer),
        _ => None,
    }
}

/// What a delivered live event says about its customer's current record.
fn live_update(entry: &InboxEntry) -> Option<FingerprintUpdate> {
    let customer = live_customer(entry)?;
    let event = &entry.event;
    if event.event_type == "CUSTOMER_DELETED" {
        return Some((customer, None));
    }
    let result = event.enriched.as_ref()?;
    match (result.enrichment.status, &result.entity) {
        (EnrichmentStatus::Fetched, Some(entity)) => {
            Some((customer, Some(reconcile::Fingerprint::of(entity))))
        }
        (EnrichmentStatus::NotFound, _) => Some((customer, None)),
        _ => None,
    }
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
mod tests;
