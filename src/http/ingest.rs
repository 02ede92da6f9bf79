//! `POST /webhook`: find the studio by key, validate, store durably, acknowledge, wake the
//! studio. No Open API call happens here: the vendor gives us 5 s and asks us not to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::activity::{Activity, RecentEvent};
use crate::event::{now_millis, Notification};
use crate::http::limits::{read_body, AuthFailures, BodyError, InFlight, StudioRates};
use crate::metrics::Metrics;
use crate::store::{Intake, Store};
use crate::studios::Studios;

pub struct IngestState {
    pub studios: Arc<Studios>,
    pub activity: Arc<Activity>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// False once shutdown has begun.
    pub accepting: Arc<AtomicBool>,
    pub in_flight: InFlight,
    pub rates: StudioRates,
    pub auth_failures: AuthFailures,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub disk: Arc<crate::disk_space::DiskSpace>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhook", web::post().to(receive))
        .route("/webhook/{rest:.*}", web::post().to(receive));
}

async fn receive(
    req: HttpRequest,
    payload: Payload,
    state: web::Data<IngestState>,
) -> HttpResponse {
    let started = Instant::now();
    let mut seen = Seen::default();
    let (outcome, response) = handle(&req, payload, &state, &mut seen).await;
    let studio = seen.studio.as_deref().unwrap_or("unknown");
    state
        .metrics
        .webhooks
        .with_label_values(&[studio, outcome])
        .inc();
    let latency = started.elapsed();
    state.metrics.ack_seconds.observe(latency.as_secs_f64());
    if let Some(studio) = &seen.studio {
        state.activity.record(RecentEvent {
            at_ms: now_millis(),
            studio: studio.clone(),
            kind: "webhook",
            event_type: seen.event_type.clone().unwrap_or_default(),
            entity_id: seen.entity_id,
            outcome: outcome.to_string(),
            latency_ms: latency.as_secs_f64() * 1000.0,
        });
    }
    tracing::debug!(
        studio,
        uuid = seen.uuid.as_deref().unwrap_or(""),
        r#type = seen.event_type.as_deref().unwrap_or(""),
        outcome,
        latency_ms = latency.as_secs_f64() * 1000.0,
        "webhook"
    );
    response
}

/// What is known about a request, for its log line and metrics.
#[derive(Default)]
struct Seen {
    studio: Option<String>,
    uuid: Option<String>,
    event_type: Option<String>,
    entity_id: Option<i64>,
}

/// Returns the outcome label and the answer.
async fn handle(
    req: &HttpRequest,
    payload: Payload,
    state: &IngestState,
    seen: &mut Seen,
) -> (&'static str, HttpResponse) {
    if !state.accepting.load(Ordering::SeqCst) {
        let answer = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down, please retry",
        );
        return ("unavailable", answer);
    }
    // Refused before anything is written: sled must never meet a full disk mid-write.
    if state.disk.is_low() {
        let answer = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is nearly full, please retry",
        );
        return ("unavailable", answer);
    }
    let Some(_in_flight) = state.in_flight.enter() else {
        let answer = error(StatusCode::SERVICE_UNAVAILABLE, "busy, please retry");
        return ("busy", answer);
    };
    // Cloned out of the snapshot so a reload during the durable write is harmless.
    let studio = req.headers().get("x-api-key").and_then(|key| {
        state
            .studios
            .registry()
            .by_webhook_key(key.as_bytes())
            .cloned()
    });
    let Some(studio) = studio else {
        // The same answer for a missing, unknown or removed key: it must not reveal which exist.
        let source = state.auth_failures.label(req.peer_addr().map(|a| a.ip()));
        state
            .metrics
            .unauthorized_sources
            .with_label_values(&[&source])
            .inc();
        let answer = error(StatusCode::UNAUTHORIZED, "missing or unknown x-api-key");
        return ("unauthorized", answer);
    };
    let id = studio.tenant.id.to_string();
    seen.studio = Some(id.clone());
    if !state.rates.allows(&studio.tenant.id) {
        let answer = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many webhooks for this key, please retry",
        );
        return ("rate_limited", answer);
    }
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = match read_body(payload, declared, state.max_body_bytes, state.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let answer = error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            return ("too_large", answer);
        }
        Err(BodyError::TimedOut) => {
            let answer = error(StatusCode::REQUEST_TIMEOUT, "body not received in time");
            return ("timed_out", answer);
        }
        Err(BodyError::Broken) => {
            return ("invalid", error(StatusCode::BAD_REQUEST, "unreadable body"));
        }
    };
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => return ("invalid", error(StatusCode::BAD_REQUEST, &e.0)),
    };
    let uuid = notification.uuid.clone();
    seen.uuid = Some(uuid.clone());
    seen.event_type = notification.payload.first().map(|p| p.event_type.clone());
    seen.entity_id = notification.entity_id;
    let now = now_millis();
    let events: Vec<_> = notification
        .into_events(now)
        .into_iter()
        .filter(|e| studio.tenant.events.allows(&e.event_type))
        .collect();
    let filtered = events.is_empty();
    let outcome = match state
        .store
        .intake(&studio.tenant.id, &uuid, &events, now)
        .await
    {
        Ok(Intake::Accepted) if filtered => "filtered",
        Ok(Intake::Accepted) => {
            studio.status.event_received(now);
            studio.event_stored();
            "accepted"
        }
        Ok(Intake::Duplicate) => "duplicate",
        Err(e) => {
            // The events may be queued even though the disk did not confirm them; the studio
            // should not wait for the next webhook to find them.
            studio.event_stored();
            tracing::error!(studio = %id, %uuid, error = %e, "cannot store a webhook");
            let answer = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, please retry",
            );
            return ("unavailable", answer);
        }
    };
    let answer = HttpResponse::Ok().json(json!({"status": outcome, "uuid": uuid}));
    (outcome, answer)
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}
