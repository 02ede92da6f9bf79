//! The operator status page: one HTML file, one stylesheet and one script, compiled into the
//! binary. The page carries no data and no secret, so it is served without the token; its
//! script asks `/api/*` with the bearer token the operator types in.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

const HTML: &str = include_str!("status_page/index.html");
const CSS: &str = include_str!("status_page/app.css");
const JS: &str = include_str!("status_page/app.js");

/// Only our own files may run, style or be fetched, and the page may not be framed: any text
/// from the API that slipped into markup would stay inert.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Asset paths are relative in the HTML, so the page also works behind a path prefix.
    cfg.route("/", web::get().to(page))
        .route("/status", web::get().to(page))
        .route("/status/app.css", web::get().to(stylesheet))
        .route("/status/app.js", web::get().to(script));
}

async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", HTML)
}

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Assets change with the binary; revalidating keeps an upgraded relay's page current.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
