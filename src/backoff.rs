//! Retry delays: exponential, capped, with jitter so that studios recovering from the same
//! outage do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Transient Open API and sink failures.
    pub const TRANSIENT: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(300),
    };
    /// Rejected credentials: someone has to fix the key, so probe rarely.
    pub const CREDENTIALS: Backoff = Backoff {
        first: Duration::from_secs(30),
        max: Duration::from_secs(600),
    };

    /// Delay before retry number `attempt` (1-based): between half and all of
    /// `first * 2^(attempt-1)`, capped at `max`. A server's `Retry-After` wins when longer.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let jittered = half + rand::thread_rng().gen_range(Duration::ZERO..=half);
        match retry_after {
            Some(after) => jittered.max(after.min(Duration::from_secs(3600))),
            None => jittered,
        }
    }
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff::TRANSIENT;
        for attempt in 1..30 {
            let d = b.delay(attempt, None);
            assert!(d <= b.max, "attempt {attempt}: {d:?}");
        }
        assert!(b.delay(1, None) <= Duration::from_secs(1));
        assert!(b.delay(5, None) >= Duration::from_secs(8));
    }

    #[test]
    fn honours_retry_after() {
        let d = Backoff::TRANSIENT.delay(1, parse_retry_after("120"));
        assert!(d >= Duration::from_secs(120));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
