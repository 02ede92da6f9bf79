use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::activity::Activity;
use crate::event::{Enrichment, EnrichmentResult};
use crate::metrics::Metrics;
use crate::status::StudioStatus;
use crate::store::StoreSettings;
use crate::studio::test_entries::entry;

fn page(ids: &[i64]) -> Outcome {
    let result: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    Outcome::Answer(EnrichmentResult {
        enrichment: Enrichment {
            status: EnrichmentStatus::Fetched,
            request: None,
            reason: None,
        },
        entity: Some(json!({"result": result, "offset": null, "hasNext": false})),
    })
}

/// A stage with an `--emit-all` sweep under way, on a store of its own.
fn stage(dir: &std::path::Path) -> SweepStage {
    let store = Store::open(&StoreSettings {
        path: dir.to_path_buf(),
        cache_capacity_bytes: 1 << 20,
    })
    .unwrap();
    let studio = StudioId::parse("s").unwrap();
    store
        .reconcile()
        .start(&studio, |_| Sweep::new(Trigger::Manual, true, false, 1))
        .unwrap();
    let report = Rc::new(Report::new(
        studio.clone(),
        Arc::new(Metrics::new()),
        Arc::new(StudioStatus::default()),
        Arc::new(Activity::default()),
    ));
    SweepStage::new(
        studio,
        store,
        ReconcileSettings::default(),
        EntitySelection::default(),
        report,
    )
}

fn customers(events: &[EnrichedEvent]) -> Vec<i64> {
    events.iter().filter_map(|e| e.entity_id).collect()
}

#[actix_rt::test]
async fn a_customer_with_a_live_event_still_to_deliver_is_left_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut stage = stage(dir.path());
    let request = stage.next_request().expect("a page to ask for");
    stage.asked(request.clone());
    stage.receive(&request, page(&[1, 2, 3, 4]));

    // Customer 2's live event was read before the page came and is not delivered yet; 4's is
    // a contract's, which says nothing about customer 4.
    let waiting = [
        entry(7, "CUSTOMER_UPDATED", 2),
        entry(8, "CONTRACT_CREATED", 4),
    ];
    let events = stage.next_chunk(waiting.iter()).expect("the page's events");
    assert_eq!(customers(&events), [1, 3, 4]);
    stage.chunk_delivered(events.len(), Duration::from_millis(1), vec![]);

    let stored = stage
        .store
        .reconcile()
        .fingerprints(
            &stage.studio,
            (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
        )
        .unwrap();
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        [1, 3, 4],
        "2 is recorded when its live event is delivered"
    );
    assert!(stage.record.running.is_none(), "the one page was the last");
}
