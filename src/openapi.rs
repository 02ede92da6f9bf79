//! The studio's Open API: which request answers "what is the current state" for an event, and
//! a client that makes that request and classifies the answer.

use std::time::Duration;

use awc::http::header::{HeaderValue, RETRY_AFTER};
use awc::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::backoff::parse_retry_after;
use crate::event::QueuedEvent;
use crate::outbound::Outbound;

/// Responses larger than this are refused (a dead letter) rather than stored: the stored event
/// must stay below the size sled writes to blob files it never syncs (see store::SEGMENT_SIZE).
pub const MAX_RESPONSE_BYTES: usize = 128 * 1024;

/// Every endpoint template [`route`] can produce: the units of the vendor's rate limit.
pub const ENDPOINTS: &[&str] = &[
    "/v1/customers/{id}",
    "/v1/communications/{id}/communication-preferences",
    "/v1/customers/{id}/contracts",
    "/v1/classes/booking/{id}",
    "/v1/classes/{classId}/slots/{id}",
    "/v1/appointments/booking/{id}",
    "/v1/employees/{id}",
    "/v1/studios/information",
    "/v1/taxadvisor/exports/{id}",
];

/// What enrichment needs for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `endpoint` is the path template, the unit the vendor's rate limit counts.
    Fetch {
        endpoint: &'static str,
        path: String,
    },
    Skip {
        reason: &'static str,
    },
}

/// Maps an event to its request per the vendor's table (perfectgym.md).
pub fn route(event: &QueuedEvent) -> Route {
    let class_id = event
        .content
        .as_ref()
        .and_then(|c| c.get("classId"))
        .and_then(Value::as_i64);
    route_for(&event.event_type, event.entity_id, class_id)
}

/// [`route`] from the fields it depends on: type, entity and `content.classId`.
pub fn route_for(t: &str, entity_id: Option<i64>, class_id: Option<i64>) -> Route {
    let gone = match t {
        "CUSTOMER_DELETED" | "EMPLOYEE_DELETED" => Some("the entity is deleted"),
        "CUSTOMER_ACCESS_DISABLED" => Some("the customer's data can no longer be requested"),
        _ => None,
    };
    if let Some(reason) = gone {
        return Route::Skip { reason };
    }
    let Some(id) = entity_id else {
        return match endpoint_for(t) {
            Some(_) => Route::Skip {
                reason: "the notification has no entityId",
            },
            None => no_endpoint(t),
        };
    };
    let fetch = |endpoint: &'static str, path: String| Route::Fetch { endpoint, path };
    match endpoint_for(t) {
        Some(Endpoint::CommunicationPreferences) => fetch(
            "/v1/communications/{id}/communication-preferences",
            format!("/v1/communications/{id}/communication-preferences"),
        ),
        Some(Endpoint::Customer) => fetch("/v1/customers/{id}", format!("/v1/customers/{id}")),
        Some(Endpoint::Contracts) => fetch(
            "/v1/customers/{id}/contracts",
            format!("/v1/customers/{id}/contracts"),
        ),
        Some(Endpoint::ClassBooking) => fetch(
            "/v1/classes/booking/{id}",
            format!("/v1/classes/booking/{id}"),
        ),
        Some(Endpoint::ClassSlot) => match class_id {
            Some(class_id) => fetch(
                "/v1/classes/{classId}/slots/{id}",
                format!("/v1/classes/{class_id}/slots/{id}"),
            ),
            None => Route::Skip {
                reason: "content.classId is missing",
            },
        },
        Some(Endpoint::AppointmentBooking) => fetch(
            "/v1/appointments/booking/{id}",
            format!("/v1/appointments/booking/{id}"),
        ),
        Some(Endpoint::Employee) => fetch("/v1/employees/{id}", format!("/v1/employees/{id}")),
        Some(Endpoint::StudioInformation) => {
            fetch("/v1/studios/information", "/v1/studios/information".into())
        }
        Some(Endpoint::TaxAdvisorExport) => fetch(
            "/v1/taxadvisor/exports/{id}",
            format!("/v1/taxadvisor/exports/{id}"),
        ),
        None => no_endpoint(t),
    }
}

