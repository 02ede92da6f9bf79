//! HTTP sink: POSTs the event signed per Standard Webhooks, so receivers can use any of that
//! spec's libraries to verify it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web::Bytes;
use awc::error::PayloadError;
use awc::http::header::{HeaderValue, RETRY_AFTER};
use awc::http::Uri;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures_util::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::SinkSetupError;
use crate::backoff::parse_retry_after;
use crate::failure::Failure;
use crate::outbound::Outbound;
use crate::redacted_url::RedactedUrl;

/// How much of a refusal's body is read: nothing else bounds what a receiver sends back.
const BODY_READ_AT_MOST: usize = 1024;
/// How much of it the failure's reason shows.
const BODY_SHOWN_CHARS: usize = 200;

pub struct HttpSink {
    client: awc::Client,
    url: RedactedUrl,
    /// Also bounds reading a refusal's body, which awc's own timeout does not cover.
    timeout: Duration,
    key: Vec<u8>,
}

impl HttpSink {
    pub fn new(
        url: RedactedUrl,
        secret: &SecretString,
        timeout: Duration,
        outbound: &Outbound,
    ) -> Result<Self, SinkSetupError> {
        // Refused here rather than on every delivery, where it would look like a passing fault.
        let reason = match url.expose().parse::<Uri>() {
            Err(e) => Some(e.to_string()),
            Ok(uri) if !matches!(uri.scheme_str(), Some("http" | "https")) => {
                Some("the scheme must be http or https".to_string())
            }
            Ok(uri) if uri.host().is_none() => Some("it has no host".to_string()),
            Ok(_) => None,
        };
        if let Some(reason) = reason {
            return Err(SinkSetupError::Url { url, reason });
        }
        Ok(HttpSink {
            client: outbound.client(timeout),
            url,
            timeout,
            key: signing_key(secret.expose_secret()),
        })
    }

    pub async fn deliver(&self, event_id: &str, body: &Bytes) -> Result<(), Failure> {
        self.post(event_id, body)
            .await
            .map_err(|f| f.context(format_args!("POST {}", self.url)))
    }

    async fn post(&self, event_id: &str, body: &Bytes) -> Result<(), Failure> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut signature = HeaderValue::from_str(&sign(&self.key, event_id, timestamp, body))
            .map_err(Failure::permanent)?;
        signature.set_sensitive(true);
        let response = self
            .client
            .post(self.url.expose())
            .insert_header(("content-type", "application/json"))
            .insert_header(("webhook-id", event_id))
            .insert_header(("webhook-timestamp", timestamp.to_string()))
            .insert_header(("webhook-signature", signature))
            .send_body(body.clone())
            .await
            // awc 3.11's messages name no URL; scrubbed all the same, since the resolver's
            // error or a later version's could.
            .map_err(|e| Failure::transient(self.url.scrub(&e.to_string())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // A redirect is not followed: it could carry the URL's token to another host.
        let reason = match status.is_redirection() {
            true => format!("{status}: redirect not followed"),
            false => status.to_string(),
        };
        let failure = Failure::of_status(status.as_u16(), reason, retry_after);
        Err(match failure {
            Failure::Permanent { .. } => {
                // The receiver's own words say why, but they may repeat the event, a member's
                // data included: they go to the debug log, never into the failure, which is
                // stored with the event and shown by the admin API.
                // Read only for that log: otherwise a slow body would hold up the burial.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let start = read_start(response.timeout(self.timeout)).await;
                    let start = excerpt(&self.url.scrub(&String::from_utf8_lossy(&start)));
                    if !start.is_empty() {
                        tracing::debug!(url = %self.url, status = %status, body = %start, "http sink refused an event");
                    }
                }
                Failure::permanent(format!(
                    "{status} (the answer's body is logged at debug level only)"
                ))
            }
            failure => failure,
        })
    }
}

