//! The vendor's Open API rate rule, reproduced so the relay's limiter can be tested against it.
//!
//! PerfectGym Next counts requests per endpoint. More than the allowance inside any sliding
//! window does not merely refuse the excess: the whole endpoint answers 429 for a full window
//! afterwards. A client that only backs off per request keeps itself locked out, which is exactly
//! the behaviour the relay must avoid and the simulator must therefore punish.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What the rule says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the allowance: serve it.
    Allow,
    /// This request went over the allowance, or the endpoint is still serving its penalty.
    Refuse {
        /// When the endpoint answers normally again.
        until: Instant,
    },
}

/// Sliding-window counters for every (studio, endpoint) pair.
///
/// The caller passes `now` so tests can replay exact timings without sleeping.
#[derive(Debug)]
pub struct VendorLimit {
    limit: u32,
    window: Duration,
    endpoints: HashMap<(String, String), EndpointState>,
}

#[derive(Debug, Default)]
struct EndpointState {
    /// Arrival times of served requests still inside the window, oldest first.
    recent: VecDeque<Instant>,
    /// Set while the endpoint is locked out.
    blocked_until: Option<Instant>,
}

impl VendorLimit {
    /// `limit` requests are allowed in any `window`; the lockout after a breach lasts one `window`
    /// too (the vendor uses one minute for both).
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            endpoints: HashMap::new(),
        }
    }

    /// Counts one request to `endpoint` of `studio` arriving at `now` and says whether to serve it.
    pub fn check(&mut self, studio: &str, endpoint: &str, now: Instant) -> Verdict {
        let key = (studio.to_owned(), endpoint.to_owned());
        let state = self.endpoints.entry(key).or_default();

        if let Some(until) = state.blocked_until {
            if now < until {
                return Verdict::Refuse { until };
            }
            // The penalty is served; the vendor starts counting afresh.
            state.blocked_until = None;
            state.recent.clear();
        }

        while let Some(&oldest) = state.recent.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                state.recent.pop_front();
            } else {
                break;
            }
        }

        if state.recent.len() >= self.limit as usize {
            let until = now + self.window;
            state.blocked_until = Some(until);
            state.recent.clear();
            return Verdict::Refuse { until };
        }
        state.recent.push_back(now);
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    fn ms(base: Instant, millis: u64) -> Instant {
        base + Duration::from_millis(millis)
    }

    #[test]
    fn allows_exactly_the_limit_in_a_window() {
        let t0 = Instant::now();
        let mut l = VendorLimit::new(3, W);
        for i in 0..3 {
            assert_eq!(l.check("s", "/e", ms(t0, i)), Verdict::Allow);
        }
    }

    #[test]
    fn one_over_locks_the_endpoint_for_a_full_window() {
        let t0 = Instant::now();
        let mut l = VendorLimit::new(3, W);
        for i in 0..3 {
            assert_eq!(l.check("s", "/e", ms(t0, i)), Verdict::Allow);
        }
        let breach = ms(t0, 10);
        assert_eq!(
            l.check("s", "/e", breach),
            Verdict::Refuse { until: breach + W }
        );
        // Even after the original requests have left the window, the penalty still holds.
        assert!(matches!(
            l.check("s", "/e", ms(t0, 59_000)),
            Verdict::Refuse { .. }
        ));
        assert!(matches!(
            l.check("s", "/e", breach + W - Duration::from_millis(1)),
            Verdict::Refuse { .. }
        ));
        assert_eq!(l.check("s", "/e", breach + W), Verdict::Allow);
    }

    #[test]
    fn refused_requests_do_not_extend_the_penalty() {
        let t0 = Instant::now();
        let mut l = VendorLimit::new(1, W);
        assert_eq!(l.check("s", "/e", t0), Verdict::Allow);
        let breach = ms(t0, 1);
        assert!(matches!(l.check("s", "/e", breach), Verdict::Refuse { .. }));
        for i in 2..100 {
            assert_eq!(
                l.check("s", "/e", ms(t0, i * 500)),
                Verdict::Refuse { until: breach + W }
            );
        }
        assert_eq!(l.check("s", "/e", breach + W), Verdict::Allow);
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let mut l = VendorLimit::new(2, W);
        assert_eq!(l.check("s", "/e", ms(t0, 0)), Verdict::Allow);
        assert_eq!(l.check("s", "/e", ms(t0, 30_000)), Verdict::Allow);
        // The first request has just left the window, so there is room for one more.
        assert_eq!(l.check("s", "/e", ms(t0, 60_000)), Verdict::Allow);
        // But the second is still inside it: two in the window already.
        assert!(matches!(
            l.check("s", "/e", ms(t0, 60_001)),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn endpoints_and_studios_count_separately() {
        let t0 = Instant::now();
        let mut l = VendorLimit::new(1, W);
        assert_eq!(l.check("a", "/x", t0), Verdict::Allow);
        assert_eq!(l.check("a", "/y", t0), Verdict::Allow);
        assert_eq!(l.check("b", "/x", t0), Verdict::Allow);
        assert!(matches!(l.check("a", "/x", t0), Verdict::Refuse { .. }));
        assert_eq!(l.check("b", "/y", t0), Verdict::Allow);
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let t0 = Instant::now();
        let mut l = VendorLimit::new(0, W);
        assert!(matches!(l.check("s", "/e", t0), Verdict::Refuse { .. }));
    }
}
