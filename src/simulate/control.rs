//! Changing a studio's customers over HTTP, so that a person running `gymrelay simulate` can
//! change a studio while the relay is down and watch reconcile catch up:
//! `PATCH /v1/customers/{id}` (200 with the new record), `POST /v1/customers` (201 with the new
//! record) and `DELETE /v1/customers/{id}` (204), each with the studio's Open API key.
//!
//! These are a test control, not the vendor's behaviour (the relay never writes to the Open
//! API), so they do exactly what [`super::OpenApiSim::update_customer`] and its siblings do and
//! skip everything that models the vendor: they count against no rate limit (a demo's writes
//! must not eat the budget the relay's sweep is measured against, nor lock it out), wait for no
//! latency and are not failed by an injected fault. Only the key is checked, as on every path.

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::routes::{Matched, Route, CUSTOMER_TEMPLATE};
use super::state::StudioEntry;
use super::vendor_error::vendor_error;

/// The largest body read; a customer record is about 1 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A change to a studio's customers that a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Update(i64),
    Add,
    Delete(i64),
    /// PATCH or DELETE on `/v1/customers/{id}` with an id that is not a number.
    BadId,
}

impl Write {
    /// The change a request asks for; `None` for every request the Open API itself answers,
    /// including other methods on these paths (which keep their 405).
    pub(crate) fn of(method: &Method, matched: Option<Matched>) -> Option<Write> {
        let matched = matched?;
        match (method.as_str(), matched.route) {
            ("PATCH", Some(Route::Customer(id))) => Some(Write::Update(id)),
            ("DELETE", Some(Route::Customer(id))) => Some(Write::Delete(id)),
            ("POST", Some(Route::CustomerList)) => Some(Write::Add),
            ("PATCH" | "DELETE", None) if matched.template == CUSTOMER_TEMPLATE => {
                Some(Write::BadId)
            }
            _ => None,
        }
    }
}

/// Answers a write whose key was already accepted. The body is read only here, so nothing is
/// read from a client that has not shown the key.
pub(crate) async fn respond(
    write: Write,
    req: &HttpRequest,
    body: web::Payload,
    studio: &StudioEntry,
) -> HttpResponse {
    match write {
        Write::BadId => vendor_error(400, "id must be an integer"),
        Write::Delete(id) if studio.delete_customer(id) => HttpResponse::NoContent().finish(),
        Write::Delete(_) => vendor_error(404, "entity not found"),
        Write::Update(id) => match fields(body).await {
            Err(refused) => refused,
            Ok(fields) => match studio.update_customer(id, &fields) {
                Some(record) => HttpResponse::Ok().json(record),
                None => vendor_error(404, "entity not found"),
            },
        },
        Write::Add => match fields(body).await {
            Err(refused) => refused,
            Ok(fields) => {
                let (id, record) = studio.add_customer(&fields);
                HttpResponse::Created()
                    .insert_header((header::LOCATION, format!("{}/{id}", req.path())))
                    .json(record)
            }
        },
    }
}

/// The body as the fields to set. Any content type is taken, so that `curl -d '{...}'` works
/// without a header; the body itself must be a JSON object.
async fn fields(body: web::Payload) -> Result<Map<String, Value>, HttpResponse> {
    let bytes = match body.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return Err(vendor_error(400, "the body could not be read")),
        Err(_) => return Err(vendor_error(413, "the body is larger than 64 KiB")),
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(vendor_error(400, "the body must be a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::routes::match_path;

    fn write(method: Method, path: &str) -> Option<Write> {
        Write::of(&method, match_path(path))
    }

    #[test]
    fn only_the_three_customer_writes_are_controls() {
        assert_eq!(
            write(Method::PATCH, "/v1/customers/7"),
            Some(Write::Update(7))
        );
        assert_eq!(
            write(Method::DELETE, "/v1/customers/7"),
            Some(Write::Delete(7))
        );
        assert_eq!(write(Method::POST, "/v1/customers"), Some(Write::Add));
        assert_eq!(write(Method::PATCH, "/v1/customers/x"), Some(Write::BadId));
        assert_eq!(write(Method::DELETE, "/v1/customers/"), Some(Write::BadId));
        for (method, path) in [
            (Method::GET, "/v1/customers/7"),
            (Method::HEAD, "/v1/customers"),
            (Method::PUT, "/v1/customers/7"),
            (Method::POST, "/v1/customers/7"),
            (Method::PATCH, "/v1/customers"),
            (Method::DELETE, "/v1/customers"),
            (Method::POST, "/v1/customers/x"),
            (Method::DELETE, "/v1/customers/7/contracts"),
            (Method::PATCH, "/v1/employees/7"),
            (Method::PATCH, "/v1/nothing"),
        ] {
            assert_eq!(write(method.clone(), path), None, "{method} {path}");
        }
    }
}
