//! The shapes an event takes: the vendor's notification as received, the queued event stored
//! in a studio's inbox, and the enriched event every sink receives.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::route::{route, Route};

/// The webhook body as PerfectGym Next sends it. Unknown fields are ignored on purpose: the
/// vendor adds fields without notice.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Required by the vendor's schema for every type that has an entity; absent or null for the
    /// few that have none (FINANCE_DEBT_COLLECTION_CONFIGURATION_UPDATED), which must not be refused.
    #[serde(default)]
    pub entity_id: Option<i64>,
    pub uuid: String,
    pub payload: Vec<PayloadElement>,
}

#[derive(Debug, Deserialize)]
pub struct PayloadElement {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub content: Option<Map<String, Value>>,
}

/// The longest uuid accepted; it becomes part of storage keys.
const MAX_UUID_LEN: usize = 128;
const MAX_TYPE_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidNotification(pub String);

impl Notification {
    /// Parses and validates a body; the error says what is wrong in words a sender can act on.
    pub fn parse(body: &[u8]) -> Result<Notification, InvalidNotification> {
        let n: Notification =
            serde_json::from_slice(body).map_err(|e| InvalidNotification(e.to_string()))?;
        if n.uuid.trim().is_empty() {
            return Err(InvalidNotification("uuid is empty".into()));
        }
        if n.uuid.len() > MAX_UUID_LEN || n.uuid.chars().any(char::is_control) {
            return Err(InvalidNotification(format!(
                "uuid must be at most {MAX_UUID_LEN} printable characters"
            )));
        }
        if n.payload.is_empty() {
            return Err(InvalidNotification("payload is empty".into()));
        }
        for (i, element) in n.payload.iter().enumerate() {
            if element.event_type.trim().is_empty()
                || element.event_type.len() > MAX_TYPE_LEN
                || element.event_type.chars().any(char::is_control)
            {
                return Err(InvalidNotification(format!(
                    "payload[{i}].type must be 1-{MAX_TYPE_LEN} printable characters"
                )));
            }
        }
        Ok(n)
    }

    /// One queued event per payload element. The id is the uuid, with `:<index>` appended
    /// when the payload has several elements, so each element keeps its own idempotency key.
    pub fn into_events(self, received_at_ms: i64) -> Vec<QueuedEvent> {
        let several = self.payload.len() > 1;
        let uuid = self.uuid;
        let entity_id = self.entity_id;
        self.payload
            .into_iter()
            .enumerate()
            .map(|(i, element)| QueuedEvent {
                id: if several {
                    format!("{uuid}:{i}")
                } else {
                    uuid.clone()
                },
                event_type: element.event_type,
                entity_id,
                occurred_at_ms: element.timestamp,
                received_at_ms,
                content: element.content,
                enriched: None,
                delivered_to: Vec::new(),
                attempts: Vec::new(),
                failing_since_ms: None,
                decided_route: None,
            })
            .map(|mut event| {
                event.decided_route = Some(event.route());
                event
            })
            .collect()
    }
}

/// An event waiting in a studio's inbox. Delivery progress is recorded in it so that a restart
/// does not deliver again to a sink that already has it; the Open API answer is not (see
/// `enriched`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueuedEvent {
    pub id: String,
    pub event_type: String,
    pub entity_id: Option<i64>,
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    // Empty fields are left out of the stored value: every byte of it is written on intake, and
    // a fresh event has none of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Map<String, Value>>,
    /// The Open API request this event needs, decided at intake. None only in entries written
    /// by versions before it was stored: [`QueuedEvent::route`] decides it for them on read.
    #[serde(default, rename = "route", skip_serializing_if = "Option::is_none")]
    pub decided_route: Option<Route>,
    /// Set once the Open API answered (or no request was needed). Held in memory only, never
    /// stored: the answer is a member's personal data, and the store is a log whose old
    /// segments keep what was overwritten. After a restart or a replay the entity is fetched
    /// again. Entries stored by earlier versions with an answer have it ignored on read.
    #[serde(skip)]
    pub enriched: Option<EnrichmentResult>,
    /// Keys of the sinks that have this event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
    /// Failed attempts, newest last, at most [`MAX_ATTEMPTS`] kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// When the stage now being retried first failed; dead-lettering is measured from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<i64>,
}

/// How many failed attempts an event remembers (for dead letters and the admin API).
pub const MAX_ATTEMPTS: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub at_ms: i64,
    /// `enrichment` or `sink:<key>`.
    pub stage: String,
    pub error: String,
}

/// An event given up on, with why; it can be replayed into its studio's inbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub event: QueuedEvent,
    pub stage: String,
    pub reason: String,
    pub dead_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Enrichment {
    pub status: EnrichmentStatus,
    /// `GET /v1/...` when a request was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Why no request was made, for `skipped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcome of enrichment as kept in the inbox until every sink has the event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrichmentResult {
    pub enrichment: Enrichment,
    pub entity: Option<Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnrichmentStatus {
    Fetched,
    NotFound,
    Skipped,
    Failed,
}

impl EnrichmentStatus {
    /// The same name it has in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentStatus::Fetched => "fetched",
            EnrichmentStatus::NotFound => "not_found",
            EnrichmentStatus::Skipped => "skipped",
            EnrichmentStatus::Failed => "failed",
        }
    }
}

