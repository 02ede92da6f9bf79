//! Catching up on what the vendor never delivered: a sweep pages through a studio's customers in
//! the Open API, compares each record's fingerprint with the last sweep's, and hands every
//! customer that was added, changed or deleted since to the studio's sinks as a
//! `CUSTOMER_RECONCILED` event. The pure parts live here; the studio's worker runs the sweep
//! (`studio::sweep`) and the store keeps its fingerprints and position (`store::reconcile`).

pub mod fingerprint;
pub mod page;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{format_millis, EnrichedEvent, Enrichment, EnrichmentStatus};
use crate::route::{Endpoint, Request};
pub use fingerprint::Fingerprint;
pub use page::{compare, Change, ChangeKind, CustomerPage, PageError};

/// The type of every event a sweep emits.
pub const EVENT_TYPE: &str = "CUSTOMER_RECONCILED";

/// Customers asked for per page: the most the vendor answers, so a 20,000-member studio costs
/// 200 requests.
pub const PAGE_SIZE: usize = 100;

/// Why a sweep was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `gymrelay reconcile` or the API.
    Manual,
    /// Webhooks could not reach the relay for longer than `[reconcile] after_downtime`.
    Downtime,
    /// `[reconcile] every`.
    Schedule,
    /// The tenant turned reconcile on and no sweep has recorded a baseline yet.
    Baseline,
}

/// What a sweep has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub pages: u64,
    pub customers: u64,
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    /// Events handed to the sinks (every customer with `--emit-all`).
    pub emitted: u64,
    /// Open API requests made, retries included: the budget the sweep used.
    pub requests: u64,
}

/// A sweep under way, as stored after each page, so a restart resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub trigger: Trigger,
    /// Emit every customer, changed or not.
    pub emit_all: bool,
    /// No earlier sweep to compare with: record fingerprints, emit nothing (unless `emit_all`).
    pub baseline: bool,
    /// The last id covered by the pages done; None before the first.
    pub after: Option<i64>,
    pub started_ms: i64,
    pub progress: Progress,
    /// Why the last request failed, while the sweep retries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Sweep {
    pub fn new(trigger: Trigger, emit_all: bool, baseline: bool, now_ms: i64) -> Sweep {
        Sweep {
            trigger,
            emit_all,
            baseline,
            after: None,
            started_ms: now_ms,
            progress: Progress::default(),
            last_error: None,
        }
    }

    /// The request for the next page.
    pub fn next_request(&self) -> Request {
        let offset = self
            .after
            .map(|a| format!("&offset={a}"))
            .unwrap_or_default();
        Request {
            endpoint: Endpoint::CustomerList,
            path: format!("/v1/customers?sliceSize={PAGE_SIZE}{offset}"),
        }
    }

    /// Whether this change is handed to the sinks.
    pub fn emits(&self, kind: ChangeKind) -> bool {
        self.emit_all || (!self.baseline && kind != ChangeKind::Unchanged)
    }
}

/// A sweep that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub trigger: Trigger,
    pub emit_all: bool,
    pub baseline: bool,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub progress: Progress,
}

/// A studio's reconcile state as stored: the sweep under way, and the last one that ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub running: Option<Sweep>,
    pub last: Option<Finished>,
    /// Why the last sweep was given up on, if it was (cleared when one starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When it was given up on (milliseconds since the epoch): `every` counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_ms: Option<i64>,
    /// A sweep to start as soon as the one under way ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub again: Option<Trigger>,
}

impl SweepRecord {
    /// Whether fingerprints from a finished sweep exist to compare with.
    pub fn has_baseline(&self) -> bool {
        self.last.is_some()
    }

    /// Starts `sweep`: whatever failed before is history.
    pub fn begin(&mut self, sweep: Sweep) {
        self.running = Some(sweep);
        self.failure = None;
        self.failed_ms = None;
    }

    /// The progress of the sweep under way, or of the one that just ended.
    pub fn progress_mut(&mut self) -> Option<&mut Progress> {
        match (&mut self.running, &mut self.last) {
            (Some(sweep), _) => Some(&mut sweep.progress),
            (None, Some(last)) => Some(&mut last.progress),
            (None, None) => None,
        }
    }

    /// Gives up on the sweep under way; the last finished one stays the baseline.
    pub fn fail(&mut self, reason: String, now_ms: i64) {
        self.running = None;
        self.failure = Some(reason);
        self.failed_ms = Some(now_ms);
    }

    /// Ends the sweep under way.
    pub fn finish(&mut self, now_ms: i64) {
        if let Some(sweep) = self.running.take() {
            self.last = Some(Finished {
                trigger: sweep.trigger,
                emit_all: sweep.emit_all,
                baseline: sweep.baseline,
                started_ms: sweep.started_ms,
                finished_ms: now_ms,
                progress: sweep.progress,
            });
        }
    }
}

