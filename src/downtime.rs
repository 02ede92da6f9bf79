//! How long the relay was down, for `[reconcile] after_downtime`: a heartbeat in the store,
//! written every [`BEAT_EVERY`] and at a clean stop, is read once at start before the first
//! new one.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::event::now_millis;
use crate::reconcile::{Sweep, Trigger};
use crate::registry::Registry;
use crate::store::Store;

/// The downtime measured can be this much too long (the time between the last beat and the
/// stop); a sweep too many only costs requests.
pub const BEAT_EVERY: Duration = Duration::from_secs(30);

/// Reads the last heartbeat and starts a sweep for every studio whose `after_downtime` the
/// downtime reached; returns the downtime (None on a first start).
pub fn sweep_after_downtime(store: &Store, registry: &Registry) -> Option<Duration> {
    let now_ms = now_millis();
    let last = match store.reconcile().last_heartbeat() {
        Ok(last) => last?,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the heartbeat: no downtime sweep");
            return None;
        }
    };
    let down_for = Duration::from_millis(u64::try_from(now_ms - last).unwrap_or(0));
    for handle in registry.studios() {
        let Some(threshold) = handle.tenant.reconcile.after_downtime else {
            continue;
        };
        if down_for < threshold {
            continue;
        }
        let started = store.reconcile().start(&handle.tenant.id, |record| {
            Sweep::new(Trigger::Downtime, false, !record.has_baseline(), now_ms)
        });
        match started {
            Ok((_, true)) => {
                tracing::info!(studio = %handle.tenant.id, down_secs = down_for.as_secs(), "the relay was down longer than after_downtime: reconcile sweep started");
                handle.wake.reconcile();
            }
            // One under way from before the stop resumes by itself.
            Ok((_, false)) => {}
            Err(e) => {
                tracing::error!(studio = %handle.tenant.id, error = %e, "cannot start a reconcile sweep")
            }
        }
    }
    Some(down_for)
}

/// Writes the heartbeat now and every [`BEAT_EVERY`].
pub fn spawn_heartbeat(store: Store) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut interval = actix_web::rt::time::interval(BEAT_EVERY);
        loop {
            interval.tick().await;
            beat(&store);
        }
    })
}

pub fn beat(store: &Store) {
    if let Err(e) = store.reconcile().beat(now_millis()) {
        tracing::warn!(error = %e, "cannot write the heartbeat");
    }
}