/// What every sink receives, one per payload element (the contract in DESIGN.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnrichedEvent {
    pub id: String,
    pub studio: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity_id: Option<i64>,
    pub occurred_at: String,
    pub received_at: String,
    pub content: Option<Map<String, Value>>,
    pub enrichment: Enrichment,
    pub entity: Option<Value>,
}

/// RFC 3339 with milliseconds in UTC, e.g. `2022-01-21T15:32:24.176Z`.
pub fn format_millis(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let format = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            t.format(&format).unwrap_or_else(|_| ms.to_string())
        }
        Err(_) => ms.to_string(),
    }
}

impl QueuedEvent {
    /// The request decided at intake (or, for an entry stored before that, decided now).
    pub fn route(&self) -> Route {
        match &self.decided_route {
            Some(route) => route.clone(),
            None => route(
                &self.event_type,
                self.entity_id,
                self.content
                    .as_ref()
                    .and_then(|c| c.get("classId"))
                    .and_then(Value::as_i64),
            ),
        }
    }

    /// Remembers a failure of `stage`; returns how long that stage has been failing.
    pub fn record_failure(&mut self, stage: &str, error: &str, now_ms: i64) -> Duration {
        self.attempts.push(Attempt {
            at_ms: now_ms,
            stage: stage.to_string(),
            error: error.to_string(),
        });
        if self.attempts.len() > MAX_ATTEMPTS {
            self.attempts.remove(0);
        }
        let since = *self.failing_since_ms.get_or_insert(now_ms);
        Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0))
    }

    /// The event as sinks receive it, once enriched.
    pub fn to_enriched(&self, studio: &str, result: &EnrichmentResult) -> EnrichedEvent {
        EnrichedEvent {
            id: self.id.clone(),
            studio: studio.to_string(),
            event_type: self.event_type.clone(),
            entity_id: self.entity_id,
            occurred_at: format_millis(self.occurred_at_ms),
            received_at: format_millis(self.received_at_ms),
            content: self.content.clone(),
            enrichment: result.enrichment.clone(),
            entity: result.entity.clone(),
        }
    }
}

pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_their_json() {
        use EnrichmentStatus::*;
        for status in [Fetched, NotFound, Skipped, Failed] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
    }

    #[test]
    fn parses_the_vendor_example_and_ignores_unknown_fields() {
        let body = br#"{"entityId": 7893459, "uuid": "095be615-a8ad-4c33-8e9c-c7612fbf6c9f",
            "newField": true,
            "payload": [{"timestamp": 1642779144176, "type": "CUSTOMER_CREATED", "x": 1,
                         "content": {"optional": "event-specific object"}}]}"#;
        let n = Notification::parse(body).unwrap();
        let events = n.into_events(5);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "095be615-a8ad-4c33-8e9c-c7612fbf6c9f");
        assert_eq!(events[0].entity_id, Some(7893459));
    }

    #[test]
    fn several_elements_get_indexed_ids() {
        let body = br#"{"entityId": 1, "uuid": "u", "payload": [
            {"timestamp": 1, "type": "A"}, {"timestamp": 2, "type": "B"}]}"#;
        let ids: Vec<String> = Notification::parse(body)
            .unwrap()
            .into_events(0)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["u:0", "u:1"]);
    }

    #[test]
    fn rejects_what_is_not_the_vendor_shape() {
        for body in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"entityId": 1, "payload": [{"timestamp": 1, "type": "A"}]}"#,
            br#"{"entityId": 1, "uuid": "", "payload": [{"timestamp": 1, "type": "A"}]}"#,
            br#"{"entityId": 1, "uuid": "u", "payload": []}"#,
            br#"{"entityId": "x", "uuid": "u", "payload": [{"timestamp": 1, "type": "A"}]}"#,
            br#"{"entityId": 1, "uuid": "u", "payload": [{"type": "A"}]}"#,
            br#"{"entityId": 1, "uuid": "u", "payload": [{"timestamp": 1, "type": ""}]}"#,
            br#"{"entityId": 1, "uuid": "u", "payload": [{"timestamp": 1, "type": "A", "content": 3}]}"#,
        ] {
            assert!(Notification::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_request_is_decided_at_intake_and_for_older_entries_on_read() {
        use crate::route::{Endpoint, Request, Route};
        let body = br#"{"entityId": 3, "uuid": "u", "payload": [
            {"timestamp": 1, "type": "CLASS_SLOT_UPDATED", "content": {"classId": 9}}]}"#;
        let event = Notification::parse(body).unwrap().into_events(0).remove(0);
        let expected = Route::Fetch(Request {
            endpoint: Endpoint::ClassSlot,
            path: "/v1/classes/9/slots/3".into(),
        });
        assert_eq!(event.decided_route, Some(expected.clone()));
        let stored = serde_json::to_string(&event).unwrap();
        let read: QueuedEvent = serde_json::from_str(&stored).unwrap();
        assert_eq!(read.decided_route, Some(expected.clone()));
        // Written before the request was stored with the event.
        let older = r#"{"id":"u","event_type":"CLASS_SLOT_UPDATED","entity_id":3,
            "occurred_at_ms":1,"received_at_ms":0,"content":{"classId":9}}"#;
        let read: QueuedEvent = serde_json::from_str(older).unwrap();
        assert_eq!(read.decided_route, None);
        assert_eq!(read.route(), expected);
    }

    #[test]
    fn formats_timestamps_like_the_contract() {
        assert_eq!(format_millis(1642779144176), "2022-01-21T15:32:24.176Z");
    }
}
