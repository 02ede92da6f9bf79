//! `POST /api/studios/{studio}/erase?customer=ID`: removes what the relay keeps of one member
//! of a studio, for an erasure request under the GDPR.
//!
//! What the relay keeps of a member: dead letters of the member's events (ids and types, since
//! Open API answers are never stored), the recent-activity list, and the answers the studio's
//! worker holds in memory for events not yet delivered. Events still waiting stay, and are
//! delivered with a fresh answer (or `not_found` once the vendor has erased the member too).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::admin::{error, AdminState};
use crate::route::is_about_a_customer;
use crate::tenant::StudioId;

#[derive(Deserialize)]
pub struct EraseQuery {
    customer: i64,
}

pub async fn erase(
    studio: web::Path<String>,
    query: web::Query<EraseQuery>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let Ok(studio) = StudioId::parse(&studio) else {
        return error(StatusCode::BAD_REQUEST, "not a studio id");
    };
    let customer = query.customer;
    let (dead_letters, pending) = {
        let store = state.store.clone();
        let studio = studio.clone();
        let erased = web::block(move || {
            let removed = store.erase_dead_letters(&studio, customer, is_about_a_customer)?;
            let pending = store.pending_about(&studio, customer, is_about_a_customer)?;
            Ok::<_, crate::store::StoreError>((removed, pending))
        })
        .await;
        match erased {
            Ok(Ok(counts)) => counts,
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    };
    let activity = state.activity.forget(studio.as_str(), |e| {
        e.entity_id == Some(customer) && is_about_a_customer(&e.event_type)
    });
    // The worker drops the answers it holds and reads its inbox again: the member's waiting
    // events are then fetched anew.
    if let Some(handle) = state.studios.registry().get(&studio) {
        handle.events_replayed();
    }
    // Logged without the member's id: the counts and the studio say what was done.
    tracing::info!(%studio, dead_letters, pending, activity, "a member's data was erased");
    HttpResponse::Ok().json(json!({
        "studio": studio.as_str(),
        "customer": customer,
        "removed": {"dead_letters": dead_letters, "recent_activity": activity},
        "pending_events": pending,
        "stored_answers": 0,
    }))
}
