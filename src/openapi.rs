//! The studio's Open API client: makes one request and classifies the answer.

use std::time::Duration;

use awc::http::header::{HeaderValue, RETRY_AFTER};
use awc::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::backoff::parse_retry_after;
use crate::failure::Failure;
use crate::outbound::Outbound;

/// Responses larger than this are refused (a dead letter): a studio's worker holds up to a
/// window of answers in memory. (Answers are not stored; `config::MAX_BODY_BYTES` still leaves
/// room for one, from when they were.)
pub const MAX_RESPONSE_BYTES: usize = 128 * 1024;

/// A page of the customer list holds up to 100 records; it is read, compared and dropped, one
/// page at a time per studio.
pub const MAX_LIST_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// A successful answer: what sinks receive as the entity.
#[derive(Debug)]
pub enum Answer {
    Found(Value),
    NotFound,
}

/// One request's outcome, with the HTTP status it came with (None when there was no answer).
#[derive(Debug)]
pub struct Reply {
    pub status: Option<u16>,
    pub outcome: Result<Answer, Failure>,
}

impl Reply {
    /// For metrics: the HTTP status, or "error" when there was no answer.
    pub fn status_label(&self) -> String {
        self.status.map_or("error".into(), |s| s.to_string())
    }

    fn of(status: u16, outcome: Result<Answer, Failure>) -> Reply {
        Reply {
            status: Some(status),
            outcome,
        }
    }
}

/// One studio's Open API client. Lives inside the studio's actor: awc clients are not `Send`.
pub struct OpenApiClient {
    client: awc::Client,
    base_url: String,
    api_key: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
#[error("the Open API key contains characters not allowed in a header")]
pub struct BadKey;

impl OpenApiClient {
    pub fn new(
        base_url: &str,
        api_key: &SecretString,
        timeout: Duration,
        outbound: &Outbound,
    ) -> Result<Self, BadKey> {
        let mut api_key = HeaderValue::from_str(api_key.expose_secret()).map_err(|_| BadKey)?;
        api_key.set_sensitive(true);
        Ok(OpenApiClient {
            client: outbound.client(timeout),
            base_url: base_url.to_string(),
            api_key,
        })
    }

    /// Answers larger than `max_bytes` are refused for good.
    pub async fn get(&self, path: &str, max_bytes: usize) -> Reply {
        let url = format!("{}{}", self.base_url, path);
        let response = self
            .client
            .get(&url)
            .insert_header(("x-api-key", self.api_key.clone()))
            .insert_header(("accept", "application/json"))
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                return Reply {
                    status: None,
                    outcome: Err(Failure::transient(format!("request failed: {e}"))),
                }
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let transient = |reason: String| {
            Err(Failure::Transient {
                reason,
                retry_after,
            })
        };
        let outcome = match status {
            StatusCode::OK => match response.body().limit(max_bytes).await {
                Ok(body) => match serde_json::from_slice(&body) {
                    Ok(value) => Ok(Answer::Found(value)),
                    Err(e) => transient(format!("200 with a body that is not JSON: {e}")),
                },
                Err(awc::error::PayloadError::Overflow) => Err(Failure::permanent(format!(
                    "response larger than {max_bytes} bytes"
                ))),
                Err(e) => transient(format!("reading the response failed: {e}")),
            },
            StatusCode::NOT_FOUND => Ok(Answer::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Failure::Credentials {
                reason: format!("Open API answered {status} to the studio's key"),
            }),
            s if s.is_redirection() => Err(Failure::of_status(
                s.as_u16(),
                format!("{s} redirect not followed: check the studio's base_url"),
                retry_after,
            )),
            s => match Failure::of_status(s.as_u16(), s, retry_after) {
                // The vendor says why in its error body.
                Failure::Permanent { .. } => Err(Failure::permanent(
                    vendor_message(&mut response)
                        .await
                        .unwrap_or_else(|| s.to_string()),
                )),
                failure => Err(failure),
            },
        };
        Reply::of(status.as_u16(), outcome)
    }
}

/// The vendor's `errorCode` and the start of its `errorMessage`, for the dead letter's reason.
/// The message is about our request (a GET with ids), and is cut short all the same: it is
/// stored with the event.
async fn vendor_message<S>(response: &mut awc::ClientResponse<S>) -> Option<String>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = response.body().limit(64 * 1024).await.ok()?;
    let error: Value = serde_json::from_slice(&body).ok()?;
    let message: String = error
        .get("errorMessage")
        .and_then(Value::as_str)?
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let code = error.get("errorCode").and_then(Value::as_str).unwrap_or("");
    Some(format!("{} {code}: {message}", response.status()))
}
