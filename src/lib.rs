//! gymrelay: receives PerfectGym Next webhooks for many studios, stores them durably, enriches
//! each event from the studio's Open API within its rate limit and hands it to the partner's sinks.

pub mod app;
pub mod backoff;
pub mod config;
pub mod demo;
pub mod event;
pub mod http;
pub mod openapi;
pub mod ratelimit;
pub mod registry;
pub mod simulate;
pub mod sink;
pub mod store;
pub mod studio;
pub mod tenant;

pub use app::Relay;
pub use config::Config;
