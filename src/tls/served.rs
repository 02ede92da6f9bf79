//! When the certificate the ingest serves stops being valid. The vendor's client refuses an
//! expired certificate, so from then on no webhook arrives however healthy the relay is; the
//! outage watch (`crate::downtime`) counts that time like time the relay was down.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::sign::CertifiedKey;

use crate::event::format_millis;

/// The validity end of the certificate served last, in Unix milliseconds; nothing known (plain
/// HTTP, or ACME before its first handshake) counts as valid.
#[derive(Debug)]
pub struct ServedCertificate {
    not_after_ms: AtomicI64,
    /// The pair recorded last, so a handshake serving the same one again costs a pointer
    /// comparison, not a parse.
    recorded: ArcSwapOption<CertifiedKey>,
}

impl Default for ServedCertificate {
    fn default() -> ServedCertificate {
        ServedCertificate {
            not_after_ms: AtomicI64::new(i64::MAX),
            recorded: ArcSwapOption::empty(),
        }
    }
}

impl ServedCertificate {
    /// Notes the pair now served. A leaf that cannot be parsed is left unjudged: rustls and the
    /// vendor's client have the last word on it.
    pub fn record(&self, pair: &Arc<CertifiedKey>) {
        let previous = self.recorded.swap(Some(Arc::clone(pair)));
        if previous.is_some_and(|previous| Arc::ptr_eq(&previous, pair)) {
            return;
        }
        let not_after = pair
            .end_entity_cert()
            .ok()
            .and_then(|leaf| not_after_ms(leaf.as_ref()))
            .unwrap_or(i64::MAX);
        self.not_after_ms.store(not_after, Ordering::Relaxed);
    }

    /// Why webhooks cannot reach the relay at `now_ms`, if the certificate is the reason.
    pub fn problem(&self, now_ms: i64) -> Option<String> {
        let not_after = self.not_after_ms.load(Ordering::Relaxed);
        (now_ms > not_after).then(|| {
            format!(
                "the TLS certificate served expired at {}: the vendor cannot deliver webhooks until it is renewed",
                format_millis(not_after)
            )
        })
    }
}

fn not_after_ms(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.validity().not_after.timestamp().checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(not_after: (i32, u8, u8)) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signer = super::super::provider()
            .key_provider
            .load_private_key(der)
            .unwrap();
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer))
    }

    const JAN_2025_MS: i64 = 1_735_689_600_000;

    #[test]
    fn an_expired_certificate_is_a_problem_until_a_valid_one_is_served() {
        let served = ServedCertificate::default();
        assert_eq!(served.problem(JAN_2025_MS), None, "nothing served yet");

        served.record(&pair((2024, 6, 1)));
        let problem = served.problem(JAN_2025_MS).expect("expired");
        assert!(problem.contains("expired at 2024-06-01"), "{problem}");

        served.record(&pair((2030, 1, 1)));
        assert_eq!(served.problem(JAN_2025_MS), None);
    }
}
