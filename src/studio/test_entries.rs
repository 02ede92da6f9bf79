//! Inbox entries for the studio stages' unit tests.

use crate::event::QueuedEvent;
use crate::store::InboxEntry;
use crate::tenant::StudioId;

/// Entry `seq` of studio "s": a notification of `event_type` about `entity`, routed.
pub fn entry(seq: u64, event_type: &str, entity: i64) -> InboxEntry {
    let mut event = QueuedEvent {
        id: format!("e{seq}"),
        event_type: event_type.into(),
        entity_id: Some(entity),
        occurred_at_ms: 0,
        received_at_ms: 0,
        content: None,
        decided_route: None,
        enriched: None,
        delivered_to: vec![],
        attempts: vec![],
        failing_since_ms: None,
    };
    event.decided_route = Some(event.route());
    InboxEntry::for_test(&StudioId::parse("s").unwrap(), seq, event)
}
