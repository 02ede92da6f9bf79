//! Recent activity for people watching: the last few hundred events across studios and, per
//! studio, counts and latencies per minute for the last hour. Ids and statuses only, never
//! personal data from a fetched entity. Kept in memory; a restart starts it afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

const RECENT: usize = 200;
const MINUTES: usize = 60;

#[derive(Debug, Clone, Serialize)]
pub struct RecentEvent {
    pub at_ms: i64,
    pub studio: String,
    /// `webhook` (the acknowledgement) or `delivered` (after enrichment and every sink).
    pub kind: &'static str,
    pub event_type: String,
    pub entity_id: Option<i64>,
    /// accepted, duplicate, invalid, filtered, unavailable; or fetched, not_found, skipped,
    /// dead_letter for deliveries.
    pub outcome: String,
    /// Acknowledgement time for webhooks; time from receipt to delivery for deliveries.
    pub latency_ms: f64,
}

/// One minute of one studio.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Minute {
    /// Start of the minute, ms since the epoch.
    pub at_ms: i64,
    pub webhooks: u32,
    pub delivered: u32,
    pub ack_ms_max: f64,
    ack_ms_sum: f64,
    pub ack_ms_avg: f64,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<RecentEvent>,
    minutes: HashMap<String, VecDeque<Minute>>,
}

#[derive(Default)]
pub struct Activity {
    inner: Mutex<Inner>,
}

impl Activity {
    pub fn record(&self, event: RecentEvent) {
        let mut inner = crate::lock::lock(&self.inner);
        let minute_start = event.at_ms - event.at_ms.rem_euclid(60_000);
        let minutes = inner.minutes.entry(event.studio.clone()).or_default();
        if minutes.back().is_none_or(|m| m.at_ms < minute_start) {
            minutes.push_back(Minute {
                at_ms: minute_start,
                ..Minute::default()
            });
            while minutes.len() > MINUTES {
                minutes.pop_front();
            }
        }
        // Clocks can step back a little; such an event counts in its own minute if still kept.
        if let Some(m) = minutes.iter_mut().rev().find(|m| m.at_ms == minute_start) {
            if event.kind == "webhook" {
                m.webhooks += 1;
                m.ack_ms_sum += event.latency_ms;
                m.ack_ms_max = m.ack_ms_max.max(event.latency_ms);
                m.ack_ms_avg = m.ack_ms_sum / f64::from(m.webhooks);
            } else {
                m.delivered += 1;
            }
        }
        inner.recent.push_back(event);
        while inner.recent.len() > RECENT {
            inner.recent.pop_front();
        }
    }

    /// Newest first.
    /// Forgets the recent events of these entities of a studio (an erased customer's); returns
    /// how many.
    pub fn forget(&self, studio: &str, wanted: impl Fn(&RecentEvent) -> bool) -> usize {
        let mut inner = crate::lock::lock(&self.inner);
        let before = inner.recent.len();
        inner.recent.retain(|e| e.studio != studio || !wanted(e));
        before - inner.recent.len()
    }

    pub fn recent(&self, limit: usize) -> Vec<RecentEvent> {
        let inner = crate::lock::lock(&self.inner);
        inner.recent.iter().rev().take(limit).cloned().collect()
    }

    /// The last hour of `studio`, one entry per minute, oldest first, empty minutes included.
    pub fn minutes(&self, studio: &str, now_ms: i64) -> Vec<Minute> {
        let inner = crate::lock::lock(&self.inner);
        let current = now_ms - now_ms.rem_euclid(60_000);
        let recorded = inner.minutes.get(studio);
        (0..MINUTES as i64)
            .rev()
            .map(|ago| {
                let at_ms = current - ago * 60_000;
                recorded
                    .and_then(|m| m.iter().find(|m| m.at_ms == at_ms))
                    .cloned()
                    .unwrap_or(Minute {
                        at_ms,
                        ..Minute::default()
                    })
            })
            .collect()
    }

    /// Webhooks for `studio` in the last hour.
    pub fn webhooks_last_hour(&self, studio: &str, now_ms: i64) -> u64 {
        self.minutes(studio, now_ms)
            .iter()
            .map(|m| u64::from(m.webhooks))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(studio: &str, at_ms: i64, kind: &'static str) -> RecentEvent {
        RecentEvent {
            at_ms,
            studio: studio.into(),
            kind,
            event_type: "CUSTOMER_UPDATED".into(),
            entity_id: Some(1),
            outcome: "accepted".into(),
            latency_ms: 2.0,
        }
    }

    #[test]
    fn counts_per_minute_and_keeps_the_newest() {
        let activity = Activity::default();
        let t0 = 1_000_000 * 60_000;
        for i in 0..250 {
            activity.record(event("a", t0 + i * 1000, "webhook"));
        }
        activity.record(event("a", t0 + 5_000, "delivered"));
        let minutes = activity.minutes("a", t0 + 249_000);
        assert_eq!(minutes.len(), 60);
        let counted: u32 = minutes.iter().map(|m| m.webhooks).sum();
        assert_eq!(counted, 250);
        assert_eq!(activity.webhooks_last_hour("a", t0 + 249_000), 250);
        assert_eq!(activity.recent(500).len(), RECENT);
        assert_eq!(activity.recent(1)[0].kind, "delivered");
        assert_eq!(activity.webhooks_last_hour("b", t0), 0);
    }
}
