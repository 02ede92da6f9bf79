//! Error answers in the vendor's shape, so the relay's error parsing is exercised for real.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

/// `{"errorMessage", "errorCode", "traceId"}` with a fresh trace id, as PerfectGym Next answers.
pub(crate) fn vendor_error(status: u16, message: &str) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(json!({
        "errorMessage": message,
        "errorCode": error_code(status),
        "traceId": uuid::Uuid::new_v4().to_string(),
    }))
}

/// The 401 for a missing or wrong `x-api-key`.
pub(crate) fn unauthorized() -> HttpResponse {
    vendor_error(401, "invalid or missing x-api-key")
}

fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "VALIDATION_ERROR",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        429 => "TOO_MANY_REQUESTS",
        503 => "SERVICE_UNAVAILABLE",
        504 => "GATEWAY_TIMEOUT",
        _ if status.is_client_error() => "BAD_REQUEST",
        _ => "INTERNAL_SERVER_ERROR",
    }
}
