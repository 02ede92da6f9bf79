//! A stand-in PerfectGym Next: Open API with generated data and a webhook sender.
//!
//! Used by `gymrelay simulate`, `gymrelay demo`, the black-box tests and the benches, so that the
//! relay can be exercised end to end, vendor rate rule and failures included, on loopback only.

mod cli;
mod control;
mod customers;
pub mod data;
mod events;
mod fault;
mod handler;
mod latency;
mod names;
mod open_api;
mod record;
mod routes;
mod sender;
mod slice;
mod state;
pub mod studio;
mod vendor_error;
pub mod vendor_limit;

#[cfg(test)]
mod tests;

pub use cli::{run, SimulateArgs};
pub use data::DataSet;
pub use events::{notification, random_event};
pub use fault::Fault;
pub use latency::{Latency, LatencyError};
pub use open_api::{OpenApiSim, SimOptions};
pub use record::RecordedRequest;
pub use sender::{send_events, SendPlan, SendReport};
pub use studio::{SimStudio, StudioSpecError};
pub use vendor_limit::{VendorLimit, Verdict};