fn no_endpoint(_t: &str) -> Route {
    Route::Skip {
        reason: "no Open API endpoint for this event type",
    }
}

enum Endpoint {
    Customer,
    CommunicationPreferences,
    Contracts,
    ClassBooking,
    ClassSlot,
    AppointmentBooking,
    Employee,
    StudioInformation,
    TaxAdvisorExport,
}

fn endpoint_for(t: &str) -> Option<Endpoint> {
    Some(match t {
        "CUSTOMER_COMMUNICATION_PREFERENCES_UPDATED" => Endpoint::CommunicationPreferences,
        "AGGREGATOR_MEMBER_CREATED" => Endpoint::Customer,
        "EMPLOYEE_CREATED" | "EMPLOYEE_UPDATED" => Endpoint::Employee,
        "STUDIO_OPENING_HOURS_UPDATED" => Endpoint::StudioInformation,
        "TAX_ADVISOR_EXPORT_CREATED" => Endpoint::TaxAdvisorExport,
        t if t.starts_with("CUSTOMER_") => Endpoint::Customer,
        t if t.starts_with("CONTRACT_") => Endpoint::Contracts,
        t if t.starts_with("CLASS_BOOKING_") => Endpoint::ClassBooking,
        t if t.starts_with("CLASS_SLOT_") => Endpoint::ClassSlot,
        t if t.starts_with("APPOINTMENT_BOOKING_") => Endpoint::AppointmentBooking,
        _ => return None,
    })
}

