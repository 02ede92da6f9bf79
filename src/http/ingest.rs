//! `POST /webhook`: find the studio by key, validate, store durably, acknowledge, wake the
//! studio. No Open API call happens here: the vendor gives us 5 s and asks us not to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::event::{now_millis, Notification};
use crate::registry::Registry;
use crate::store::{Intake, Store};
use crate::studio::Wake;

pub struct IngestState {
    pub registry: Arc<Registry>,
    pub store: Store,
    /// False once shutdown has begun.
    pub accepting: Arc<AtomicBool>,
}

pub fn configure(max_body_bytes: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::PayloadConfig::new(max_body_bytes))
            .route("/webhook", web::post().to(receive))
            .route("/webhook/{rest:.*}", web::post().to(receive));
    }
}

async fn receive(req: HttpRequest, body: Bytes, state: web::Data<IngestState>) -> HttpResponse {
    if !state.accepting.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down, please retry",
        );
    }
    let studio = req
        .headers()
        .get("x-api-key")
        .and_then(|key| state.registry.by_webhook_key(key.as_bytes()));
    let Some(studio) = studio else {
        // The same answer for a missing, unknown or removed key: it must not reveal which exist.
        return error(StatusCode::UNAUTHORIZED, "missing or unknown x-api-key");
    };
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
    };
    let uuid = notification.uuid.clone();
    let events: Vec<_> = notification
        .into_events(now_millis())
        .into_iter()
        .filter(|e| studio.tenant.events.allows(&e.event_type))
        .collect();
    let filtered = events.is_empty();
    match state
        .store
        .intake(&studio.tenant.id, &uuid, &events, now_millis())
        .await
    {
        Ok(Intake::Accepted) => {
            if !filtered {
                studio.actor.do_send(Wake);
            }
            let status = if filtered { "filtered" } else { "accepted" };
            tracing::debug!(studio = %studio.tenant.id, %uuid, status, "webhook");
            HttpResponse::Ok().json(json!({"status": status, "uuid": uuid}))
        }
        Ok(Intake::Duplicate) => {
            tracing::debug!(studio = %studio.tenant.id, %uuid, status = "duplicate", "webhook");
            HttpResponse::Ok().json(json!({"status": "duplicate", "uuid": uuid}))
        }
        Err(e) => {
            tracing::error!(studio = %studio.tenant.id, %uuid, error = %e, "cannot store a webhook");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, please retry",
            )
        }
    }
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}