/// The event id of a customer's state as one sweep found it: a sweep resumed after a crash
/// repeats the ids of what it had already handed over, which sinks drop as duplicates, while
/// a later sweep's ids are new even for a state seen before (a member suspended, reinstated and
/// suspended again must reach a sink that drops ids it has seen).
pub fn event_id(studio: &str, sweep_started_ms: i64, change: &Change) -> String {
    let state: &[u8] = match change.kind {
        ChangeKind::Deleted => b"deleted",
        _ => b"present",
    };
    let mut digest = Sha256::new();
    for part in [
        EVENT_TYPE.as_bytes(),
        studio.as_bytes(),
        &sweep_started_ms.to_be_bytes(),
        change.customer.to_string().as_bytes(),
        state,
        &change.fingerprint.0,
    ] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let digest = digest.finalize();
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The event sinks receive for one change the sweep that started at `sweep_started_ms` saw at
/// `seen_ms` in the answer to `request`.
pub fn event(
    studio: &str,
    sweep_started_ms: i64,
    change: Change,
    request: &Request,
    seen_ms: i64,
) -> EnrichedEvent {
    let status = match change.kind {
        ChangeKind::Deleted => EnrichmentStatus::NotFound,
        _ => EnrichmentStatus::Fetched,
    };
    let mut content = serde_json::Map::new();
    content.insert("change".into(), change.kind.as_str().into());
    EnrichedEvent {
        id: event_id(studio, sweep_started_ms, &change),
        studio: studio.to_string(),
        event_type: EVENT_TYPE.to_string(),
        entity_id: Some(change.customer),
        occurred_at: format_millis(seen_ms),
        received_at: format_millis(seen_ms),
        content: Some(content),
        enrichment: Enrichment {
            status,
            request: Some(request.to_string()),
            reason: None,
        },
        entity: change.record,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn change(kind: ChangeKind, record: Value) -> Change {
        Change {
            customer: 7,
            kind,
            fingerprint: Fingerprint::of(&record),
            record: (kind != ChangeKind::Deleted).then_some(record),
        }
    }

    #[test]
    fn ids_follow_the_customers_state_and_the_sweep() {
        let a = change(ChangeKind::Changed, json!({"id": 7, "n": 1}));
        let same = change(ChangeKind::Added, json!({"id": 7, "n": 1}));
        let other = change(ChangeKind::Changed, json!({"id": 7, "n": 2}));
        let gone = change(ChangeKind::Deleted, json!({"id": 7, "n": 1}));
        let id = |studio, sweep, change| event_id(studio, sweep, change);
        assert_eq!(
            id("berlin", 1, &a),
            id("berlin", 1, &same),
            "a resumed sweep"
        );
        assert_ne!(id("berlin", 1, &a), id("berlin", 2, &a), "a later sweep");
        assert_ne!(id("berlin", 1, &a), id("berlin", 1, &other));
        assert_ne!(id("berlin", 1, &a), id("munich", 1, &a));
        assert_ne!(id("berlin", 1, &a), id("berlin", 1, &gone));
        assert!(uuid::Uuid::parse_str(&id("berlin", 1, &a)).is_ok());
    }

    #[test]
    fn events_carry_the_record_or_say_it_is_gone() {
        let request = Sweep::new(Trigger::Manual, false, false, 0).next_request();
        assert_eq!(request.to_string(), "GET /v1/customers?sliceSize=100");
        let found = event(
            "berlin",
            0,
            change(ChangeKind::Changed, json!({"id": 7})),
            &request,
            0,
        );
        assert_eq!(found.event_type, EVENT_TYPE);
        assert_eq!(found.enrichment.status, EnrichmentStatus::Fetched);
        assert_eq!(found.entity, Some(json!({"id": 7})));
        assert_eq!(found.content.as_ref().unwrap()["change"], "changed");
        let gone = event(
            "berlin",
            0,
            change(ChangeKind::Deleted, json!({"id": 7})),
            &request,
            0,
        );
        assert_eq!(gone.enrichment.status, EnrichmentStatus::NotFound);
        assert_eq!(gone.entity, None);
    }

    #[test]
    fn a_baseline_emits_nothing_unless_asked() {
        let mut sweep = Sweep::new(Trigger::Baseline, false, true, 0);
        assert!(!sweep.emits(ChangeKind::Added));
        sweep.emit_all = true;
        assert!(sweep.emits(ChangeKind::Unchanged));
        let later = Sweep::new(Trigger::Manual, false, false, 0);
        assert!(later.emits(ChangeKind::Deleted) && !later.emits(ChangeKind::Unchanged));
        let next = Sweep {
            after: Some(250),
            ..later
        };
        assert_eq!(
            next.next_request().path,
            "/v1/customers?sliceSize=100&offset=250"
        );
    }
}
