//! One simulated studio: its id, its Open API key, the seed its data grows from, how many
//! customers it has and how long its Open API takes to answer.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::data::CUSTOMER_IDS;
use super::latency::Latency;

/// [`CUSTOMER_IDS`] as a count; the range starts at 1.
const DEFAULT_CUSTOMERS: u32 = *CUSTOMER_IDS.end() as u32;

/// A studio the simulator serves under `/{id}`.
///
/// The seed makes every generated entity reproducible, so a test can predict what the relay
/// fetched without asking the simulator.
#[derive(Clone, PartialEq, Eq)]
pub struct SimStudio {
    pub id: String,
    pub open_api_key: String,
    pub seed: u64,
    /// How long each answer past the fault check waits; none by default.
    pub latency: Latency,
    /// Customers `1..=customers` exist before any is added or deleted; as many as
    /// [`CUSTOMER_IDS`] by default.
    pub customers: u32,
}

impl SimStudio {
    /// A studio whose seed is derived from its id, so the same id always shows the same data.
    pub fn new(id: impl Into<String>, open_api_key: impl Into<String>) -> Self {
        let id = id.into();
        let seed = seed_from_id(&id);
        Self {
            id,
            open_api_key: open_api_key.into(),
            seed,
            latency: Latency::default(),
            customers: DEFAULT_CUSTOMERS,
        }
    }

    /// The same studio with customers `1..=n`, for tests that need more (or fewer) than the
    /// default. Each customer stays the same person whatever `n` is.
    pub fn with_customers(self, n: u32) -> Self {
        Self {
            customers: n,
            ..self
        }
    }

    /// The same studio answering after a delay drawn uniformly from `min..=max` (both equal: a
    /// fixed delay), as the real Open API's round trips do.
    ///
    /// # Panics
    /// If `min` is longer than `max`.
    pub fn with_latency(self, min: Duration, max: Duration) -> Self {
        Self {
            latency: Latency::between(min, max),
            ..self
        }
    }
}

/// The key stays out of logs and panic messages.
impl fmt::Debug for SimStudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStudio")
            .field("id", &self.id)
            .field("open_api_key", &"<redacted>")
            .field("seed", &self.seed)
            .field("latency", &self.latency)
            .field("customers", &self.customers)
            .finish()
    }
}

/// Why a `--studio ID:KEY` argument was refused. The offending text is not echoed because it
/// contains a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StudioSpecError {
    #[error("expected ID:OPEN_API_KEY")]
    MissingColon,
    #[error("the studio id must be non-empty and use only letters, digits, '-' and '_'")]
    BadId,
    #[error("the Open API key must not be empty")]
    EmptyKey,
}

impl FromStr for SimStudio {
    type Err = StudioSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, key) = s.split_once(':').ok_or(StudioSpecError::MissingColon)?;
        let id_ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(StudioSpecError::BadId);
        }
        if key.is_empty() {
            return Err(StudioSpecError::EmptyKey);
        }
        Ok(SimStudio::new(id, key))
    }
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub(crate) fn seed_from_id(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_and_key() {
        let s: SimStudio = "berlin-mitte:k:with:colons".parse().expect("valid spec");
        assert_eq!(s.id, "berlin-mitte");
        assert_eq!(s.open_api_key, "k:with:colons");
        assert_eq!(s.seed, seed_from_id("berlin-mitte"));
    }

    #[test]
    fn refuses_bad_specs() {
        assert_eq!(
            "nokey".parse::<SimStudio>(),
            Err(StudioSpecError::MissingColon)
        );
        assert_eq!(":k".parse::<SimStudio>(), Err(StudioSpecError::BadId));
        assert_eq!("a/b:k".parse::<SimStudio>(), Err(StudioSpecError::BadId));
        assert_eq!("a:".parse::<SimStudio>(), Err(StudioSpecError::EmptyKey));
    }

    #[test]
    fn debug_hides_the_key() {
        let s = SimStudio::new("x", "very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
    }
}
