//! What keeps the public listener safe to expose: a cap on requests in flight, a body read with
//! a size cap and a deadline, a per-studio inbound rate, and bounded accounting of failed keys.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::tenant::StudioId;

/// Requests being handled at once. Beyond the cap new ones are refused at once (503) rather
/// than queued, so the work already accepted keeps its latency.
pub struct InFlight {
    now: AtomicUsize,
    max: usize,
}

pub struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight {
            now: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    pub fn enter(&self) -> Option<InFlightGuard<'_>> {
        let before = self.now.fetch_add(1, Ordering::AcqRel);
        let guard = InFlightGuard(&self.now);
        (before < self.max).then_some(guard)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// Reads the body, refusing it as soon as it passes `max` bytes (a declared Content-Length
/// over the cap is refused before reading) or when it has not arrived by `timeout`: a client
/// trickling a body must not hold a worker's attention.
pub async fn read_body(
    mut payload: Payload,
    declared: Option<usize>,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(max));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            if body.len() + chunk.len() > max {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

/// The per-studio inbound rate (a token bucket per studio id).
pub struct StudioRates {
    limiter: DefaultKeyedRateLimiter<StudioId>,
}

impl StudioRates {
    pub fn new(per_second: u32, burst: u32) -> StudioRates {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        StudioRates {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    pub fn allows(&self, studio: &StudioId) -> bool {
        self.limiter.check_key(studio).is_ok()
    }
}

/// Labels failed-key attempts by source address for metrics, tracking at most `MAX_SOURCES`
/// addresses: an attacker rotating addresses must not grow the metrics without bound.
pub struct AuthFailures {
    sources: Mutex<HashSet<IpAddr>>,
}

const MAX_SOURCES: usize = 256;

impl AuthFailures {
    pub fn new() -> AuthFailures {
        AuthFailures {
            sources: Mutex::new(HashSet::new()),
        }
    }

    pub fn label(&self, source: Option<IpAddr>) -> String {
        let Some(ip) = source else {
            return "unknown".into();
        };
        let mut sources = crate::lock::lock(&self.sources);
        if sources.contains(&ip) || sources.len() < MAX_SOURCES {
            sources.insert(ip);
            ip.to_string()
        } else {
            "other".into()
        }
    }
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_refuses_beyond_the_cap_and_frees_on_drop() {
        let limit = InFlight::new(2);
        let a = limit.enter();
        let b = limit.enter();
        assert!(a.is_some() && b.is_some());
        assert!(limit.enter().is_none());
        drop(a);
        assert!(limit.enter().is_some());
    }

    #[test]
    fn rates_are_per_studio() {
        let rates = StudioRates::new(1, 2);
        let (a, b) = (StudioId::parse("a").unwrap(), StudioId::parse("b").unwrap());
        assert!(rates.allows(&a) && rates.allows(&a));
        assert!(!rates.allows(&a), "burst used up");
        assert!(rates.allows(&b), "another studio is not affected");
    }

    #[test]
    fn failed_key_sources_are_bounded() {
        let failures = AuthFailures::new();
        for i in 0..300u32 {
            failures.label(Some(IpAddr::from(i.to_be_bytes())));
        }
        assert_eq!(failures.label(Some(IpAddr::from([9, 9, 9, 9]))), "other");
        assert_eq!(
            failures.label(Some(IpAddr::from(0u32.to_be_bytes()))),
            "0.0.0.0"
        );
    }
}
