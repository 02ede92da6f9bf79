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
/// so a request that never gets an answer still shows up. A simulator that nothing asks about
/// records nothing: the log would grow with every request.
#[derive(Debug)]
pub(crate) struct RequestLog {
    record: bool,
    entries: Mutex<Vec<RecordedRequest>>,
}

/// Where an arrived request sits in the log, to fill in its status later.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(Option<usize>);

impl RequestLog {
    pub(crate) fn new(record: bool) -> RequestLog {
        RequestLog {
            record,
            entries: Mutex::default(),
        }
    }

    pub(crate) fn arrive(&self, request: RecordedRequest) -> Ticket {
        if !self.record {
            return Ticket(None);
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.push(request);
        Ticket(Some(entries.len() - 1))
    }

    pub(crate) fn complete(&self, ticket: Ticket, status: u16) {
        let Some(at) = ticket.0 else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(at) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> RecordedRequest {
        RecordedRequest {
            studio: "berlin".into(),
            method: "GET".into(),
            path: path.into(),
            endpoint: path.into(),
            key_ok: true,
            status: 0,
            at: Instant::now(),
        }
    }

    #[test]
    fn records_and_completes_in_arrival_order_unless_told_not_to() {
        let log = RequestLog::new(true);
        let tickets: Vec<Ticket> = ["/a", "/b"]
            .into_iter()
            .map(|p| log.arrive(request(p)))
            .collect();
        log.complete(tickets[1], 200);
        let kept: Vec<(String, u16)> = log
            .snapshot()
            .into_iter()
            .map(|r| (r.path, r.status))
            .collect();
        assert_eq!(kept, [("/a".to_string(), 0), ("/b".to_string(), 200)]);

        let silent = RequestLog::new(false);
        let ticket = silent.arrive(request("/a"));
        silent.complete(ticket, 200);
        assert!(silent.snapshot().is_empty());
    }
}
