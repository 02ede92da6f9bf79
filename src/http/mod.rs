//! The HTTP listeners.

pub mod admin;
mod backup;
mod erase;
pub mod ingest;
pub mod limits;
mod reconcile;
pub mod status_page;
