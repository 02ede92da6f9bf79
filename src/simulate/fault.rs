//! Failures the simulator can be told to produce, to exercise the relay's retry paths.

use std::time::Duration;

/// What a studio's Open API does instead of (or before) answering normally.
///
/// Applies to every endpoint of the studio, HEAD included, and is checked before the key: an
/// overloaded vendor fails whoever asks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer this status with the vendor's error JSON.
    Status(u16),
    /// As `Status`, plus `Retry-After: <seconds>`.
    StatusRetryAfter(u16, u64),
    /// Wait this long, then answer normally. Cut short when the server stops.
    Delay(Duration),
    /// Never answer; the connection is dropped when the server stops.
    Hang,
}
