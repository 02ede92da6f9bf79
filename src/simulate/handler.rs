//! The single handler behind every path: studio prefix, fault, key, method, vendor limit,
//! latency, data. Writes to customers, a test control rather than the vendor's API, leave after
//! the key for [`super::control`].
//!
//! One catch-all handler rather than one actix route per endpoint, because HEAD must answer on
//! any path, unknown studios must 404 before anything else, and every request, matched or not,
//! has to be recorded in arrival order.

use std::time::Instant;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use super::control::{self, Write};
use super::fault::Fault;
use super::record::RecordedRequest;
use super::routes::{match_path, Matched, Route};
use super::slice::Slice;
use super::state::{SimState, StudioEntry};
use super::vendor_error::{unauthorized, vendor_error};
use super::vendor_limit::Verdict;

pub(crate) async fn handle(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<SimState>,
) -> HttpResponse {
    let arrived = Instant::now();
    let _in_flight = state.enter();
    let (studio_id, path) = split_studio(req.path());
    let matched = match_path(path);
    let studio = state.studios.get(studio_id);
    let key_ok = studio.is_some_and(|s| key_matches(&req, &s.open_api_key));
    let endpoint = matched.map_or(path, |m| m.template);
    let ticket = state.log.arrive(RecordedRequest {
        studio: studio_id.to_owned(),
        method: req.method().to_string(),
        path: path.to_owned(),
        endpoint: endpoint.to_owned(),
        key_ok,
        status: 0,
        at: arrived,
    });

    let response = match (studio, Write::of(req.method(), matched)) {
        (None, _) => vendor_error(404, "unknown studio"),
        (Some(_), Some(_)) if !key_ok => unauthorized(),
        (Some(studio), Some(write)) => control::respond(write, &req, body, studio).await,
        (Some(studio), None) => {
            respond(&req, &state, studio_id, studio, matched, key_ok, arrived).await
        }
    };
    state.log.complete(ticket, response.status().as_u16());
    response
}

async fn respond(
    req: &HttpRequest,
    state: &SimState,
    studio_id: &str,
    studio: &StudioEntry,
    matched: Option<Matched>,
    key_ok: bool,
    arrived: Instant,
) -> HttpResponse {
    match state.fault(studio_id) {
        Fault::None => {}
        Fault::Status(status) => return vendor_error(status, "injected fault"),
        Fault::StatusRetryAfter(status, seconds) => {
            let mut response = vendor_error(status, "injected fault");
            if let Ok(value) = seconds.to_string().try_into() {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            return response;
        }
        Fault::Delay(delay) => state.delay(delay).await,
        Fault::Hang => state.hang().await,
    }

    // The vendor judges a request (key, method, rate rule) as it arrives; only the answer takes
    // its time. Judged after the delay, requests would reach the rate rule out of order.
    let decision = decide(req, state, studio_id, matched, key_ok, arrived);
    if !studio.latency.is_zero() {
        state.delay(studio.latency.sample()).await;
    }
    match decision {
        Decision::Answer(response) => response,
        Decision::Serve(route) => match entity(studio, route) {
            Some(body) => served(state, body),
            None => vendor_error(404, "entity not found"),
        },
        Decision::List(slice) => served(
            state,
            slice.answer(studio.customer_page(slice.after, slice.size)),
        ),
    }
}

/// What is settled on arrival: the answer itself, or what to serve once the latency passed.
/// A list is read after the latency too, so it shows the customers as they are when answered.
enum Decision {
    Answer(HttpResponse),
    Serve(Route),
    List(Slice),
}

fn decide(
    req: &HttpRequest,
    state: &SimState,
    studio_id: &str,
    matched: Option<Matched>,
    key_ok: bool,
    arrived: Instant,
) -> Decision {
    let head = req.method() == Method::HEAD;
    if !key_ok {
        // HEAD answers carry no body; the status is the whole message.
        return Decision::Answer(if head {
            HttpResponse::Unauthorized().finish()
        } else {
            unauthorized()
        });
    }
    if !head && req.method() != Method::GET {
        return Decision::Answer(vendor_error(405, "method not allowed"));
    }
    if let Some(m) = matched {
        if let Verdict::Refuse { .. } = state.check_limit(studio_id, m.template, arrived) {
            return Decision::Answer(vendor_error(429, "rate limit exceeded"));
        }
    }
    if head {
        return Decision::Answer(HttpResponse::Ok().finish());
    }
    match matched {
        None => Decision::Answer(vendor_error(404, "no such endpoint")),
        Some(Matched { route: None, .. }) => {
            Decision::Answer(vendor_error(400, "id must be an integer"))
        }
        Some(Matched {
            route: Some(Route::CustomerList),
            ..
        }) => match Slice::parse(req.query_string()) {
            Ok(slice) => Decision::List(slice),
            Err(reason) => Decision::Answer(vendor_error(400, reason)),
        },
        Some(Matched {
            route: Some(route), ..
        }) => Decision::Serve(route),
    }
}

/// The 200 answer, stamped with `servedSeq` now, after the latency, if the simulator stamps.
fn served(state: &SimState, mut body: serde_json::Value) -> HttpResponse {
    if let serde_json::Value::Object(fields) = &mut body {
        if let Some(seq) = state.next_stamp() {
            fields.insert("servedSeq".to_owned(), seq.into());
        }
    }
    HttpResponse::Ok().json(body)
}

fn entity(studio: &StudioEntry, route: Route) -> Option<serde_json::Value> {
    let data = &studio.data;
    match route {
        // Answered as a list by `Decision::List`; never served as one entity.
        Route::CustomerList => None,
        Route::Customer(id) => studio.customer(id),
        // A deleted customer's data is no longer fetchable, whatever it is.
        Route::CommunicationPreferences(id) if !studio.customer_exists(id) => None,
        Route::Contracts(id) if !studio.customer_exists(id) => None,
        Route::CommunicationPreferences(id) => data.communication_preferences(id),
        Route::Contracts(id) => data.contracts(id),
        Route::ClassBooking(id) => data.class_booking(id),
        Route::ClassSlot { class_id, slot_id } => data.class_slot(class_id, slot_id),
        Route::AppointmentBooking(id) => data.appointment_booking(id),
        Route::Employee(id) => data.employee(id),
        Route::StudioInformation => Some(data.studio_information()),
        Route::TaxAdvisorExport(id) => data.tax_advisor_export(id),
    }
}

/// `/berlin-mitte/v1/customers/1` -> (`berlin-mitte`, `/v1/customers/1`).
fn split_studio(full: &str) -> (&str, &str) {
    let trimmed = full.strip_prefix('/').unwrap_or(full);
    match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    }
}

/// Compares without an early exit, so the simulator does not teach timing attacks by example.
fn key_matches(req: &HttpRequest, expected: &str) -> bool {
    let Some(given) = req.headers().get("x-api-key") else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::split_studio;

    #[test]
    fn splits_the_studio_prefix() {
        assert_eq!(
            split_studio("/berlin-mitte/v1/customers/1"),
            ("berlin-mitte", "/v1/customers/1")
        );
        assert_eq!(split_studio("/berlin-mitte"), ("berlin-mitte", ""));
        assert_eq!(split_studio("/"), ("", ""));
    }
}
