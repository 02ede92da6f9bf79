//! The simulator's memory of what it was asked, so tests can assert how the relay behaved
//! (which endpoint, how often, with which key, how fast) rather than only what it produced.

use std::collections::VecDeque;
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

/// The latest requests in arrival order (all of them unless capped). Entries are recorded on
/// arrival and completed with their status, so a request that never gets an answer still shows
/// up. A long-running simulator caps it, or it would grow with every request.
#[derive(Debug)]
pub(crate) struct RequestLog {
    keep: Option<usize>,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    kept: VecDeque<RecordedRequest>,
    /// How many were let go from the front, so tickets stay valid as numbers of arrival.
    dropped: usize,
}

/// Where an arrived request sits in the log (its number of arrival), to fill in its status.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(usize);

impl RequestLog {
    /// Keeps the latest `keep` requests; `None` keeps every one.
    pub(crate) fn new(keep: Option<usize>) -> RequestLog {
        RequestLog {
            keep,
            entries: Mutex::default(),
        }
    }

    pub(crate) fn arrive(&self, request: RecordedRequest) -> Ticket {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = Ticket(entries.dropped + entries.kept.len());
        entries.kept.push_back(request);
        if self.keep.is_some_and(|keep| entries.kept.len() > keep) {
            entries.kept.pop_front();
            entries.dropped += 1;
        }
        ticket
    }

    pub(crate) fn complete(&self, ticket: Ticket, status: u16) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = ticket.0.checked_sub(entries.dropped) else {
            return;
        };
        if let Some(entry) = entries.kept.get_mut(at) {
            entry.status = status;
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.kept.iter().cloned().collect()
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
    fn a_capped_log_keeps_the_latest_and_completes_them_by_arrival() {
        let log = RequestLog::new(Some(2));
        let tickets: Vec<Ticket> = ["/a", "/b", "/c"]
            .into_iter()
            .map(|p| log.arrive(request(p)))
            .collect();
        log.complete(tickets[0], 500);
        log.complete(tickets[2], 200);
        let kept: Vec<(String, u16)> = log
            .snapshot()
            .into_iter()
            .map(|r| (r.path, r.status))
            .collect();
        assert_eq!(kept, [("/b".to_string(), 0), ("/c".to_string(), 200)]);
    }
}
