//! The fetch-ahead window: the studio's next inbox entries, in arrival order, each with where
//! it stands. Requests for entries further back may be in flight while the head waits, but
//! entries leave only from the head, so sinks see the inbox's order (like TCP's window).
//!
//! The rules that keep an entity's snapshots from going back in time live here:
//! - at most one request per distinct request (endpoint and entity) in flight;
//! - an entry shares a request's answer only if it arrived before the request was sent (the
//!   answer is then at least as new as its change); otherwise it waits and asks anew.
//!
//! Pure bookkeeping, no I/O: the worker feeds it entries and answers.

use std::collections::{HashMap, VecDeque};

use crate::event::{Enrichment, EnrichmentResult, EnrichmentStatus};
use crate::route::{Request, Route};
use crate::store::InboxEntry;

/// Answers kept for entries not read yet that may share them. Losing one only costs a fetch.
const RECENT_ANSWERS: usize = 64;

/// Why an entry is given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    pub stage: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Needs this request, not asked yet (or asked and failed, to be asked again).
    Needs(Request),
    /// Waits for the answer to this request, which is in flight.
    Asked(Request),
    /// `entry.event.enriched` is set: ready for the sinks.
    Ready,
}

struct Slot {
    entry: InboxEntry,
    state: State,
}

impl Slot {
    fn is_waiting_for(&self, request: &Request) -> bool {
        matches!(&self.state, State::Asked(r) if r == request)
    }
}

/// An answer and when (in arrival order) its request was sent.
struct Answered {
    asked_at: u64,
    result: EnrichmentResult,
}

pub struct Window {
    slots: VecDeque<Slot>,
    capacity: usize,
    /// The sequence of the last entry read; the next read starts after it.
    read_up_to: Option<u64>,
    /// Requests in flight, with when they were sent.
    in_flight: HashMap<Request, u64>,
    recent: HashMap<Request, Answered>,
}

impl Window {
    pub fn new(capacity: usize) -> Window {
        Window {
            slots: VecDeque::new(),
            capacity: capacity.max(1),
            read_up_to: None,
            in_flight: HashMap::new(),
            recent: HashMap::new(),
        }
    }

    /// How many more entries it takes.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.slots.len())
    }

    /// Where reading the inbox continues.
    pub fn read_up_to(&self) -> Option<u64> {
        self.read_up_to
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forgets every entry and reads the inbox again from its head (replayed entries went back
    /// behind what was read). Requests in flight stay known, so entries read again that
    /// arrived before one was sent still share its answer, and none is asked twice at once.
    pub fn rewind(&mut self) {
        self.slots.clear();
        self.read_up_to = None;
        self.recent.clear();
    }

    /// Takes the next entry of the inbox (entries must come in arrival order). Says whether it
    /// took a recent answer to a request sent after it arrived.
    pub fn admit(&mut self, mut entry: InboxEntry) -> bool {
        let seq = entry.sequence();
        self.read_up_to = Some(seq);
        // An answer to a request sent before this point can serve no entry read from now on.
        self.recent.retain(|_, answered| answered.asked_at > seq);
        let mut shared = false;
        // Answers are never stored, so an entry read from the inbox has none yet.
        let state = match entry.event.route() {
            Route::Skip(skip) => {
                entry.event.enriched = Some(EnrichmentResult {
                    enrichment: Enrichment {
                        status: EnrichmentStatus::Skipped,
                        request: None,
                        reason: Some(skip.reason().to_string()),
                    },
                    entity: None,
                });
                State::Ready
            }
            Route::Fetch(request) => {
                if self.in_flight.get(&request).is_some_and(|at| *at > seq) {
                    State::Asked(request)
                } else if let Some(answered) =
                    self.recent.get(&request).filter(|a| a.asked_at > seq)
                {
                    entry.event.enriched = Some(answered.result.clone());
                    shared = true;
                    State::Ready
                } else {
                    State::Needs(request)
                }
            }
        };
        self.slots.push_back(Slot { entry, state });
        shared
    }

    /// Requests to send, oldest entry first, each once; none that is already in flight.
    pub fn to_ask(&self) -> Vec<Request> {
        let mut wanted: Vec<Request> = Vec::new();
        for slot in &self.slots {
            if let State::Needs(request) = &slot.state {
                if !self.in_flight.contains_key(request) && !wanted.contains(request) {
                    wanted.push(request.clone());
                }
            }
        }
        wanted
    }

    /// `request` was sent at `asked_at`: every entry waiting for it shares its answer, since
    /// all of them arrived before it was sent.
    pub fn asked(&mut self, request: &Request, asked_at: u64) {
        self.in_flight.insert(request.clone(), asked_at);
        for slot in &mut self.slots {
            if matches!(&slot.state, State::Needs(r) if r == request) {
                slot.state = State::Asked(request.clone());
            }
        }
    }

    /// The answer to `request`: its entries are ready. Returns how many there are.
    pub fn answered(&mut self, request: &Request, result: EnrichmentResult) -> usize {
        let asked_at = self.in_flight.remove(request).unwrap_or(0);
        let mut ready = 0;
        for slot in &mut self.slots {
            if slot.is_waiting_for(request) {
                slot.entry.event.enriched = Some(result.clone());
                slot.state = State::Ready;
                ready += 1;
            }
        }
        if self.read_up_to.is_none_or(|read| asked_at > read) {
            if self.recent.len() >= RECENT_ANSWERS {
                let oldest = self
                    .recent
                    .iter()
                    .min_by_key(|(_, a)| a.asked_at)
                    .map(|(r, _)| r.clone());
                if let Some(oldest) = oldest {
                    self.recent.remove(&oldest);
                }
            }
            self.recent
                .insert(request.clone(), Answered { asked_at, result });
        }
        ready
    }

    /// `request` got no answer. `decide` says, for each entry that waited for it, whether it
    /// is given up on; the others need it again. Returns whether any still does, and the
    /// entries given up on, taken out of the window: moving them to the dead letters delivers
    /// nothing, so it need not wait for their turn.
    pub fn unanswered(
        &mut self,
        request: &Request,
        mut decide: impl FnMut(&mut InboxEntry) -> Option<Dead>,
    ) -> (bool, Vec<(InboxEntry, Dead)>) {
        self.in_flight.remove(request);
        let mut still_needed = false;
        let mut dead = Vec::new();
        let mut kept = VecDeque::with_capacity(self.slots.len());
        for mut slot in self.slots.drain(..) {
            if slot.is_waiting_for(request) {
                match decide(&mut slot.entry) {
                    Some(why) => {
                        dead.push((slot.entry, why));
                        continue;
                    }
                    None => {
                        still_needed = true;
                        slot.state = State::Needs(request.clone());
                    }
                }
            }
            kept.push_back(slot);
        }
        self.slots = kept;
        (still_needed, dead)
    }

    /// The entries not delivered yet, in order.
    pub fn entries(&self) -> impl Iterator<Item = &InboxEntry> {
        self.slots.iter().map(|slot| &slot.entry)
    }

    /// The ready entries at the head, at most `max`, in order.
    pub fn pop_ready(&mut self, max: usize) -> Vec<InboxEntry> {
        let mut run = Vec::new();
        while run.len() < max && self.slots.front().is_some_and(|s| s.state == State::Ready) {
            if let Some(slot) = self.slots.pop_front() {
                run.push(slot.entry);
            }
        }
        run
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
