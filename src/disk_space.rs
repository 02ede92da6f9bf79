//! The free-space floor of the storage's file system (`storage.min_free_bytes`). Below it, new
//! webhooks are refused with 503 (the vendor resends) before sled can run out of space in the
//! middle of a write; delivery goes on, since it frees space; above it again, webhooks are
//! taken by themselves. Like Elasticsearch's flood-stage watermark.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The floor when none is configured: 256 MiB, or 2 % of a smaller file system.
const DEFAULT_FLOOR: u64 = 256 * 1024 * 1024;

/// How often free space is read: often enough that a flood cannot cross a sensible floor in
/// between (a second of intake is a few MiB).
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

pub struct DiskSpace {
    path: PathBuf,
    configured: Option<u64>,
    free: AtomicU64,
    floor: AtomicU64,
    low: AtomicBool,
    /// Whether the last reading failed, so a failing `statvfs` is logged once, not twice a second.
    unreadable: AtomicBool,
}

impl DiskSpace {
    /// Reads free space once before returning, so the first webhook is judged on a reading.
    pub fn watch(path: PathBuf, min_free_bytes: Option<u64>) -> Arc<DiskSpace> {
        let disk = Arc::new(DiskSpace {
            path,
            configured: min_free_bytes,
            free: AtomicU64::new(u64::MAX),
            floor: AtomicU64::new(0),
            low: AtomicBool::new(false),
            unreadable: AtomicBool::new(false),
        });
        disk.check();
        disk
    }

    /// Reads free space and decides; logs a change either way. A failed reading changes
    /// nothing: refusing every webhook because `statvfs` failed would be worse.
    pub fn check(&self) {
        let reading = fs2::statvfs(&self.path).map(|s| (s.available_space(), s.total_space()));
        let (free, total) = match reading {
            Ok(reading) => reading,
            Err(e) => {
                if !self.unreadable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read free space; the floor is not enforced until it can be read");
                }
                return;
            }
        };
        if self.unreadable.swap(false, Ordering::Relaxed) {
            tracing::info!(path = %self.path.display(), "free space can be read again");
        }
        let floor = self.configured.unwrap_or(DEFAULT_FLOOR.min(total / 50));
        self.free.store(free, Ordering::Relaxed);
        self.floor.store(floor, Ordering::Relaxed);
        let low = free < floor;
        if self.low.swap(low, Ordering::SeqCst) != low {
            if low {
                tracing::error!(free_bytes = free, floor_bytes = floor, "storage is nearly full: webhooks get 503 until space returns; delivery goes on");
            } else {
                tracing::info!(
                    free_bytes = free,
                    floor_bytes = floor,
                    "storage has room again: webhooks are accepted"
                );
            }
        }
    }

    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::SeqCst)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn floor_bytes(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// Why webhooks are refused, for `/readyz` and the status page; None while they are not.
    pub fn problem(&self) -> Option<String> {
        self.is_low().then(|| {
            format!(
                "storage has {} MiB free, below storage.min_free_bytes ({} MiB): webhooks get 503 until space returns",
                self.free_bytes() >> 20,
                self.floor_bytes() >> 20
            )
        })
    }
}
