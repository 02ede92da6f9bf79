//! The Open API budget: at most `limit` requests to one endpoint in any 60-second window.
//!
//! The vendor counts per endpoint and punishes any excess with a minute of 429s, and nothing
//! says its window is fixed, so this assumes it slides. A token bucket would allow a full
//! minute's burst followed by the steady rate, which a sliding window counts as an excess.
//! This keeps a log of recent requests in 100 ms buckets (at most ~600 per endpoint, whatever
//! the limit), treats each request as made at the end of its bucket, and admits a request
//! only while fewer than `limit` are inside the window. A backlog therefore drains at
//! `limit` per 60.1 s, and no window ever holds more than `limit`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub const WINDOW: Duration = Duration::from_secs(60);
const BUCKET: Duration = Duration::from_millis(100);

/// One endpoint's sliding-window log.
#[derive(Debug)]
pub struct WindowLimiter {
    limit: u32,
    window: Duration,
    buckets: VecDeque<(Instant, u32)>,
    in_window: u32,
    held_until: Option<Instant>,
}

impl WindowLimiter {
    pub fn new(limit: u32, window: Duration) -> WindowLimiter {
        WindowLimiter {
            limit: limit.max(1),
            window,
            buckets: VecDeque::new(),
            in_window: 0,
            held_until: None,
        }
    }

    /// Takes one request slot at `now`, or says when to ask again.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.held_until {
            if now < until {
                return Err(until);
            }
            self.held_until = None;
        }
        self.forget_before(now);
        if self.in_window >= self.limit {
            let (oldest, _) = self.buckets.front().copied().unwrap_or((now, 0));
            return Err(oldest + BUCKET + self.window);
        }
        match self.buckets.back_mut() {
            Some((start, count)) if now < *start + BUCKET => *count += 1,
            _ => self.buckets.push_back((now, 1)),
        }
        self.in_window += 1;
        Ok(())
    }

    /// Refuses every request until `until` (after a 429 the vendor refuses for a minute).
    pub fn hold(&mut self, until: Instant) {
        self.held_until = Some(self.held_until.map_or(until, |u| u.max(until)));
    }

    fn set_limit(&mut self, limit: u32) {
        self.limit = limit.max(1);
    }

    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.held_until.filter(|u| *u > now)
    }

    /// Requests counted in the window ending at `now`.
    pub fn used(&mut self, now: Instant) -> u32 {
        self.forget_before(now);
        self.in_window
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(start, count)) = self.buckets.front() {
            if start + BUCKET + self.window <= now {
                self.buckets.pop_front();
                self.in_window -= count;
            } else {
                break;
            }
        }
    }
}

/// A studio's budget: one limiter per Open API endpoint, created on first use.
#[derive(Debug)]
pub struct Budget {
    limit: u32,
    window: Duration,
    endpoints: HashMap<&'static str, WindowLimiter>,
}

impl Budget {
    pub fn new(limit: u32) -> Budget {
        Budget::with_window(limit, WINDOW)
    }

    pub fn with_window(limit: u32, window: Duration) -> Budget {
        Budget {
            limit,
            window,
            endpoints: HashMap::new(),
        }
    }

    pub fn endpoint(&mut self, endpoint: &'static str) -> &mut WindowLimiter {
        let (limit, window) = (self.limit, self.window);
        self.endpoints
            .entry(endpoint)
            .or_insert_with(|| WindowLimiter::new(limit, window))
    }

