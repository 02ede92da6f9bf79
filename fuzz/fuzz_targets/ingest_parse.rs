//! The webhook body validator on arbitrary bytes: it must never panic, and whatever it accepts
//! must hold the invariants the rest of the relay relies on.

#![no_main]

use gymrelay::event::Notification;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(notification) = Notification::parse(data) {
        assert!(!notification.uuid.trim().is_empty());
        assert!(notification.uuid.len() <= 128);
        let elements = notification.payload.len();
        let events = notification.into_events(0);
        assert_eq!(events.len(), elements);
        assert!(events.iter().all(|e| !e.event_type.is_empty() && !e.id.is_empty()));
    }
});
