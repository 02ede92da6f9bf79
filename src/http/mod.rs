//! The HTTP listeners.

pub mod ingest;
