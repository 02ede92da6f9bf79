//! `POST /api/studios/{studio}/reconcile[?emit_all=true]` starts a reconcile sweep of the
//! studio's customers; `GET` on the same path shows the one under way and the last one that
//! ended. The sweep itself runs in the studio's worker.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::admin::{error, loaded_studio, AdminState};
use crate::event::now_millis;
use crate::reconcile::{Sweep, SweepRecord, Trigger};
use crate::tenant::StudioId;

#[derive(Deserialize)]
pub struct ReconcileQuery {
    #[serde(default)]
    emit_all: bool,
}

pub async fn start(
    studio: web::Path<String>,
    query: Result<web::Query<ReconcileQuery>, actix_web::Error>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let Ok(query) = query else {
        return error(StatusCode::BAD_REQUEST, "emit_all must be true or false");
    };
    let Some((studio, handle)) = loaded_studio(&studio, &state) else {
        return error(StatusCode::NOT_FOUND, "no such studio");
    };
    let emit_all = query.emit_all;
    let store = state.store.clone();
    let id = studio.clone();
    let started = web::block(move || {
        store.reconcile().start(&id, |record| {
            Sweep::new(
                Trigger::Manual,
                emit_all,
                !record.has_baseline(),
                now_millis(),
            )
        })
    })
    .await;
    match started {
        Ok(Ok((record, true))) => {
            handle.wake.reconcile();
            let baseline = record.running.as_ref().is_some_and(|s| s.baseline);
            tracing::info!(%studio, emit_all, baseline, "reconcile sweep requested");
            HttpResponse::Accepted().json(answer(&studio, "started", &record))
        }
        Ok(Ok((record, false))) => HttpResponse::Conflict().json(json!({
            "error": "a reconcile sweep of this studio is already under way",
            "reconcile": record,
        })),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub async fn show(studio: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    let Some((studio, _)) = loaded_studio(&studio, &state) else {
        return error(StatusCode::NOT_FOUND, "no such studio");
    };
    match state.store.reconcile().record(&studio) {
        Ok(record) => {
            let shown = if record.running.is_some() {
                "running"
            } else {
                "idle"
            };
            HttpResponse::Ok().json(answer(&studio, shown, &record))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn answer(studio: &StudioId, state: &str, record: &SweepRecord) -> serde_json::Value {
    json!({
        "studio": studio.as_str(),
        "state": state,
        "running": record.running,
        "last": record.last,
        "failure": record.failure,
    })
}
