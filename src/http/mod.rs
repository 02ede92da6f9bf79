//! The HTTP listeners.

pub mod admin;
pub mod ingest;
pub mod limits;
pub mod status_page;
