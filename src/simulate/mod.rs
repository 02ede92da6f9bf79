//! A stand-in PerfectGym Next: Open API with generated data and a webhook sender.

pub mod data;
mod names;
pub mod studio;
pub mod vendor_limit;

pub use data::DataSet;
pub use studio::{SimStudio, StudioSpecError};
pub use vendor_limit::{VendorLimit, Verdict};