    /// A new `requests_per_minute` from an edited tenant file; what was used stays counted.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
        for limiter in self.endpoints.values_mut() {
            limiter.set_limit(limit);
        }
    }

    /// The recent requests and holds in wall-clock time, to be stored: a restart must not
    /// start every endpoint with a fresh minute (the vendor's counter does not restart).
    pub fn snapshot(&mut self, now: Instant, now_ms: i64) -> BudgetSnapshot {
        let to_ms = |at: Instant| now_ms - i64::try_from((now - at).as_millis()).unwrap_or(0);
        let after_ms = |at: Instant| now_ms + i64::try_from((at - now).as_millis()).unwrap_or(0);
        let endpoints = self
            .endpoints
            .iter_mut()
            .map(|(name, limiter)| {
                limiter.forget_before(now);
                let snapshot = LimiterSnapshot {
                    buckets: limiter
                        .buckets
                        .iter()
                        .map(|(at, n)| (to_ms(*at), *n))
                        .collect(),
                    held_until_ms: limiter.held_until(now).map(after_ms),
                };
                (name.to_string(), snapshot)
            })
            .collect();
        BudgetSnapshot { endpoints }
    }

    /// Takes back a snapshot; `known` maps stored names to the endpoint templates in use.
    pub fn restore(
        &mut self,
        snapshot: &BudgetSnapshot,
        known: &[&'static str],
        now: Instant,
        now_ms: i64,
    ) {
        let at = |ms: i64| {
            let ago = Duration::from_millis(u64::try_from(now_ms - ms).unwrap_or(0));
            now.checked_sub(ago).unwrap_or(now)
        };
        for (name, saved) in &snapshot.endpoints {
            let Some(endpoint) = known.iter().find(|k| **k == name) else {
                continue;
            };
            let limiter = self.endpoint(endpoint);
            for (ms, count) in &saved.buckets {
                limiter.buckets.push_back((at(*ms), *count));
                limiter.in_window += count;
            }
            if let Some(until) = saved.held_until_ms.filter(|u| *u > now_ms) {
                let remaining = Duration::from_millis(u64::try_from(until - now_ms).unwrap_or(0));
                limiter.hold(now + remaining);
            }
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    endpoints: BTreeMap<String, LimiterSnapshot>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LimiterSnapshot {
    /// (milliseconds since the epoch, requests) per bucket.
    buckets: Vec<(i64, u32)>,
    held_until_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every request time, checked against every window: none may hold more than `limit`.
    fn max_in_any_window(times: &[Instant], window: Duration) -> usize {
        let mut max = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= window {
                start += 1;
            }
            max = max.max(end - start + 1);
        }
        max
    }

    /// Drives a limiter with a fake clock: `arrivals` say when work shows up; each request is
    /// made as soon as the limiter allows.
    fn drain(limit: u32, arrivals: &[Duration]) -> Vec<Instant> {
        let t0 = Instant::now();
        let mut limiter = WindowLimiter::new(limit, WINDOW);
        let mut now = t0;
        let mut made = Vec::new();
        for arrival in arrivals {
            now = now.max(t0 + *arrival);
            loop {
                match limiter.try_acquire(now) {
                    Ok(()) => break,
                    Err(at) => {
                        assert!(at > now, "retry time must be in the future");
                        now = at;
                    }
                }
            }
            made.push(now);
        }
        made
    }

    #[test]
    fn no_window_exceeds_the_budget_under_random_load() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for limit in [1, 5, 60, 900] {
            let mut at = Duration::ZERO;
            let arrivals: Vec<Duration> = (0..limit as usize * 5)
                .map(|_| {
                    // Bursts and gaps: the shapes that break token buckets.
                    if rng.gen_bool(0.1) {
                        at += Duration::from_millis(rng.gen_range(0..90_000));
                    } else {
                        at += Duration::from_millis(rng.gen_range(0..50));
                    }
                    at
                })
                .collect();
            let made = drain(limit, &arrivals);
            assert!(
                max_in_any_window(&made, WINDOW) <= limit as usize,
                "limit {limit}"
            );
        }
    }

    #[test]
    fn burst_then_steady_rate_stays_within_every_window() {
        // A full minute's budget at once, then work arriving at exactly the nominal rate.
        let limit = 900;
        let mut arrivals = vec![Duration::ZERO; limit];
        arrivals.extend((0..3 * limit).map(|i| Duration::from_millis(66 * i as u64)));
        let made = drain(limit as u32, &arrivals);
        assert!(max_in_any_window(&made, WINDOW) <= limit);
    }

    #[test]
    fn a_backlog_drains_at_close_to_the_budget() {
        let limit = 900u32;
        let backlog = vec![Duration::ZERO; limit as usize * 10];
        let made = drain(limit, &backlog);
        let elapsed = made.last().unwrap().duration_since(made[0]).as_secs_f64();
        // Ten minutes' worth of requests: 9 full windows after the first burst.
        let per_minute = (made.len() as f64 - limit as f64) / elapsed * 60.0;
        assert!(per_minute >= 0.99 * limit as f64, "{per_minute:.1}/min");
        assert!(max_in_any_window(&made, WINDOW) <= limit as usize);
    }

    #[test]
    fn a_hold_refuses_until_it_ends() {
        let t0 = Instant::now();
        let mut limiter = WindowLimiter::new(10, WINDOW);
        limiter.hold(t0 + WINDOW);
        assert_eq!(limiter.try_acquire(t0), Err(t0 + WINDOW));
        assert_eq!(
            limiter.try_acquire(t0 + Duration::from_secs(59)),
            Err(t0 + WINDOW)
        );
        assert!(limiter.try_acquire(t0 + WINDOW).is_ok());
    }

    #[test]
    fn a_restored_snapshot_keeps_the_window_and_the_hold() {
        let t0 = Instant::now();
        let mut budget = Budget::new(3);
        for _ in 0..3 {
            assert!(budget.endpoint("/a").try_acquire(t0).is_ok());
        }
        budget.endpoint("/b").hold(t0 + WINDOW);
        let snapshot = budget.snapshot(t0, 1_000_000);
        let json = serde_json::to_string(&snapshot).unwrap();

        // "Restarted" 10 s later.
        let t1 = Instant::now() + Duration::from_secs(10);
        let mut restored = Budget::new(3);
        let snapshot: BudgetSnapshot = serde_json::from_str(&json).unwrap();
        restored.restore(&snapshot, &["/a", "/b"], t1, 1_010_000);
        assert!(
            restored.endpoint("/a").try_acquire(t1).is_err(),
            "window still full"
        );
        assert!(
            restored.endpoint("/b").try_acquire(t1).is_err(),
            "still held"
        );
        let later = t1 + Duration::from_secs(51);
        assert!(restored.endpoint("/a").try_acquire(later).is_ok());
        assert!(restored.endpoint("/b").try_acquire(later).is_ok());
    }

    #[test]
    fn endpoints_have_separate_budgets() {
        let t0 = Instant::now();
        let mut budget = Budget::new(1);
        assert!(budget.endpoint("customers").try_acquire(t0).is_ok());
        assert!(budget.endpoint("customers").try_acquire(t0).is_err());
        assert!(budget.endpoint("contracts").try_acquire(t0).is_ok());
    }
}
