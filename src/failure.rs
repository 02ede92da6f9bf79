//! One failure type for everything a studio calls (its Open API and every sink), and one policy
//! that turns a failure into what happens next: retry later, hold, or give up (a dead letter).

use std::fmt;
use std::time::Duration;

use crate::backoff::Backoff;

/// Why a call to the Open API or a sink did not succeed. The reason never holds a secret: URLs
/// are shown redacted, keys are never repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Retrying cannot help (a 4xx other than 408/429, an answer too large to store).
    #[error("{reason}")]
    Permanent { reason: String },
    /// Worth retrying: 5xx, 503 throttling, 408, timeouts, connection errors, a full disk.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 429: the receiver asks for a pause (the Open API refuses for a whole minute).
    #[error("{reason}")]
    RateLimited {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Refused credentials (the Open API's 401/403, a broker's authorization violation): a key
    /// is wrong or lacks the scope. Events are kept until someone fixes it; they never become
    /// dead letters for this.
    #[error("{reason}")]
    Credentials { reason: String },
}

impl Failure {
    pub fn permanent(reason: impl fmt::Display) -> Failure {
        Failure::Permanent {
            reason: reason.to_string(),
        }
    }

    pub fn transient(reason: impl fmt::Display) -> Failure {
        Failure::Transient {
            reason: reason.to_string(),
            retry_after: None,
        }
    }

    /// What an HTTP answer that is no success means, by one rule for the Open API and the http
    /// sink: 429 asks for a pause; any other 4xx but 408 cannot be helped by sending again; the
    /// rest (408, 5xx, 503 throttling, a redirect that is not followed) is worth retrying.
    /// `Retry-After` goes with every kind that waits.
    pub fn of_status(
        status: u16,
        reason: impl fmt::Display,
        retry_after: Option<Duration>,
    ) -> Failure {
        let reason = reason.to_string();
        match status {
            429 => Failure::RateLimited {
                reason,
                retry_after,
            },
            408 => Failure::Transient {
                reason,
                retry_after,
            },
            400..=499 => Failure::Permanent { reason },
            _ => Failure::Transient {
                reason,
                retry_after,
            },
        }
    }

    /// The same failure with `context` in front of its reason (`POST https://crm/x: 500`).
    pub fn context(self, context: impl fmt::Display) -> Failure {
        let prefix = |reason: String| format!("{context}: {reason}");
        match self {
            Failure::Permanent { reason } => Failure::Permanent {
                reason: prefix(reason),
            },
            Failure::Transient {
                reason,
                retry_after,
            } => Failure::Transient {
                reason: prefix(reason),
                retry_after,
            },
            Failure::RateLimited {
                reason,
                retry_after,
            } => Failure::RateLimited {
                reason: prefix(reason),
                retry_after,
            },
            Failure::Credentials { reason } => Failure::Credentials {
                reason: prefix(reason),
            },
        }
    }

    /// A dead letter's reason, when this failure made one.
    pub fn burial_reason(&self) -> String {
        match self {
            Failure::Permanent { reason } => reason.clone(),
            other => format!("kept failing: {other}"),
        }
    }

    /// For metrics and logs: `permanent`, `transient`, `rate_limited` or `credentials`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Permanent { .. } => "permanent",
            Failure::Transient { .. } => "transient",
            Failure::RateLimited { .. } => "rate_limited",
            Failure::Credentials { .. } => "credentials",
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same call again after this long.
    RetryAfter(Duration),
    /// The receiver refuses everything for this long: send it nothing until then.
    Hold(Duration),
    /// Give up: the event becomes a dead letter (replayable).
    DeadLetter,
}

/// The one retry policy. `attempt` is 1 for the first failure of this call; `failing_for` is
/// how long the event has been failing at this stage, measured against `dead_letter_after`.
/// A 429 and a rejected key hold rather than count down: the first is the receiver's pace and
/// the second needs a person, and neither says anything is wrong with the event.
pub fn next(
    failure: &Failure,
    attempt: u32,
    failing_for: Duration,
    dead_letter_after: Duration,
) -> Next {
    match failure {
        Failure::Permanent { .. } => Next::DeadLetter,
        Failure::Credentials { .. } => Next::Hold(Backoff::CREDENTIALS.delay(attempt, None)),
        Failure::RateLimited { retry_after, .. } => {
            if failing_for >= dead_letter_after {
                Next::DeadLetter
            } else {
                Next::Hold(Backoff::TRANSIENT.delay(attempt, *retry_after))
            }
        }
        Failure::Transient { retry_after, .. } => {
            if failing_for >= dead_letter_after {
                Next::DeadLetter
            } else {
                Next::RetryAfter(Backoff::TRANSIENT.delay(attempt, *retry_after))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn http_statuses_map_to_one_kind_each() {
        let kind = |status| Failure::of_status(status, status, None).kind();
        assert_eq!(kind(429), "rate_limited");
        for status in [400, 404, 410, 422] {
            assert_eq!(kind(status), "permanent", "{status}");
        }
        for status in [302, 408, 500, 503] {
            assert_eq!(kind(status), "transient", "{status}");
        }
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            Failure::of_status(503, "503", after),
            Failure::Transient {
                reason: "503".into(),
                retry_after: after
            }
        );
    }

    #[test]
    fn permanent_is_a_dead_letter_at_once() {
        let f = Failure::permanent("400 Bad Request");
        assert_eq!(next(&f, 1, Duration::ZERO, DAY), Next::DeadLetter);
    }

    #[test]
    fn transient_retries_until_it_has_failed_for_too_long() {
        let f = Failure::transient("503");
        assert!(matches!(
            next(&f, 1, Duration::ZERO, DAY),
            Next::RetryAfter(_)
        ));
        assert_eq!(next(&f, 40, DAY, DAY), Next::DeadLetter);
    }

    #[test]
    fn retry_after_is_honoured() {
        let f = Failure::Transient {
            reason: "503".into(),
            retry_after: Some(Duration::from_secs(120)),
        };
        let Next::RetryAfter(d) = next(&f, 1, Duration::ZERO, DAY) else {
            panic!("a transient failure is retried");
        };
        assert!(d >= Duration::from_secs(120));
        let f = Failure::RateLimited {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(90)),
        };
        let Next::Hold(d) = next(&f, 1, Duration::ZERO, DAY) else {
            panic!("a 429 holds");
        };
        assert!(d >= Duration::from_secs(90));
    }

    #[test]
    fn rejected_credentials_hold_and_never_bury() {
        let f = Failure::Credentials {
            reason: "401".into(),
        };
        assert!(matches!(next(&f, 3, DAY * 2, DAY), Next::Hold(_)));
    }

    #[test]
    fn context_keeps_the_kind() {
        let f = Failure::RateLimited {
            reason: "429".into(),
            retry_after: None,
        }
        .context("POST https://crm.example/in");
        assert_eq!(f.kind(), "rate_limited");
        assert_eq!(f.to_string(), "POST https://crm.example/in: 429");
    }
}
