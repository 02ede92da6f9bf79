//! The simulator's memory of what it was asked, so tests can assert how the relay behaved
//! (which endpoint, how often, with which key, how fast) rather than only what it produced.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// One request as the simulator saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The first path segment, whether or not such a studio exists.
    pub studio: String,
    pub method: String,
    /// The path after the studio prefix, e.g. `/v1/customers/17`.
    pub path: String,
    /// The route template, e.g. `/v1/customers/{id}`; the raw path when no route matched.
    pub endpoint: String,
    /// Whether `x-api-key` matched the studio's Open API key.
    pub key_ok: bool,
    /// The status answered; 0 while unanswered (a hanging request, or one the client gave up on).
    pub status: u16,
    /// Arrival time.
    pub at: Instant,
}

/// Requests in arrival order. Entries are recorded on arrival and completed with their status,
/// so a request that never gets an answer still shows up.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<RecordedRequest>>,
}

/// Where an arrived request sits in the log, to fill in its status later.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(usize);

impl RequestLog {
    pub(crate) fn arrive(&self, request: RecordedRequest) -> Ticket {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.push(request);
        Ticket(entries.len() - 1)
    }

    pub(crate) fn complete(&self, ticket: Ticket, status: u16) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(ticket.0) {
            entry.status = status;
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
