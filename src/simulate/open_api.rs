//! The simulated Open API server: every studio under its own path prefix on one port.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

use super::fault::Fault;
use super::handler;
use super::record::RecordedRequest;
use super::state::{SimState, StudioEntry};
use super::studio::SimStudio;
use super::vendor_limit::VendorLimit;

/// The longest `stop` waits for requests that are being answered.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How the simulator is run, beyond its studios.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The vendor's per-endpoint allowance per window; `None` serves without limit.
    pub vendor_limit: Option<u32>,
    /// The sliding window and the lockout after a breach. The vendor uses one minute for both;
    /// tests shorten it to watch a full lockout pass.
    pub limit_window: Duration,
    /// actix worker threads. Two are plenty for loopback tests; benches may want more.
    pub workers: usize,
    /// Whether [`OpenApiSim::requests`] keeps every request (the default, for tests). A
    /// simulator that runs for long and is never asked should not: the log only grows.
    pub record_requests: bool,
    /// Adds `"servedSeq": n` to every 200 answer whose JSON body is an object, n from one
    /// counter for the whole simulator, taken when the answer is produced (after the studio's
    /// latency), so stamps rise in answer order even when a later request is answered first.
    /// Tests use it to check that what the relay kept never goes back in time.
    ///
    /// Array answers (a customer's contracts) are left as they are: there is no object to put
    /// the stamp in, and wrapping the array would change the shape the relay parses.
    pub stamp_answers: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            vendor_limit: None,
            limit_window: Duration::from_secs(60),
            workers: 2,
            record_requests: true,
            stamp_answers: false,
        }
    }
}

/// A running simulated PerfectGym Next Open API.
///
/// Must be started inside an actix system (`#[actix_rt::test]`, `#[actix_web::main]`). Dropping
/// it without `stop` leaves the server running until the system ends.
pub struct OpenApiSim {
    addr: SocketAddr,
    state: Arc<SimState>,
    handle: ServerHandle,
    server: actix_rt::task::JoinHandle<io::Result<()>>,
}

impl OpenApiSim {
    /// Binds `listen` (use 127.0.0.1:0 in tests) and serves every studio's Open API under
    /// `/{studio_id}`. `vendor_limit`: `Some(n)` applies the vendor's rule per studio and
    /// endpoint with the vendor's one-minute window; see [`OpenApiSim::start_with`] for others.
    pub async fn start(
        listen: SocketAddr,
        studios: Vec<SimStudio>,
        vendor_limit: Option<u32>,
    ) -> io::Result<OpenApiSim> {
        let options = SimOptions {
            vendor_limit,
            ..SimOptions::default()
        };
        Self::start_with(listen, studios, options).await
    }

    /// As [`OpenApiSim::start`], with every knob exposed.
    pub async fn start_with(
        listen: SocketAddr,
        studios: Vec<SimStudio>,
        options: SimOptions,
    ) -> io::Result<OpenApiSim> {
        let mut seen = HashSet::new();
        if let Some(dup) = studios.iter().find(|s| !seen.insert(s.id.as_str())) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("studio {} is listed twice", dup.id),
            ));
        }
        let limit = options
            .vendor_limit
            .map(|n| VendorLimit::new(n, options.limit_window));
        let state = Arc::new(SimState::new(
            studios,
            limit,
            options.record_requests,
            options.stamp_answers,
        ));

        let app_state = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .default_service(web::to(handler::handle))
        })
        .workers(options.workers.max(1))
        // The embedding program owns Ctrl-C; the simulator stops only through `stop`.
        .disable_signals()
        .bind(listen)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("the server bound no address"))?;
        let server = server.run();
        let handle = server.handle();
        let server = actix_rt::spawn(server);
        Ok(OpenApiSim {
            addr,
            state,
            handle,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What a studio's tenant file would hold as `open_api.base_url`.
    pub fn base_url(&self, studio_id: &str) -> String {
        format!("http://{}/{}", self.addr, studio_id)
    }

    /// Every request seen, in arrival order (none if [`SimOptions::record_requests`] is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.snapshot()
    }

    /// Applies to all endpoints of that studio until replaced; `Fault::None` clears it.
    pub fn set_fault(&self, studio_id: &str, fault: Fault) {
        self.state.set_fault(studio_id, fault);
    }

    /// Sets `fields` (a JSON object) in a customer's record, as the studio would when a member
    /// changes their address: both `GET /v1/customers/{id}` and the list answer with the new
    /// record. The `id` stays. `PATCH /{studio}/v1/customers/{id}` does the same over HTTP.
    ///
    /// # Panics
    /// If the studio is not served, the customer does not exist (or was deleted), or `fields` is
    /// not an object: a test that asks for any of these has a mistake in it.
    pub fn update_customer(&self, studio_id: &str, id: i64, fields: serde_json::Value) {
        let fields = object(fields);
        let found = self
            .studio(studio_id)
            .update_customer(id, &fields)
            .is_some();
        assert!(found, "studio {studio_id} has no customer {id}");
    }

    /// Adds a customer with the next id above every id the studio ever had, and returns that
    /// id. The record starts as a generated customer, so the fields the vendor always sends are
    /// there; `fields` (a JSON object) are set over it, except `id`. `POST
    /// /{studio}/v1/customers` does the same over HTTP.
    ///
    /// # Panics
    /// If the studio is not served or `fields` is not an object.
    pub fn add_customer(&self, studio_id: &str, fields: serde_json::Value) -> i64 {
        let fields = object(fields);
        self.studio(studio_id).add_customer(&fields).0
    }

    /// Deletes a customer: `GET /v1/customers/{id}` (and its contracts and communication
    /// preferences) answer 404 and the list leaves it out. `DELETE
    /// /{studio}/v1/customers/{id}` does the same over HTTP.
    ///
    /// # Panics
    /// If the studio is not served or the customer does not exist (or was already deleted).
    pub fn delete_customer(&self, studio_id: &str, id: i64) {
        let found = self.studio(studio_id).delete_customer(id);
        assert!(found, "studio {studio_id} has no customer {id}");
    }

    fn studio(&self, studio_id: &str) -> &StudioEntry {
        self.state
            .studios
            .get(studio_id)
            .unwrap_or_else(|| panic!("the simulator serves no studio {studio_id}"))
    }

    /// Stops the server without losing an answer: new connections are refused, delays are cut
    /// short, every request being answered gets its answer, then the remaining connections
    /// (idle keep-alives, and hanging requests, which never answer) are dropped.
    ///
    /// actix's own graceful stop is not used because it also waits for idle keep-alive
    /// connections, which a pooling client like the relay's holds open: every stop would last
    /// the whole shutdown timeout.
    pub async fn stop(self) {
        self.state.begin_stop();
        self.handle.pause().await;
        let deadline = Instant::now() + STOP_GRACE;
        while self.state.answering() > 0 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        self.handle.stop(false).await;
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "open api simulator task ended abnormally");
        }
    }
}

fn object(fields: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match fields {
        serde_json::Value::Object(fields) => fields,
        other => panic!("customer fields must be a JSON object, not {other}"),
    }
}
