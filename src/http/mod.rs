//! The HTTP listeners.

pub mod admin;
pub mod ingest;
