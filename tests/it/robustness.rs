//! Arbitrary bodies through the real handler: never a panic or a 5xx, only 200/400/413, and a
//! 200 only for what the validator accepts.

use gymrelay::event::Notification;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::*;

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e12),
        4 => {
            let len = rng.gen_range(0..20);
            Value::String((0..len).map(|_| rng.gen::<char>()).collect())
        }
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                map.insert(
                    format!("k{}", rng.gen_range(0..5)),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(map)
        }
    }
}

/// A valid notification with one part replaced, removed or added at random.
fn mutated(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut body = json!({"entityId": 7, "uuid": format!("fuzz-{n}"),
        "payload": [{"timestamp": 1642779144176i64, "type": "CUSTOMER_UPDATED", "content": {"a": 1}}]});
    let paths: [&[&str]; 6] = [
        &["entityId"],
        &["uuid"],
        &["payload"],
        &["payload", "0", "timestamp"],
        &["payload", "0", "type"],
        &["payload", "0", "content"],
    ];
    let path = paths[rng.gen_range(0..paths.len())];
    let target =
        path.iter()
            .take(path.len() - 1)
            .fold(&mut body, |v, key| match key.parse::<usize>() {
                Ok(i) => &mut v[i],
                Err(_) => &mut v[*key],
            });
    let last = path[path.len() - 1];
    match rng.gen_range(0..3) {
        0 => {
            if let Some(map) = target.as_object_mut() {
                map.remove(last);
            }
        }
        1 => target[last] = random_value(rng, 0),
        _ => target[format!("extra{}", rng.gen_range(0..3))] = random_value(rng, 0),
    }
    body.to_string().into_bytes()
}

#[actix_rt::test]
async fn arbitrary_bodies_get_200_400_or_413_and_200_only_when_valid() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let mut rng = StdRng::seed_from_u64(20261127);
    let client = awc::Client::default();
    let url = format!("{}/webhook", app.url);
    let mut counts = std::collections::BTreeMap::new();
    for n in 0..400 {
        let body: Vec<u8> = match n % 4 {
            0 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
            1 => random_value(&mut rng, 0).to_string().into_bytes(),
            2 if n % 40 == 2 => vec![b'{'; 70 * 1024],
            _ => mutated(&mut rng, n),
        };
        let (status, answer) =
            post_with(&client, &url, Some(&webhook_key("berlin")), body.clone()).await;
        *counts.entry(status).or_insert(0) += 1;
        assert!(
            matches!(status, 200 | 400 | 413),
            "{status} for {}",
            String::from_utf8_lossy(&body)
        );
        if status == 200 {
            assert!(
                Notification::parse(&body).is_ok(),
                "200 for an invalid body"
            );
        }
        if status == 400 {
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
            assert!(Notification::parse(&body).is_err());
        }
    }
    eprintln!("robustness: statuses {counts:?}");
    assert!(
        counts.get(&200).copied().unwrap_or(0) > 10,
        "some mutations stay valid"
    );
    assert!(counts.get(&400).copied().unwrap_or(0) > 100);
    // Still serving normally afterwards.
    assert_eq!(
        app.notify("berlin", &unique("after"), "CUSTOMER_DELETED", 1)
            .await
            .0,
        200
    );
    app.stop().await;
}
