//! How long a simulated studio takes to answer.
//!
//! Real Open API round trips take 100-300 ms. A simulator that answers at once hides what that
//! costs a relay that waits for each answer before sending the next request: at 400 ms, one
//! request in flight cannot reach a budget of 900 a minute however the limiter is tuned.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use humantime_serde::re::humantime;
use rand::Rng;

/// Each answer waits a duration drawn uniformly from `min..=max`; both equal is a fixed delay.
/// The default is no delay at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    min: Duration,
    max: Duration,
}

impl Latency {
    /// Every answer waits exactly `delay`.
    pub fn fixed(delay: Duration) -> Latency {
        Latency {
            min: delay,
            max: delay,
        }
    }

    /// Answers wait between `min` and `max`, uniformly.
    ///
    /// # Panics
    /// If `min` is longer than `max`.
    pub fn between(min: Duration, max: Duration) -> Latency {
        assert!(min <= max, "latency {min:?} is longer than {max:?}");
        Latency { min, max }
    }

    pub fn min(&self) -> Duration {
        self.min
    }

    pub fn max(&self) -> Duration {
        self.max
    }

    pub fn is_zero(&self) -> bool {
        self.max.is_zero()
    }

    /// The delay for one answer.
    pub(crate) fn sample(&self) -> Duration {
        if self.min == self.max {
            self.min
        } else {
            rand::thread_rng().gen_range(self.min..=self.max)
        }
    }
}

/// Why a `--latency` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LatencyError {
    #[error("{0:?} is not a duration such as 150ms or 1s")]
    BadDuration(String),
    #[error("the shorter latency comes first, as in 10ms..300ms")]
    Reversed,
}

/// `150ms` (fixed) or `10ms..300ms` (uniform between the two).
impl FromStr for Latency {
    type Err = LatencyError;

    fn from_str(s: &str) -> Result<Latency, LatencyError> {
        let duration = |text: &str| {
            humantime::parse_duration(text.trim())
                .map_err(|_| LatencyError::BadDuration(text.trim().to_owned()))
        };
        match s.split_once("..") {
            None => Ok(Latency::fixed(duration(s)?)),
            Some((min, max)) => {
                let (min, max) = (duration(min)?, duration(max)?);
                if min > max {
                    return Err(LatencyError::Reversed);
                }
                Ok(Latency::between(min, max))
            }
        }
    }
}

/// The form [`FromStr`] reads.
impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let min = humantime::format_duration(self.min);
        if self.min == self.max {
            write!(f, "{min}")
        } else {
            write!(f, "{min}..{}", humantime::format_duration(self.max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn parses_fixed_and_ranges_and_prints_them_back() {
        assert_eq!("150ms".parse(), Ok(Latency::fixed(150 * MS)));
        assert_eq!("0ms".parse(), Ok(Latency::default()));
        let range: Latency = "10ms..1s".parse().expect("a range");
        assert_eq!(range, Latency::between(10 * MS, 1000 * MS));
        assert_eq!(range.to_string(), "10ms..1s");
        assert_eq!(Latency::fixed(150 * MS).to_string(), "150ms");
        assert_eq!(
            "300ms..10ms".parse::<Latency>(),
            Err(LatencyError::Reversed)
        );
        assert!(matches!(
            "fast".parse::<Latency>(),
            Err(LatencyError::BadDuration(_))
        ));
        assert!("10ms..".parse::<Latency>().is_err());
    }

    #[test]
    fn samples_stay_within_the_bounds() {
        let latency = Latency::between(10 * MS, 20 * MS);
        for _ in 0..1000 {
            let d = latency.sample();
            assert!((10 * MS..=20 * MS).contains(&d), "{d:?}");
        }
        assert_eq!(Latency::fixed(7 * MS).sample(), 7 * MS);
    }
}
