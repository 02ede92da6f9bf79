//! Black-box tests: the real relay on 127.0.0.1 with a temp data dir and the simulated Open API.

mod acme;
mod admin;
mod allocator;
mod backup;
mod browser;
mod budget;
mod check;
mod crash;
mod demo;
mod disk_full;
mod enrichment;
mod helpers;
mod ingest;
mod isolation;
mod limits;
mod logs;
mod nats;
mod personal_data;
mod pipeline;
mod reconcile;
mod reload;
mod robustness;
mod sinks;
mod status_page;
mod sync_failure;
mod tls;
