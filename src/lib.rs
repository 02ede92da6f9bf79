//! gymrelay: receives PerfectGym Next webhooks for many studios, stores them durably, enriches
//! each event from the studio's Open API within its rate limit and hands it to the partner's sinks.

pub mod activity;
pub mod admin_client;
mod allocator;
pub mod app;
pub mod backoff;
pub mod backup_cli;
pub mod check;
pub mod config;
pub mod dead_letters_cli;
pub mod demo;
pub mod disk_space;
pub mod downtime;
pub mod entity_selection;
pub mod erase_cli;
pub mod event;
pub mod failure;
pub mod http;
mod lock;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod ratelimit;
pub mod reconcile;
pub mod reconcile_cli;
pub mod redact;
pub mod redacted_url;
pub mod registry;
pub mod reload;
pub mod restore_cli;
pub mod route;
pub mod simulate;
pub mod sink;
pub mod status;
pub mod store;
pub mod studio;
pub mod studios;
pub mod tenant;
pub mod tls;

pub use app::Relay;
pub use config::Config;
