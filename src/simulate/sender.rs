//! Fires webhook notifications at a relay the way PerfectGym Next does, duplicates included.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::events::{notification, now_ms, random_event};

/// What to send and how fast.
#[derive(Clone, Debug)]
pub struct SendPlan {
    /// Full URL, e.g. `http://127.0.0.1:8080/webhook`.
    pub relay_url: String,
    pub webhook_key: String,
    /// Total sends, resends included.
    pub count: usize,
    /// Target rate. 0 (or anything not positive and finite) sends as fast as possible, one at a
    /// time. A positive rate is held open-loop: sends start on schedule even while earlier ones
    /// are still waiting for an answer, so a slow relay shows up as latency, not as a lower rate.
    pub per_second: f64,
    /// Share of sends that resend an earlier notification (same uuid, same body), as the vendor's
    /// redelivery does.
    pub duplicate_ratio: f64,
    /// Makes the event mix and the uuids reproducible.
    pub seed: u64,
}

/// What the relay answered.
#[derive(Clone, Debug, Default)]
pub struct SendReport {
    pub sent: usize,
    /// 2xx answers not marked as duplicates.
    pub accepted: usize,
    /// 2xx answers with `"status": "duplicate"`.
    pub duplicates: usize,
    /// Non-2xx answers.
    pub rejected: usize,
    /// Transport failures, timeouts included.
    pub errors: usize,
    /// Uuids the relay accepted, in the order of its answers.
    pub accepted_uuids: Vec<String>,
}

/// The vendor gives up on a delivery after 5000 ms.
const VENDOR_TIMEOUT: Duration = Duration::from_millis(5000);
/// Bounds memory when the plan runs for hours; resends come from the recent past.
const RESEND_MEMORY: usize = 1024;
/// Bounds open-loop concurrency against a relay that stops answering.
const MAX_IN_FLIGHT: usize = 256;
/// Relay answers are tiny; anything bigger is not the relay.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
    Error,
}

/// Sends `plan.count` notifications and reports how the relay answered.
///
/// Needs an actix runtime: awc's client is not `Send`.
pub async fn send_events(plan: &SendPlan) -> SendReport {
    let client = awc::Client::builder().timeout(VENDOR_TIMEOUT).finish();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let duplicate_ratio = if plan.duplicate_ratio > 0.0 {
        plan.duplicate_ratio.min(1.0)
    } else {
        0.0
    };
    let period = (plan.per_second.is_finite() && plan.per_second > 0.0)
        .then(|| Duration::try_from_secs_f64(1.0 / plan.per_second).ok())
        .flatten();

    let mut recent: VecDeque<(String, Bytes)> = VecDeque::with_capacity(RESEND_MEMORY);
    let mut report = SendReport::default();
    let mut in_flight = FuturesUnordered::new();
    let start = Instant::now();

    for i in 0..plan.count {
        let (uuid, body) = if !recent.is_empty() && rng.gen_bool(duplicate_ratio) {
            recent[rng.gen_range(0..recent.len())].clone()
        } else {
            let uuid = uuid::Builder::from_random_bytes(rng.gen())
                .into_uuid()
                .to_string();
            let (event_type, entity_id, content) = random_event(&mut rng);
            let body = notification(&uuid, &event_type, entity_id, now_ms(), content);
            let sent = (uuid, Bytes::from(body.to_string()));
            if recent.len() == RESEND_MEMORY {
                recent.pop_front();
            }
            recent.push_back(sent.clone());
            sent
        };

        let Some(period) = period else {
            let answer = post(&client, plan, uuid, body).await;
            report.count(answer);
            continue;
        };
        let due = Duration::try_from_secs_f64(period.as_secs_f64() * i as f64)
            .ok()
            .and_then(|offset| start.checked_add(offset))
            .unwrap_or_else(Instant::now);
        let wait = tokio::time::sleep_until(due);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => report.count(answer),
                _ = &mut wait => break,
            }
        }
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some(answer) = in_flight.next().await {
                report.count(answer);
            }
        }
        in_flight.push(post(&client, plan, uuid, body));
    }
    while let Some(answer) = in_flight.next().await {
        report.count(answer);
    }
    report
}

impl SendReport {
    fn count(&mut self, (uuid, outcome): (String, Outcome)) {
        self.sent += 1;
        match outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                self.accepted_uuids.push(uuid);
            }
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Error => self.errors += 1,
        }
    }
}

async fn post(
    client: &awc::Client,
    plan: &SendPlan,
    uuid: String,
    body: Bytes,
) -> (String, Outcome) {
    let sent = client
        .post(plan.relay_url.as_str())
        .insert_header(("x-api-key", plan.webhook_key.as_str()))
        .insert_header((CONTENT_TYPE, "application/json; charset=utf-8"))
        .send_body(body)
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(%uuid, error = %e, "webhook send failed");
            return (uuid, Outcome::Error);
        }
    };
    if !response.status().is_success() {
        tracing::debug!(%uuid, status = response.status().as_u16(), "webhook rejected");
        return (uuid, Outcome::Rejected);
    }
    // A 2xx means the relay stored it; only an explicit "duplicate" says it had it already.
    let duplicate = response
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["status"] == "duplicate");
    let outcome = if duplicate {
        Outcome::Duplicate
    } else {
        Outcome::Accepted
    };
    (uuid, outcome)
}
