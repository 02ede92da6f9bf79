//! `POST /api/studios/{studio}/erase?customer=ID`: removes what the relay keeps of one member
//! of a studio, for an erasure request under the GDPR.
//!
//! What the relay keeps of a member: dead letters of the member's events (ids and types, since
//! Open API answers are never stored), the recent-activity list, the customer's reconcile
//! fingerprint (a digest of their record as last delivered), and the answers the studio's
//! worker holds in memory for events not yet delivered. The worker is started afresh first, so
//! nothing it fetched before the erasure is delivered or buried after it; events still waiting
//! stay, and are delivered with a fresh answer (or `not_found` once the vendor has erased the
//! member too).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::admin::{error, AdminState};
use crate::route::is_about_customer;
use crate::tenant::StudioId;

#[derive(Deserialize)]
pub struct EraseQuery {
    customer: i64,
}

pub async fn erase(
    studio: web::Path<String>,
    query: Result<web::Query<EraseQuery>, actix_web::Error>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    let Ok(studio) = StudioId::parse(&studio) else {
        return error(StatusCode::BAD_REQUEST, "not a studio id");
    };
    let Ok(query) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "customer must be the member's customer id, an integer: ?customer=7893459",
        );
    };
    let customer = query.customer;
    let handle = state.studios.registry().get(&studio).cloned();
    let known = handle.is_some()
        || state.store.pending_count(&studio) > 0
        || state.store.dead_letter_count(&studio) > 0;
    if !known {
        // A typo must not look like a completed erasure.
        return error(
            StatusCode::NOT_FOUND,
            "no such studio, and nothing stored for it",
        );
    }
    if let Some(handle) = &handle {
        if let Err(e) = handle.actor.send(crate::studio::Restart).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the studio did not answer: {e}"),
            );
        }
    }
    let (dead_letters, pending, fingerprint) = {
        let store = state.store.clone();
        let studio = studio.clone();
        let erased = web::block(move || {
            let removed = store.erase_dead_letters(&studio, customer)?;
            let pending = store.pending_about(&studio, customer)?;
            // A digest of the member's record, kept to tell changes apart in reconcile sweeps.
            let fingerprint = store.reconcile().forget(&studio, customer)?;
            Ok::<_, crate::store::StoreError>((removed, pending, fingerprint))
        })
        .await;
        match erased {
            Ok(Ok(counts)) => counts,
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    };
    let activity = state.activity.forget(studio.as_str(), |e| {
        is_about_customer(&e.event_type, e.entity_id, customer)
    });
    // Logged without the member's id: the counts and the studio say what was done.
    tracing::info!(%studio, dead_letters, pending, activity, "a member's data was erased");
    HttpResponse::Ok().json(json!({
        "studio": studio.as_str(),
        "customer": customer,
        "removed": {
            "dead_letters": dead_letters,
            "recent_activity": activity,
            "reconcile_fingerprint": fingerprint,
        },
        "pending_events": pending,
    }))
}