/// The first `BODY_READ_AT_MOST` bytes of a body, or what arrived before it failed.
async fn read_start(mut body: impl Stream<Item = Result<Bytes, PayloadError>> + Unpin) -> Vec<u8> {
    let mut start = Vec::new();
    while start.len() < BODY_READ_AT_MOST {
        match body.next().await {
            Some(Ok(chunk)) => {
                let room = BODY_READ_AT_MOST - start.len();
                start.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(Err(_)) | None => break,
        }
    }
    start
}

/// One line of at most `BODY_SHOWN_CHARS`: control characters could forge log lines, and a
/// pretty-printed body reads better with its whitespace runs as single spaces.
fn excerpt(text: &str) -> String {
    let words = text.split(|c: char| c.is_whitespace() || c.is_control());
    let line = words
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() <= BODY_SHOWN_CHARS {
        return line;
    }
    line.chars()
        .take(BODY_SHOWN_CHARS)
        .chain("...".chars())
        .collect()
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
    use awc::http::StatusCode;

    #[test]
    fn a_logged_body_is_one_short_line() {
        assert_eq!(
            excerpt("  no such\t\u{1b}[2Jhook\r\nat all "),
            "no such [2Jhook at all"
        );
        let long = excerpt(&"x".repeat(4000));
        assert_eq!(long.chars().count(), BODY_SHOWN_CHARS + "...".len());
        assert!(long.ends_with("x..."));
    }

    #[actix_rt::test]
    async fn only_the_start_of_a_body_is_read() {
        let chunks = (0..10).map(|_| Ok::<_, PayloadError>(Bytes::from(vec![b'a'; 500])));
        let start = read_start(futures_util::stream::iter(chunks)).await;
        assert_eq!(start.len(), BODY_READ_AT_MOST);
    }

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

    fn sink(url: String) -> HttpSink {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let url = RedactedUrl::new(url);
        HttpSink::new(url, &secret, Duration::from_secs(5), &Outbound::default()).unwrap()
    }

    /// A receiver that answers each path with the status it names.
    async fn answering() -> (std::net::SocketAddr, actix_web::dev::ServerHandle) {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        async fn answer(req: HttpRequest) -> HttpResponse {
            let status: u16 = req.path()[1..].parse().unwrap();
            let mut response = HttpResponse::build(StatusCode::from_u16(status).unwrap());
            match status {
                429 | 503 => response.insert_header(("retry-after", "7")).finish(),
                302 => response.insert_header(("location", "/204")).finish(),
                404 => response.body(""),
                _ => response.body(format!(
                    "{{\n  \"error\": \"no\tsuch\u{1b}[2Jhook\",\n  \"request\": \"{}?{}\",\n  \"padding\": \"{}\"\n}}",
                    req.path(),
                    req.query_string(),
                    "x".repeat(4000)
                )),
            }
        }
        let server = HttpServer::new(|| App::new().default_service(web::to(answer)))
            .workers(1)
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        (addr, handle)
    }

    #[actix_rt::test]
    async fn each_answer_becomes_the_failure_the_policy_needs() {
        let (addr, server) = answering().await;
        let deliver = |status: u16| {
            let sink = sink(format!(
                "http://u:pa55word@{addr}/{status}?token=s3cret-token"
            ));
            async move { sink.deliver("evt-1", &Bytes::from_static(b"{}")).await }
        };
        assert_eq!(deliver(204).await, Ok(()));
        let seven = Some(Duration::from_secs(7));
        let url = format!("POST http://{addr}");
        for (status, expected) in [
            (
                408,
                Failure::transient(format!("{url}/408: 408 Request Timeout")),
            ),
            (
                429,
                Failure::RateLimited {
                    reason: format!("{url}/429: 429 Too Many Requests"),
                    retry_after: seven,
                },
            ),
            (
                503,
                Failure::Transient {
                    reason: format!("{url}/503: 503 Service Unavailable"),
                    retry_after: seven,
                },
            ),
            (
                500,
                Failure::transient(format!("{url}/500: 500 Internal Server Error")),
            ),
            (
                302,
                Failure::transient(format!("{url}/302: 302 Found: redirect not followed")),
            ),
            (
                404,
                Failure::permanent(format!(
                    "{url}/404: 404 Not Found (the answer's body is logged at debug level only)"
                )),
            ),
        ] {
            assert_eq!(deliver(status).await.unwrap_err(), expected);
        }

        // The body (which may repeat the event) is not kept in the failure.
        let Err(Failure::Permanent { reason }) = deliver(400).await else {
            panic!("a 400 is permanent");
        };
        assert_eq!(
            reason,
            format!("{url}/400: 400 Bad Request (the answer's body is logged at debug level only)")
        );
        server.stop(true).await;
    }

    /// Connection refused: the client's message is all there is, and it must not carry the
    /// URL's secrets either.
    #[actix_rt::test]
    async fn a_transport_error_is_transient_and_shows_no_secret() {
        let sink = sink("http://u:pa55word@127.0.0.1:9/in?token=s3cret-token".into());
        let failure = sink
            .deliver("evt-1", &Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.kind(), "transient");
        let shown = format!("{failure} {failure:?}");
        assert!(shown.starts_with("POST http://127.0.0.1:9/in: "), "{shown}");
        assert!(!shown.contains("pa55word") && !shown.contains("s3cret-token"));
    }

    #[test]
    fn refuses_a_url_it_cannot_send_to_without_showing_it() {
        let secret = SecretString::from("s");
        let outbound = Outbound::default();
        for url in ["ftp://u:pa55word@host/x", "/only/a/path?token=s3cret-token"] {
            let made = HttpSink::new(RedactedUrl::new(url), &secret, Duration::ZERO, &outbound);
            let Err(e) = made else {
                panic!("{url} accepted");
            };
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains("pa55word") && !shown.contains("s3cret-token"),
                "{shown}"
            );
        }
    }
}
