//! The studio's side of the Open API: its client, its per-endpoint budget and holds, and how
//! many requests are outstanding. Every request passes through [`Enricher::send`], one at a
//! time on the studio's thread, so the budget counts each exactly once, in-flight ones
//! included; answers then come back concurrently.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use super::report::Report;
use crate::entity_selection::EntitySelection;
use crate::event::{Enrichment, EnrichmentResult, EnrichmentStatus};
use crate::failure::{self, Failure, Next};
use crate::openapi::{Answer, OpenApiClient, Reply, MAX_LIST_RESPONSE_BYTES, MAX_RESPONSE_BYTES};
use crate::ratelimit::{Budget, WINDOW};
use crate::route::{Endpoint, Request};
use crate::status::{EndpointUse, StudioState};

/// A request's answer, as the worker receives it, with when the request was sent.
pub type Fetched = (Request, Instant, Reply);

/// The longest a 429's `Retry-After` may hold an endpoint, like every other `Retry-After`
/// (see `Backoff`): a server's typo must not hold a studio for years, nor overflow a clock.
const MAX_HOLD: Duration = Duration::from_secs(3600);

/// Whether a request may go now.
pub enum Go {
    Send(LocalBoxFuture<'static, Fetched>),
    /// Not before this instant (budget, a hold, a retry delay).
    Later(Instant),
    /// As many requests are outstanding as the studio allows.
    Full,
}

/// What an answer means for the events waiting for it.
pub enum Outcome {
    Answer(EnrichmentResult),
    /// Nothing is wrong with the events: ask again when the hold ends.
    Again,
    /// `attempt` failures of this request in a row.
    Failed {
        failure: Failure,
        attempt: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct CredentialsHold {
    since: Instant,
    until: Instant,
}

pub struct Enricher {
    client: Rc<OpenApiClient>,
    /// Owned by the actor, so a reconfigure or pause keeps what was used and held.
    budget: Rc<RefCell<Budget>>,
    limit: u32,
    max_in_flight: usize,
    in_flight: usize,
    /// A rejected key holds every request for a while.
    credentials_hold: Option<CredentialsHold>,
    rejections: u32,
    /// Whether the studio's state shows an Open API problem.
    troubled: bool,
    /// Requests that failed: how often in a row, and when they may go again.
    retries: HashMap<Request, (u32, Instant)>,
    /// Since when a request has waited for each endpoint's budget, for the wait metric.
    waiting_since: HashMap<Endpoint, Instant>,
    /// The fields the studio keeps of each answer, applied as the answer arrives.
    selection: EntitySelection,
    report: Rc<Report>,
}

impl Enricher {
    pub fn new(
        client: OpenApiClient,
        budget: Rc<RefCell<Budget>>,
        limit: u32,
        max_in_flight: u32,
        selection: EntitySelection,
        report: Rc<Report>,
    ) -> Enricher {
        Enricher {
            selection,
            client: Rc::new(client),
            budget,
            limit,
            max_in_flight: max_in_flight.max(1) as usize,
            in_flight: 0,
            credentials_hold: None,
            rejections: 0,
            troubled: false,
            retries: HashMap::new(),
            waiting_since: HashMap::new(),
            report,
        }
    }

    /// Sends `request` if nothing stops it now, counting it against its endpoint's budget.
    pub fn send(&mut self, request: &Request, now: Instant) -> Go {
        if self.in_flight >= self.max_in_flight {
            return Go::Full;
        }
        if let Some(hold) = self.credentials_hold.filter(|hold| hold.until > now) {
            return Go::Later(hold.until);
        }
        if let Some((_, at)) = self.retries.get(request).filter(|(_, at)| *at > now) {
            return Go::Later(*at);
        }
        let endpoint = request.endpoint;
        let acquired = {
            let mut budget = self.budget.borrow_mut();
            let limiter = budget.endpoint(endpoint.template());
            let acquired = limiter.try_acquire(now);
            self.report.budget(
                endpoint.template(),
                EndpointUse {
                    used: limiter.used(now),
                    limit: self.limit,
                    held_for_seconds: limiter.held_until(now).map(|u| (u - now).as_secs()),
                },
            );
            acquired
        };
        if let Err(at) = acquired {
            self.waiting_since.entry(endpoint).or_insert(now);
            return Go::Later(at);
        }
        if let Some(since) = self.waiting_since.remove(&endpoint) {
            self.report.waited(endpoint.template(), now - since);
        }
        self.in_flight += 1;
        let client = Rc::clone(&self.client);
        let request = request.clone();
        Go::Send(Box::pin(async move {
            let max_bytes = match request.endpoint {
                Endpoint::CustomerList => MAX_LIST_RESPONSE_BYTES,
                _ => MAX_RESPONSE_BYTES,
            };
            let reply = client.get(&request.path, max_bytes).await;
            (request, now, reply)
        }))
    }

    /// No event waits for `request` any more: a later event for the same entity starts afresh.
    pub fn forget_failures(&mut self, request: &Request) {
        self.retries.remove(request);
    }

    /// Takes an answer back: holds what the vendor asks to hold, counts failures.
    pub fn receive(
        &mut self,
        request: &Request,
        sent_at: Instant,
        reply: Reply,
        now: Instant,
    ) -> Outcome {
        self.in_flight -= 1;
        let endpoint = request.endpoint.template();
        self.report
            .open_api_request(endpoint, &reply.status_label());
        let status = match reply.outcome {
            // A key may have the scope for the entities events need and not for the list: that
            // ends the sweep, and must not hold the studio's live requests.
            Err(Failure::Credentials { reason }) if request.endpoint == Endpoint::CustomerList => {
                return Outcome::Failed {
                    failure: Failure::permanent(format!(
                        "{reason}: the key may lack the scope to list customers"
                    )),
                    attempt: 1,
                }
            }
            Ok(Answer::Found(entity)) => return self.answer(request, sent_at, Some(entity)),
            Ok(Answer::NotFound) => return self.answer(request, sent_at, None),
            Err(failure) => failure,
        };
        match status {
            Failure::RateLimited { retry_after, .. } => {
                // The vendor refuses for a minute; a longer Retry-After wins.
                let hold = retry_after.map_or(WINDOW, |r| r.clamp(WINDOW, MAX_HOLD));
                tracing::warn!(
                    endpoint,
                    hold_secs = hold.as_secs(),
                    "Open API answered 429: holding this endpoint"
                );
                self.report.held(endpoint);
                let mut budget = self.budget.borrow_mut();
                budget.endpoint(endpoint).hold(now + hold);
                Outcome::Again
            }
            failure @ Failure::Credentials { .. } => {
                // Requests sent together are refused together: one hold for all of them, which
                // grows only when a request sent after it ended is refused again.
                if self
                    .credentials_hold
                    .is_some_and(|hold| hold.since > sent_at)
                {
                    return Outcome::Again;
                }
                self.rejections += 1;
                let hold =
                    match failure::next(&failure, self.rejections, Duration::ZERO, hold_all()) {
                        Next::Hold(hold) | Next::RetryAfter(hold) => hold,
                        Next::DeadLetter => WINDOW,
                    };
                tracing::error!(reason = %failure, retry_in = ?hold, "Open API rejected the studio's key: events are kept until it is fixed");
                self.report.open_api_trouble(Some((
                    StudioState::CredentialsRejected,
                    failure.to_string(),
                )));
                self.credentials_hold = Some(CredentialsHold {
                    since: now,
                    until: now + hold,
                });
                self.troubled = true;
                Outcome::Again
            }
            failure => {
                let attempt = self.retries.get(request).map_or(0, |(n, _)| *n) + 1;
                let failure = failure.context(request);
                if let Next::RetryAfter(delay) =
                    failure::next(&failure, attempt, Duration::ZERO, hold_all())
                {
                    tracing::warn!(%request, reason = %failure, attempt, retry_in = ?delay, "Open API request failed");
                    self.report
                        .open_api_trouble(Some((StudioState::Retrying, failure.to_string())));
                    self.retries.insert(request.clone(), (attempt, now + delay));
                    self.troubled = true;
                }
                Outcome::Failed { failure, attempt }
            }
        }
    }

    fn answer(
        &mut self,
        request: &Request,
        sent_at: Instant,
        entity: Option<serde_json::Value>,
    ) -> Outcome {
        self.retries.remove(request);
        // Only a request sent after the key was refused says the key works now; one sent before
        // may have gone to an endpoint the key has the scope for.
        if self
            .credentials_hold
            .is_none_or(|hold| sent_at >= hold.since)
        {
            self.rejections = 0;
            self.credentials_hold = None;
        }
        // Only this side's own trouble is cleared: a sink may be failing meanwhile.
        if std::mem::take(&mut self.troubled) {
            self.report.open_api_trouble(None);
        }
        let status = match entity {
            Some(_) => EnrichmentStatus::Fetched,
            None => EnrichmentStatus::NotFound,
        };
        let entity = entity.map(|e| self.selection.apply(request.endpoint, e));
        Outcome::Answer(EnrichmentResult {
            enrichment: Enrichment {
                status,
                request: Some(request.to_string()),
                reason: None,
            },
            entity,
        })
    }
}

/// For asking the policy how long to wait, with no event's age to count down.
fn hold_all() -> Duration {
    Duration::MAX
}
