//! One way to take the relay's mutexes.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex` even if a thread panicked while holding it. Everything the relay keeps behind
/// a mutex (counts, sets, lists, status snapshots) is changed by single calls that leave it
/// whole, so serving it on beats failing every later caller.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
