//! HTTP sink: POSTs the event signed per Standard Webhooks, so receivers can use any of that
//! spec's libraries to verify it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awc::http::header::HeaderValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::SinkError;
use crate::outbound::Outbound;
use crate::redacted_url::RedactedUrl;

pub struct HttpSink {
    client: awc::Client,
    url: RedactedUrl,
    key: Vec<u8>,
}

impl HttpSink {
    pub fn new(
        url: RedactedUrl,
        secret: &SecretString,
        timeout: Duration,
        outbound: &Outbound,
    ) -> Result<Self, SinkError> {
        Ok(HttpSink {
            client: outbound.client(timeout),
            url,
            key: signing_key(secret.expose_secret()),
        })
    }

    pub async fn deliver(&self, event_id: &str, body: &[u8]) -> Result<(), SinkError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut signature = HeaderValue::from_str(&sign(&self.key, event_id, timestamp, body))
            .map_err(|e| SinkError(e.to_string()))?;
        signature.set_sensitive(true);
        let response = self
            .client
            .post(self.url.expose())
            .insert_header(("content-type", "application/json"))
            .insert_header(("webhook-id", event_id))
            .insert_header(("webhook-timestamp", timestamp.to_string()))
            .insert_header(("webhook-signature", signature))
            .send_body(body.to_vec())
            .await
            .map_err(|e| SinkError(format!("POST {}: {e}", self.url)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SinkError(format!(
                "POST {}: {}",
                self.url,
                response.status()
            )))
        }
    }
}

/// Standard Webhooks: a `whsec_` secret is base64 after the prefix; any other string is used
/// as raw bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| BASE64.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