/// How an Open API answer is to be treated.
#[derive(Debug)]
pub enum Answer {
    Found(Value),
    NotFound,
    /// 429: the endpoint is closed for a minute (or as long as Retry-After says).
    RateLimited {
        retry_after: Option<Duration>,
    },
    /// 401/403: the studio's Open API key is wrong or lacks the scope.
    CredentialsRejected(u16),
    /// The request itself is wrong (400 and other 4xx): retrying cannot help.
    Permanent {
        status: u16,
        reason: String,
    },
    /// Worth retrying: 503 throttling, 5xx, timeouts, connection errors, unexpected answers.
    Retry {
        /// None for transport failures.
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Answer {
    /// For metrics: the HTTP status, or "error" when there was no answer.
    pub fn status_label(&self) -> String {
        match self {
            Answer::Found(_) => "200".into(),
            Answer::NotFound => "404".into(),
            Answer::RateLimited { .. } => "429".into(),
            Answer::CredentialsRejected(s) | Answer::Permanent { status: s, .. } => s.to_string(),
            Answer::Retry { status, .. } => status.map_or("error".into(), |s| s.to_string()),
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

    pub async fn get(&self, path: &str) -> Answer {
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
                return Answer::Retry {
                    status: None,
                    reason: format!("request failed: {e}"),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        match status {
            StatusCode::OK => match response.body().limit(MAX_RESPONSE_BYTES).await {
                Ok(body) => match serde_json::from_slice(&body) {
                    Ok(value) => Answer::Found(value),
                    Err(e) => Answer::Retry {
                        status: Some(200),
                        reason: format!("200 with a body that is not JSON: {e}"),
                        retry_after: None,
                    },
                },
                Err(awc::error::PayloadError::Overflow) => Answer::Permanent {
                    status: 200,
                    reason: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                },
                Err(e) => Answer::Retry {
                    status: Some(200),
                    reason: format!("reading the response failed: {e}"),
                    retry_after: None,
                },
            },
            StatusCode::NOT_FOUND => Answer::NotFound,
            StatusCode::TOO_MANY_REQUESTS => Answer::RateLimited { retry_after },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Answer::CredentialsRejected(status.as_u16())
            }
            StatusCode::REQUEST_TIMEOUT => Answer::Retry {
                status: Some(408),
                reason: "408 request timeout".into(),
                retry_after,
            },
            s if s.is_client_error() => Answer::Permanent {
                status: s.as_u16(),
                reason: vendor_message(&mut response)
                    .await
                    .unwrap_or_else(|| s.to_string()),
            },
            s if s.is_redirection() => Answer::Retry {
                status: Some(s.as_u16()),
                reason: format!("{s} redirect not followed: check the studio's base_url"),
                retry_after,
            },
            s => Answer::Retry {
                status: Some(s.as_u16()),
                reason: format!("{s}"),
                retry_after,
            },
        }
    }
}

/// The vendor's `errorMessage` and `errorCode`, for the dead letter's reason.
async fn vendor_message<S>(response: &mut awc::ClientResponse<S>) -> Option<String>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = response.body().limit(64 * 1024).await.ok()?;
    let error: Value = serde_json::from_slice(&body).ok()?;
    let message = error.get("errorMessage").and_then(Value::as_str)?;
    let code = error.get("errorCode").and_then(Value::as_str).unwrap_or("");
    Some(format!("{} {code}: {message}", response.status()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(t: &str, entity: Option<i64>, content: Option<Value>) -> QueuedEvent {
        QueuedEvent {
            id: "u".into(),
            event_type: t.into(),
            entity_id: entity,
            occurred_at_ms: 0,
            received_at_ms: 0,
            content: content.and_then(|c| c.as_object().cloned()),
            enriched: None,
            delivered_to: vec![],
            attempts: vec![],
            failing_since_ms: None,
        }
    }

    fn path(t: &str, content: Option<Value>) -> Option<String> {
        match route(&event(t, Some(7), content)) {
            Route::Fetch { path, .. } => Some(path),
            Route::Skip { .. } => None,
        }
    }

    #[test]
    fn follows_the_vendor_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("CUSTOMER_CREATED", Some("/v1/customers/7")),
            ("CUSTOMER_CHECKIN", Some("/v1/customers/7")),
            ("CUSTOMER_ACCESS_MEDIUM_DELETED", Some("/v1/customers/7")),
            ("AGGREGATOR_MEMBER_CREATED", Some("/v1/customers/7")),
            (
                "CUSTOMER_COMMUNICATION_PREFERENCES_UPDATED",
                Some("/v1/communications/7/communication-preferences"),
            ),
            (
                "CONTRACT_IDLE_PERIOD_CREATED",
                Some("/v1/customers/7/contracts"),
            ),
            ("CLASS_BOOKING_CANCELLED", Some("/v1/classes/booking/7")),
            (
                "APPOINTMENT_BOOKING_CREATED",
                Some("/v1/appointments/booking/7"),
            ),
            ("EMPLOYEE_UPDATED", Some("/v1/employees/7")),
            (
                "STUDIO_OPENING_HOURS_UPDATED",
                Some("/v1/studios/information"),
            ),
            (
                "TAX_ADVISOR_EXPORT_CREATED",
                Some("/v1/taxadvisor/exports/7"),
            ),
            ("CUSTOMER_DELETED", None),
            ("CUSTOMER_ACCESS_DISABLED", None),
            ("EMPLOYEE_DELETED", None),
            ("DEVICE_CREATED", None),
            ("FINANCE_DEBT_COLLECTION_RUN_CREATED", None),
            ("SOMETHING_NEW", None),
        ];
        for (t, expected) in cases {
            assert_eq!(path(t, None).as_deref(), *expected, "{t}");
            if let Route::Fetch { endpoint, .. } = route(&event(t, Some(7), None)) {
                assert!(ENDPOINTS.contains(&endpoint), "{endpoint} listed");
            }
        }
        assert_eq!(
            path("CLASS_SLOT_UPDATED", Some(json!({"classId": 3}))).as_deref(),
            Some("/v1/classes/3/slots/7")
        );
        assert_eq!(path("CLASS_SLOT_UPDATED", None), None);
    }
}
