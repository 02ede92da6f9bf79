//! Hands enriched events to the studio's sinks, in order, one path for one event or many: each
//! sink takes the run in one go where it can (one write and one sync for a file), a failure is
//! retried, held or dead-lettered by the one policy, and an event leaves the inbox only once
//! every sink has it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;

use super::report::Report;
use super::window::Dead;
use crate::event::{now_millis, DeadLetter, EnrichedEvent, QueuedEvent};
use crate::failure::{self, Failure, Next};
use crate::sink::{Outgoing, Sink};
use crate::store::{InboxEntry, Store};

/// How long to wait before trying the store again after it failed.
pub const STORE_RETRY: Duration = Duration::from_secs(1);

pub struct Deliverer {
    sinks: Vec<(String, Sink)>,
    store: Store,
    report: Rc<Report>,
    dead_letter_after: Duration,
}

impl Deliverer {
    pub fn new(
        sinks: Vec<(String, Sink)>,
        store: Store,
        report: Rc<Report>,
        dead_letter_after: Duration,
    ) -> Deliverer {
        Deliverer {
            sinks,
            store,
            report,
            dead_letter_after,
        }
    }

    /// Delivers consecutive enriched events to every sink that does not have them yet; returns
    /// once each is delivered (and removed from the inbox) or buried, with those delivered.
    pub async fn deliver(self: Rc<Self>, mut entries: Vec<InboxEntry>) -> Vec<InboxEntry> {
        let mut dead: Vec<Option<Dead>> = vec![None; entries.len()];
        let bodies: Vec<Bytes> = entries
            .iter()
            .zip(&mut dead)
            .map(|(entry, dead)| {
                let result = entry.event.enriched.as_ref();
                let enriched = result.map(|r| entry.event.to_enriched(self.studio(), r));
                match enriched.map(|e| serde_json::to_vec(&e)) {
                    Some(Ok(body)) => Bytes::from(body),
                    Some(Err(e)) => {
                        *dead = Some(dead_at("encoding", e.to_string()));
                        Bytes::new()
                    }
                    None => {
                        *dead = Some(dead_at("enrichment", "not enriched".into()));
                        Bytes::new()
                    }
                }
            })
            .collect();
        for (key, sink) in &self.sinks {
            self.deliver_to(key, sink, &mut entries, &bodies, &mut dead)
                .await;
            // Recorded while another sink can still interrupt the run, so a restart does not
            // send these to this sink again.
            if self.sinks.len() > 1 {
                for entry in &entries {
                    self.save(entry);
                }
            }
        }
        let mut delivered = Vec::with_capacity(entries.len());
        for (entry, dead) in entries.into_iter().zip(dead) {
            match dead {
                Some(dead) => self.bury(entry, dead).await,
                None => {
                    let status = entry.event.enriched.as_ref().map(|r| r.enrichment.status);
                    tracing::debug!(id = %entry.event.id, r#type = %entry.event.event_type, ?status, "delivered");
                    self.report.delivered(&entry.event, status);
                    self.finish(&entry).await;
                    delivered.push(entry);
                }
            }
        }
        delivered
    }

    /// Hands events that are not in the inbox (a reconcile sweep's) to every sink, retrying
    /// what fails as live events are retried, up to `delivery.dead_letter_after`. What a sink
    /// refuses for good, or still fails after that, is left out for that sink and logged: a
    /// sweep's event cannot be replayed from a dead letter, and the sweep must not stop live
    /// delivery for longer than a live event would. Returns the customers of the events some
    /// sink did not take, for the sweep to report again next time.
    pub async fn hand_over(self: Rc<Self>, events: &[EnrichedEvent]) -> Vec<i64> {
        let bodies: Vec<Bytes> = events
            .iter()
            .map(|e| Bytes::from(serde_json::to_vec(e).unwrap_or_default()))
            .collect();
        let mut left_out = vec![false; events.len()];
        for (key, sink) in &self.sinks {
            let mut next = 0;
            let mut attempt = 0;
            let mut failing_since = None;
            while next < events.len() {
                let batch: Vec<Outgoing> = events[next..]
                    .iter()
                    .zip(&bodies[next..])
                    .map(|(event, body)| Outgoing {
                        id: &event.id,
                        event_type: &event.event_type,
                        entity_id: event.entity_id,
                        body,
                    })
                    .collect();
                let (taken, failure) = match sink.deliver_all(&batch).await {
                    Ok(()) => (batch.len(), None),
                    Err((taken, failure)) => (taken, Some(failure)),
                };
                drop(batch);
                self.report.sink_delivered(key, taken);
                next += taken;
                let Some(failure) = failure else {
                    break;
                };
                if taken > 0 {
                    attempt = 1;
                    failing_since = Some(Instant::now());
                } else {
                    attempt += 1;
                }
                let failing_for = failing_since.get_or_insert_with(Instant::now).elapsed();
                self.report.sink_failed(key, &failure);
                match failure::next(&failure, attempt, failing_for, self.dead_letter_after) {
                    Next::DeadLetter if matches!(failure, Failure::Permanent { .. }) => {
                        tracing::error!(id = %events[next].id, sink = %key, error = %failure, "a sink refused a reconciled event; it is left out for that sink and reported again by the next sweep");
                        left_out[next] = true;
                        next += 1;
                        attempt = 0;
                        failing_since = None;
                    }
                    Next::DeadLetter => {
                        let rest = events.len() - next;
                        tracing::error!(sink = %key, error = %failure, events = rest, "a sink kept failing reconciled events for longer than delivery.dead_letter_after; they are left out for that sink and reported again by the next sweep");
                        left_out[next..].iter_mut().for_each(|l| *l = true);
                        break;
                    }
                    Next::RetryAfter(delay) | Next::Hold(delay) => {
                        tracing::warn!(id = %events[next].id, sink = %key, attempt, error = %failure, retry_in = ?delay, "sink delivery failed");
                        actix_rt::time::sleep(delay).await;
                    }
                }
            }
        }
        events
            .iter()
            .zip(left_out)
            .filter_map(|(event, out)| out.then_some(event.entity_id).flatten())
            .collect()
    }

    async fn deliver_to(
        &self,
        key: &str,
        sink: &Sink,
        entries: &mut [InboxEntry],
        bodies: &[Bytes],
        dead: &mut [Option<Dead>],
    ) {
        let mut attempt = 0;
        loop {
            let todo: Vec<usize> = (0..entries.len())
                .filter(|&i| {
                    dead[i].is_none() && !entries[i].event.delivered_to.iter().any(|k| k == key)
                })
                .collect();
            if todo.is_empty() {
                return;
            }
            let batch: Vec<Outgoing> = todo
                .iter()
                .map(|&i| Outgoing {
                    id: &entries[i].event.id,
                    event_type: &entries[i].event.event_type,
                    entity_id: entries[i].event.entity_id,
                    body: &bodies[i],
                })
                .collect();
            let (taken, failure) = match sink.deliver_all(&batch).await {
                Ok(()) => (todo.len(), None),
                Err((taken, failure)) => (taken, Some(failure)),
            };
            drop(batch);
            for &i in &todo[..taken] {
                entries[i].event.delivered_to.push(key.to_string());
                entries[i].event.failing_since_ms = None;
            }
            self.report.sink_delivered(key, taken);
            let Some(failure) = failure else {
                return;
            };
            attempt = if taken > 0 { 1 } else { attempt + 1 };
            let failed = todo[taken];
            self.report.sink_failed(key, &failure);
            let event = &mut entries[failed].event;
            match self.record_failure(event, &format!("sink:{key}"), &failure, attempt) {
                Err(why) => dead[failed] = Some(why),
                Ok(delay) => {
                    tracing::warn!(id = %event.id, sink = %key, attempt, error = %failure, retry_in = ?delay, "sink delivery failed");
                    for &i in &todo[..=taken] {
                        self.save(&entries[i]);
                    }
                    actix_rt::time::sleep(delay).await;
                }
            }
        }
    }

    /// Records a failure of `stage` on the event, and decides by the one policy: how long to
    /// wait before trying again, or why it is given up on.
    pub fn record_failure(
        &self,
        event: &mut QueuedEvent,
        stage: &str,
        failure: &Failure,
        attempt: u32,
    ) -> Result<Duration, Dead> {
        let failing_for = event.record_failure(stage, &failure.to_string(), now_millis());
        match failure::next(failure, attempt, failing_for, self.dead_letter_after) {
            Next::DeadLetter => Err(dead_at(stage, failure.burial_reason())),
            Next::RetryAfter(delay) | Next::Hold(delay) => Ok(delay),
        }
    }

    fn studio(&self) -> &str {
        self.report.studio().as_str()
    }

    /// Moves an event to the dead letters (replayable), whatever sinks already have it.
    pub async fn bury(&self, entry: InboxEntry, dead: Dead) {
        tracing::error!(id = %entry.event.id, stage = %dead.stage, reason = %dead.reason, "moved to the dead letters");
        self.report.delivered(&entry.event, None);
        let letter = DeadLetter {
            event: entry.event.clone(),
            stage: dead.stage,
            reason: dead.reason,
            dead_at_ms: now_millis(),
        };
        while let Err(e) = self.store.bury(&entry, &letter) {
            tracing::error!(error = %e, "cannot move an event to the dead letters");
            actix_rt::time::sleep(STORE_RETRY).await;
        }
    }

    /// Records progress (sinks that have the event, failed attempts). Losing it in
    /// a crash or to a store error only repeats work: sinks deduplicate by event id.
    pub fn save(&self, entry: &InboxEntry) {
        if let Err(e) = self.store.save(entry) {
            tracing::warn!(error = %e, "cannot record progress");
        }
    }

    async fn finish(&self, entry: &InboxEntry) {
        while let Err(e) = self.store.finish(entry) {
            tracing::error!(error = %e, "cannot remove a delivered event");
            actix_rt::time::sleep(STORE_RETRY).await;
        }
    }
}

fn dead_at(stage: &str, reason: String) -> Dead {
    Dead {
        stage: stage.to_string(),
        reason,
    }
}
