use super::*;
use crate::studio::test_entries::entry;

fn customer(entity: i64) -> Request {
    match crate::route::route("CUSTOMER_UPDATED", Some(entity), None) {
        Route::Fetch(request) => request,
        Route::Skip(_) => unreachable!("customers are fetched"),
    }
}

fn answer(version: i64) -> EnrichmentResult {
    EnrichmentResult {
        enrichment: Enrichment {
            status: EnrichmentStatus::Fetched,
            request: None,
            reason: None,
        },
        entity: Some(serde_json::json!({ "version": version })),
    }
}

fn ids(entries: &[InboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.event.id.as_str()).collect()
}

fn version(entry: &InboxEntry) -> i64 {
    entry
        .event
        .enriched
        .as_ref()
        .unwrap()
        .entity
        .as_ref()
        .unwrap()["version"]
        .as_i64()
        .unwrap()
}

#[test]
fn answers_out_of_order_leave_only_from_the_head() {
    let mut w = Window::new(8);
    for seq in 1..=3 {
        w.admit(entry(seq, "CUSTOMER_UPDATED", seq as i64));
    }
    assert_eq!(w.to_ask(), [customer(1), customer(2), customer(3)]);
    for (seq, request) in w.to_ask().iter().enumerate() {
        w.asked(request, 10 + seq as u64);
    }
    assert!(w.to_ask().is_empty(), "nothing asked twice");
    w.answered(&customer(3), answer(3));
    w.answered(&customer(2), answer(2));
    assert!(w.pop_ready(8).is_empty(), "the head has no answer yet");
    w.answered(&customer(1), answer(1));
    assert_eq!(ids(&w.pop_ready(8)), ["e1", "e2", "e3"]);
    assert!(w.is_empty());
}

#[test]
fn entries_needing_one_request_share_it_and_skips_need_none() {
    let mut w = Window::new(8);
    w.admit(entry(1, "CUSTOMER_UPDATED", 7));
    w.admit(entry(2, "CUSTOMER_DELETED", 7));
    w.admit(entry(3, "CUSTOMER_CHECKIN", 7));
    assert_eq!(w.to_ask(), [customer(7)]);
    w.asked(&customer(7), 10);
    assert_eq!(w.answered(&customer(7), answer(1)), 2);
    let run = w.pop_ready(8);
    assert_eq!(ids(&run), ["e1", "e2", "e3"]);
    assert_eq!(
        run[1].event.enriched.as_ref().unwrap().enrichment.status,
        EnrichmentStatus::Skipped
    );
    assert_eq!((version(&run[0]), version(&run[2])), (1, 1));
}

#[test]
fn an_entry_that_arrived_after_the_request_was_sent_asks_anew_once_it_is_answered() {
    let mut w = Window::new(8);
    w.admit(entry(1, "CUSTOMER_UPDATED", 7));
    w.asked(&customer(7), 10);
    // Sequence 11 arrived after the request went out: its change may be newer than the answer.
    w.admit(entry(11, "CUSTOMER_UPDATED", 7));
    assert!(w.to_ask().is_empty(), "one request per entity in flight");
    w.answered(&customer(7), answer(1));
    assert_eq!(w.to_ask(), [customer(7)]);
    w.asked(&customer(7), 20);
    w.answered(&customer(7), answer(2));
    let run = w.pop_ready(8);
    assert_eq!((version(&run[0]), version(&run[1])), (1, 2));
}

#[test]
fn entries_read_later_share_requests_sent_after_they_arrived() {
    let mut w = Window::new(1);
    w.admit(entry(1, "CUSTOMER_UPDATED", 7));
    w.asked(&customer(7), 10);
    assert_eq!(w.room(), 0);
    w.answered(&customer(7), answer(1));
    assert_eq!(w.pop_ready(8).len(), 1);
    // Sequence 5 waited in the inbox while the request went out at 10: the answer serves it.
    assert!(w.admit(entry(5, "CUSTOMER_UPDATED", 7)), "shared");
    assert_eq!(version(&w.pop_ready(8)[0]), 1);
    // Sequence 12 came after: it asks again.
    assert!(!w.admit(entry(12, "CUSTOMER_UPDATED", 7)));
    assert_eq!(w.to_ask(), [customer(7)]);
}

#[test]
fn an_entry_read_while_its_request_is_in_flight_joins_it_if_it_arrived_before() {
    let mut w = Window::new(4);
    w.admit(entry(1, "CUSTOMER_UPDATED", 7));
    w.asked(&customer(7), 10);
    w.admit(entry(5, "CUSTOMER_UPDATED", 7));
    w.answered(&customer(7), answer(3));
    let run = w.pop_ready(4);
    assert_eq!(
        ids(&run),
        ["e1", "e5"],
        "sequence 5 joined the request sent at 10"
    );
    assert_eq!(version(&run[1]), 3);
}

#[test]
fn entries_given_up_on_leave_at_once_and_the_rest_ask_again() {
    let mut w = Window::new(8);
    w.admit(entry(1, "CUSTOMER_UPDATED", 8));
    w.admit(entry(2, "CUSTOMER_UPDATED", 7));
    w.admit(entry(3, "CUSTOMER_UPDATED", 7));
    w.asked(&customer(7), 10);
    let (still, dead) = w.unanswered(&customer(7), |e| {
        (e.event.id == "e2").then(|| Dead {
            stage: "enrichment".into(),
            reason: "kept failing".into(),
        })
    });
    assert!(still, "e3 still needs it");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].0.event.id.as_str(), dead[0].1.stage.as_str()),
        ("e2", "enrichment")
    );
    assert_eq!(w.to_ask(), [customer(8), customer(7)]);
    assert_eq!(w.room(), 6, "e2 is out of the window");
}

#[test]
fn a_rewind_reads_again_but_keeps_requests_in_flight() {
    let mut w = Window::new(8);
    w.admit(entry(5, "CUSTOMER_UPDATED", 7));
    w.asked(&customer(7), 10);
    w.rewind();
    assert_eq!(w.read_up_to(), None);
    // A replayed entry (sequence 3) and the one read before, both older than the request.
    w.admit(entry(3, "CUSTOMER_UPDATED", 7));
    w.admit(entry(5, "CUSTOMER_UPDATED", 7));
    assert!(w.to_ask().is_empty(), "not asked twice at once");
    w.answered(&customer(7), answer(1));
    assert_eq!(ids(&w.pop_ready(8)), ["e3", "e5"]);
}
