//! `cargo bench --bench hotpath`: the pieces of the ingest path in isolation, so a regression
//! in one shows up on its own: key lookup, body validation, and the dedupe + enqueue write
//! (without the group commit's flush, which is the disk's time, not ours).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gymrelay::config::StorageConfig;
use gymrelay::event::Notification;
use gymrelay::registry::hash_key;
use gymrelay::store::Store;
use gymrelay::tenant::StudioId;

const BODY: &[u8] = br#"{"entityId": 7893459, "uuid": "095be615-a8ad-4c33-8e9c-c7612fbf6c9f",
 "payload": [{"timestamp": 1642779144176, "type": "CUSTOMER_CREATED",
              "content": {"optional": "event-specific object"}}]}"#;

fn key_lookup(c: &mut Criterion) {
    let keys: std::collections::HashMap<[u8; 32], usize> = (0..1000)
        .map(|i| (hash_key(format!("webhook-key-{i}").as_bytes()), i))
        .collect();
    c.bench_function("key lookup (1000 studios)", |b| {
        b.iter(|| keys.get(&hash_key(black_box(b"webhook-key-517"))))
    });
}

fn validation(c: &mut Criterion) {
    c.bench_function("body validation", |b| {
        b.iter(|| Notification::parse(black_box(BODY)).map(|n| n.into_events(0)))
    });
}

fn enqueue(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        &StorageConfig {
            path: dir.path().join("data"),
            ..StorageConfig::default()
        }
        .store_settings(),
    )
    .expect("store");
    let studio = StudioId::parse("bench").expect("id");
    let events = Notification::parse(BODY).expect("valid").into_events(0);
    let mut n = 0u64;
    c.bench_function("dedupe + enqueue (no flush)", |b| {
        b.iter(|| {
            n += 1;
            store
                .record_for_bench(
                    &studio,
                    &uuid::Uuid::new_v4().to_string(),
                    &events,
                    n as i64,
                )
                .expect("recorded")
        })
    });
}

criterion_group!(benches, key_lookup, validation, enqueue);
criterion_main!(benches);
