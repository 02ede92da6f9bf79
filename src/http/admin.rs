//! The operator listener: health, readiness, Prometheus metrics and the admin API
//! (studios, dead letters). `/api/*` needs the bearer token from `[admin] token`.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::activity::Activity;
use crate::event::{format_millis, now_millis};
use crate::metrics::Metrics;
use crate::reconcile::SweepRecord;
use crate::registry::StudioHandle;
use crate::status::{EndpointUse, StatusSnapshot, StudioState};
use crate::store::Store;
use crate::studio::{Pause, Resume};
use crate::studios::Studios;
use crate::tenant::StudioId;

pub struct AdminState {
    pub studios: Arc<Studios>,
    pub activity: Arc<Activity>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub token: Option<SecretString>,
    pub reachability: Arc<crate::downtime::Reachability>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    super::status_page::configure(cfg);
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/api")
                .wrap(from_fn(require_token))
                .route("/studios", web::get().to(studios))
                .route("/activity", web::get().to(activity))
                .route("/studios/{studio}/minutes", web::get().to(minutes))
                .route("/reload", web::post().to(reload))
                .route("/studios/{studio}/pause", web::post().to(pause))
                .route("/studios/{studio}/resume", web::post().to(resume))
                .route("/dead-letters", web::get().to(dead_letters))
                .route("/dead-letters/{id}/replay", web::post().to(replay_one))
                .route(
                    "/studios/{studio}/dead-letters/replay",
                    web::post().to(replay_studio),
                )
                .route(
                    "/studios/{studio}/erase",
                    web::post().to(super::erase::erase),
                )
                .route(
                    "/studios/{studio}/reconcile",
                    web::post().to(super::reconcile::start),
                )
                .route(
                    "/studios/{studio}/reconcile",
                    web::get().to(super::reconcile::show),
                )
                .route("/backup", web::post().to(super::backup::backup)),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when webhooks can get in (storage above its floor, a valid certificate), storage
/// accepts a durable write and at least one studio is loaded.
async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let mut problems = state.reachability.problems(now_millis());
    if let Err(e) = state.store.sync().await {
        problems.push(e.to_string());
    }
    if state.studios.registry().is_empty() {
        problems.push(format!(
            "no studio loaded from {}",
            state.studios.dir().display()
        ));
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not ready", "problems": problems}))
    }
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let now = now_millis();
    for studio in state.studios.registry().studios() {
        let id = &studio.tenant.id;
        let label = [id.as_str()];
        let m = &state.metrics;
        m.inbox_depth
            .with_label_values(&label)
            .set(state.store.pending_count(id) as i64);
        let oldest = state.store.oldest_pending_age_ms(id, now).unwrap_or(0);
        m.inbox_oldest_seconds
            .with_label_values(&label)
            .set(oldest as f64 / 1000.0);
        m.dead_letters
            .with_label_values(&label)
            .set(state.store.dead_letter_count(id) as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

#[derive(Serialize)]
struct StudioView {
    id: String,
    name: String,
    state: StudioState,
    webhooks_last_hour: u64,
    inbox_depth: usize,
    oldest_pending_seconds: Option<f64>,
    last_event_at: Option<String>,
    dead_letters: usize,
    last_error: Option<String>,
    config_error: Option<String>,
    budget: BTreeMap<String, EndpointUse>,
    /// 429 answers per endpoint since the relay started; each held that endpoint for a minute.
    openapi_holds: BTreeMap<String, u64>,
    sinks: Vec<SinkHealth>,
    /// The reconcile sweep under way and the last one that ended, once the studio has swept.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconcile: Option<SweepRecord>,
}

/// One sink of a studio, for spotting a failing destination without reading metrics text.
#[derive(Serialize)]
struct SinkHealth {
    sink: String,
    /// Since the relay started.
    delivered: u64,
    failed: u64,
    /// The studio is retrying an event because this sink refuses it right now.
    failing: bool,
}

/// Counters are the source of truth for holds and deliveries; reading them here keeps the
/// studio actor unaware of who watches it.
fn openapi_holds(
    metrics: &Metrics,
    studio: &str,
    status: &StatusSnapshot,
) -> BTreeMap<String, u64> {
    status
        .budget
        .keys()
        .map(|endpoint| {
            let holds = metrics.openapi_holds.with_label_values(&[studio, endpoint]);
            (endpoint.clone(), holds.get())
        })
        .collect()
}

fn sink_health(
    metrics: &Metrics,
    studio: &StudioHandle,
    status: &StatusSnapshot,
) -> Vec<SinkHealth> {
    let id = studio.tenant.id.as_str();
    let count = |sink: &str, result: &str| {
        metrics
            .sink_deliveries
            .with_label_values(&[id, sink, result])
            .get()
    };
    studio
        .tenant
        .sink_keys()
        .into_iter()
        .map(|sink| {
            let failing = status.failing_sink.as_deref() == Some(sink.as_str());
            SinkHealth {
                delivered: count(&sink, "delivered"),
                failed: count(&sink, "failed"),
                failing,
                sink,
            }
        })
        .collect()
}

async fn studios(state: web::Data<AdminState>) -> HttpResponse {
    let now = now_millis();
    let registry = state.studios.registry();
    let mut views: Vec<StudioView> = registry
        .studios()
        .map(|s| {
            let id = &s.tenant.id;
            let status = s.status.snapshot();
            let openapi_holds = openapi_holds(&state.metrics, id.as_str(), &status);
            let sinks = sink_health(&state.metrics, s, &status);
            StudioView {
                id: id.to_string(),
                name: s.tenant.name.clone(),
                state: status.shown_state(),
                webhooks_last_hour: state.activity.webhooks_last_hour(id.as_str(), now),
                inbox_depth: state.store.pending_count(id),
                oldest_pending_seconds: state
                    .store
                    .oldest_pending_age_ms(id, now)
                    .map(|ms| ms as f64 / 1000.0),
                last_event_at: status.last_event_ms.map(format_millis),
                dead_letters: state.store.dead_letter_count(id),
                last_error: status.last_error,
                config_error: status.config_error,
                budget: status.budget,
                openapi_holds,
                sinks,
                reconcile: status.reconcile,
            }
        })
        .collect();
    views.sort_by(|a, b| a.id.cmp(&b.id));
    // Events on disk for studios without a tenant file are reported, never hidden.
    let orphans: Vec<_> = state
        .studios
        .not_loaded_with_pending()
        .into_iter()
        .map(|(id, pending)| json!({"id": id, "inbox_depth": pending}))
        .collect();
    let disk = &state.reachability.disk;
    let storage = json!({
        "free_bytes": disk.free_bytes(),
        "min_free_bytes": disk.floor_bytes(),
        "problem": disk.problem(),
    });
    let certificate = json!({
        "problem": state.reachability.certificate.problem(now_millis()),
    });
    let outage = state.reachability.outage().map(|o| {
        json!({
            "since": o.since_ms.map(format_millis),
            "cause": o.cause,
        })
    });
    HttpResponse::Ok().json(json!({
        "studios": views,
        "removed_with_pending_events": orphans,
        "storage": storage,
        "certificate": certificate,
        "outage": outage,
    }))
}

#[derive(Deserialize)]
struct ActivityQuery {
    limit: Option<usize>,
}

/// The most recent events across studios, newest first: ids and statuses only.
async fn activity(query: web::Query<ActivityQuery>, state: web::Data<AdminState>) -> HttpResponse {
    let events = state.activity.recent(query.limit.unwrap_or(50).min(200));
    HttpResponse::Ok().json(json!({ "events": events }))
}

/// One studio's last hour, per minute: webhooks, deliveries, acknowledgement latency.
async fn minutes(studio: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    let minutes = state.activity.minutes(&studio, now_millis());
    HttpResponse::Ok().json(json!({ "studio": studio.as_str(), "minutes": minutes }))
}

async fn reload(state: web::Data<AdminState>) -> HttpResponse {
    match state.studios.reload() {
        Ok(report) => HttpResponse::Ok().json(report),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn pause(studio: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    tell(&studio, &state, Pause, "paused")
}

async fn resume(studio: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    tell(&studio, &state, Resume, "running")
}

/// A studio that is loaded now, by the id in a request's path.
pub(super) fn loaded_studio(studio: &str, state: &AdminState) -> Option<(StudioId, StudioHandle)> {
    let studio = StudioId::parse(studio).ok()?;
    let handle = state.studios.registry().get(&studio).cloned()?;
    Some((studio, handle))
}

/// Sends a message to one studio's actor.
fn tell<M>(studio: &str, state: &AdminState, message: M, now: &str) -> HttpResponse
where
    M: actix::Message<Result = ()> + Send + 'static,
    crate::studio::StudioActor: actix::Handler<M>,
{
    match loaded_studio(studio, state) {
        Some((_, handle)) => {
            handle.actor.do_send(message);
            HttpResponse::Ok().json(json!({"studio": studio, "state": now}))
        }
        None => error(StatusCode::NOT_FOUND, "no such studio"),
    }
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    studio: Option<String>,
}

async fn dead_letters(
    query: web::Query<DeadLetterQuery>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let studio = match query.studio.as_deref().map(StudioId::parse).transpose() {
        Ok(studio) => studio,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    match state.store.dead_letters(studio.as_ref()) {
        Ok(letters) => HttpResponse::Ok().json(json!({ "dead_letters": letters })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn replay_one(id: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    match state.store.replay(&id) {
        Ok(Some(studio)) => {
            wake(&state, &studio);
            HttpResponse::Ok().json(json!({"replayed": [id.as_str()]}))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such dead letter"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn replay_studio(studio: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    let Ok(studio) = StudioId::parse(&studio) else {
        return error(StatusCode::BAD_REQUEST, "not a studio id");
    };
    let letters = match state.store.dead_letters(Some(&studio)) {
        Ok(letters) => letters,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let mut replayed = Vec::new();
    for letter in letters {
        match state.store.replay(&letter.id) {
            Ok(Some(_)) => replayed.push(letter.id),
            Ok(None) => {}
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
    wake(&state, &studio);
    HttpResponse::Ok().json(json!({ "replayed": replayed }))
}

fn wake(state: &AdminState, studio: &StudioId) {
    if let Some(handle) = state.studios.registry().get(studio) {
        handle.events_replayed();
    }
}

/// Every `/api` route needs the bearer token; checked once here, for all of them.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let denied = match req.app_data::<web::Data<AdminState>>() {
        Some(state) => deny(req.request(), state),
        None => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "admin state missing",
        )),
    };
    match denied {
        Some(denied) => Ok(req.into_response(denied).map_into_right_body()),
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

/// The refusal, unless the request carries `Authorization: Bearer <token>` (compared in
/// constant time).
fn deny(req: &HttpRequest, state: &AdminState) -> Option<HttpResponse> {
    let Some(token) = &state.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set [admin] token",
        ));
    };
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}
