//! `POST /api/backup?to=DIR`: a copy of the store, taken while webhooks keep arriving (see
//! `store::backup`). DIR is on the relay's machine and must be new or empty.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::admin::{error, AdminState};
use crate::store::StoreError;

#[derive(Deserialize)]
pub struct BackupQuery {
    to: std::path::PathBuf,
}

pub async fn backup(
    query: Result<web::Query<BackupQuery>, actix_web::Error>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let Ok(query) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "to must name the backup's directory: ?to=/var/backups/gymrelay-2026-12-04",
        );
    };
    let store = state.store.clone();
    let to = query.into_inner().to;
    match web::block(move || store.backup_to(&to)).await {
        Ok(Ok(report)) => {
            tracing::info!(path = %report.path.display(), seconds = report.seconds, bytes = report.bytes_on_disk, "store backed up");
            HttpResponse::Ok().json(report)
        }
        Ok(Err(e @ StoreError::Open { .. })) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
