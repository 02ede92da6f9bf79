//! How long webhooks could not reach the relay, for `[reconcile] after_downtime`. Two kinds of
//! outage count. The relay not running: a heartbeat in the store, written while webhooks can
//! get in, is read at start. The relay running but unreachable for the vendor: storage below
//! its free-space floor (webhooks get 503) or an expired TLS certificate (the vendor's client
//! refuses it). Either way the vendor gives up on a webhook after its last resend, so when
//! webhooks can get in again after at least `after_downtime`, the studios that ask for it are
//! reconciled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::disk_space::DiskSpace;
use crate::event::now_millis;
use crate::reconcile::Trigger;
use crate::store::{Queued, Store};
use crate::studios::Studios;
use crate::tls::ServedCertificate;

/// How often the heartbeat is written. The downtime measured after a stop can be this much
/// too long (the time between the last beat and the stop); a sweep too many only costs
/// requests.
pub const BEAT_EVERY: Duration = Duration::from_secs(30);

/// How often a running relay looks whether webhooks can get in; outages while it runs are
/// measured to this precision.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Longer than this between two looks, and the relay was not answering (the vendor waits 5 s).
const PAUSED_AFTER: Duration = Duration::from_secs(10);
const PAUSED: &str = "the relay was suspended (or its machine was)";

/// What keeps webhooks out of a running relay.
pub struct Reachability {
    pub disk: Arc<DiskSpace>,
    pub certificate: Arc<ServedCertificate>,
    /// Cleared when the relay stops taking webhooks, at the start of a stop.
    pub accepting: Arc<AtomicBool>,
    /// The outage under way as the watch last saw it.
    outage: Mutex<Option<Outage>>,
}

/// An outage under way: since the last moment webhooks could get in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub since_ms: Option<i64>,
    pub cause: String,
}

impl Reachability {
    pub fn new(
        disk: Arc<DiskSpace>,
        certificate: Arc<ServedCertificate>,
        accepting: Arc<AtomicBool>,
    ) -> Reachability {
        Reachability {
            disk,
            certificate,
            accepting,
            outage: Mutex::new(None),
        }
    }

    /// The outage the watch counts now (for `after_downtime`), None while webhooks get in.
    pub fn outage(&self) -> Option<Outage> {
        crate::lock::lock(&self.outage).clone()
    }

    /// Why webhooks cannot get in at `now_ms`; empty while they can.
    pub fn problems(&self, now_ms: i64) -> Vec<String> {
        let stopping = (!self.accepting.load(Ordering::SeqCst))
            .then(|| "the relay is stopping: webhooks get 503".to_string());
        stopping
            .into_iter()
            .chain(self.disk.problem())
            .chain(self.certificate.problem(now_ms))
            .collect()
    }
}

/// The outage bookkeeping, apart from clocks and the store.
#[derive(Debug)]
struct OutageClock {
    /// The last moment webhooks could get in; None before the first start.
    last_open_ms: Option<i64>,
    /// Why they cannot now; None while they can.
    cause: Option<String>,
}

/// An outage that has just ended.
#[derive(Debug, PartialEq)]
struct Ended {
    lasted: Duration,
    cause: String,
}

impl OutageClock {
    /// At start: the time since the heartbeat counts as an outage until the first look finds
    /// webhooks able to get in.
    fn after_start(heartbeat_ms: Option<i64>) -> OutageClock {
        OutageClock {
            last_open_ms: heartbeat_ms,
            cause: Some("the relay was not running".into()),
        }
    }

    fn look(&mut self, problem: Option<String>, now_ms: i64) -> Option<Ended> {
        if let Some(problem) = problem {
            self.cause.get_or_insert(problem);
            return None;
        }
        let cause = self.cause.take();
        let since = self.last_open_ms.replace(now_ms)?;
        let lasted = Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0));
        // Looks far apart with nothing wrong in between: the process or its machine was
        // suspended (SIGSTOP, a paused VM), and answered no webhook meanwhile.
        let cause = cause.or_else(|| (lasted > PAUSED_AFTER).then(|| PAUSED.to_string()))?;
        Some(Ended { lasted, cause })
    }

    fn is_open(&self) -> bool {
        self.cause.is_none()
    }

    fn outage(&self) -> Option<Outage> {
        self.cause.as_ref().map(|cause| Outage {
            since_ms: self.last_open_ms,
            cause: cause.clone(),
        })
    }
}

/// Looks every [`LOOK_EVERY`] whether webhooks can get in: writes the heartbeat every
/// [`BEAT_EVERY`] while they can, and starts the sweeps `after_downtime` asks for when an
/// outage (the relay's own downtime included) ends. The first look is at once, before any new
/// beat overwrites the one from before the start.
pub fn spawn_watch(
    store: Store,
    studios: Arc<Studios>,
    reachability: Arc<Reachability>,
) -> JoinHandle<()> {
    let heartbeat = store.reconcile().last_heartbeat().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the heartbeat: no sweep for the downtime before this start");
        None
    });
    let mut clock = OutageClock::after_start(heartbeat);
    actix_web::rt::spawn(async move {
        let mut looks = actix_web::rt::time::interval(LOOK_EVERY);
        let mut beaten_ms: Option<i64> = None;
        loop {
            looks.tick().await;
            let now_ms = now_millis();
            let problem = reachability.problems(now_ms).into_iter().next();
            if let Some(ended) = clock.look(problem, now_ms) {
                sweep_after_outage(&store, &studios, &ended, now_ms);
            }
            *crate::lock::lock(&reachability.outage) = clock.outage();
            let beat_due =
                beaten_ms.is_none_or(|last| now_ms - last >= BEAT_EVERY.as_millis() as i64);
            if clock.is_open() && beat_due {
                beat(&store, now_ms);
                beaten_ms = Some(now_ms);
            }
        }
    })
}

/// The beat at the start of a clean stop, unless webhooks could not get in: that outage goes
/// on until the next start. Called before webhooks are refused; from then on the watch sees the
/// relay stopping and writes no later beat.
pub fn beat_at_stop(store: &Store, reachability: &Reachability) {
    let now_ms = now_millis();
    if reachability.problems(now_ms).is_empty() {
        beat(store, now_ms);
    }
}

fn beat(store: &Store, now_ms: i64) {
    if let Err(e) = store.reconcile().beat(now_ms) {
        tracing::warn!(error = %e, "cannot write the heartbeat");
    }
}

/// Starts a sweep for every studio whose `after_downtime` the outage reached.
fn sweep_after_outage(store: &Store, studios: &Studios, ended: &Ended, now_ms: i64) {
    let down_secs = ended.lasted.as_secs();
    tracing::info!(down_secs, cause = %ended.cause, "webhooks can reach the relay again");
    for handle in studios.registry().studios() {
        let Some(threshold) = handle.tenant.reconcile.after_downtime else {
            continue;
        };
        if ended.lasted < threshold {
            continue;
        }
        match store
            .reconcile()
            .start_or_queue(&handle.tenant.id, Trigger::Downtime, now_ms)
        {
            Ok(Queued::Started) => {
                tracing::info!(studio = %handle.tenant.id, down_secs, cause = %ended.cause, "webhooks could not reach the relay for longer than after_downtime: reconcile sweep started");
                handle.wake.reconcile();
            }
            // The sweep under way fetched its earlier pages before the outage.
            Ok(Queued::After) => {
                tracing::info!(studio = %handle.tenant.id, down_secs, cause = %ended.cause, "webhooks could not reach the relay for longer than after_downtime: reconcile sweep to start when the one under way ends");
                handle.wake.reconcile();
            }
            Ok(Queued::Already) => {}
            Err(e) => {
                tracing::error!(studio = %handle.tenant.id, error = %e, "cannot start a reconcile sweep")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "storage is nearly full";

    #[test]
    fn a_first_start_is_no_outage() {
        let mut clock = OutageClock::after_start(None);
        assert_eq!(clock.look(None, 1_000), None);
        assert!(clock.is_open());
    }

    #[test]
    fn the_downtime_before_a_start_ends_at_the_first_open_look() {
        let mut clock = OutageClock::after_start(Some(1_000));
        assert!(!clock.is_open(), "no beat before the first look");
        let ended = clock.look(None, 61_000).expect("an outage ended");
        assert_eq!(ended.lasted, Duration::from_secs(60));
        assert_eq!(ended.cause, "the relay was not running");
        assert_eq!(clock.look(None, 62_000), None, "it ends once");
    }

    #[test]
    fn looks_far_apart_are_an_outage_too() {
        let mut clock = OutageClock::after_start(None);
        clock.look(None, 1_000);
        assert_eq!(clock.look(None, 2_000), None, "a look a second later");
        let ended = clock
            .look(None, 602_000)
            .expect("ten minutes without a look");
        assert_eq!(ended.lasted, Duration::from_secs(600));
        assert_eq!(ended.cause, PAUSED);
        assert!(clock.is_open());
    }

    #[test]
    fn a_start_with_webhooks_kept_out_counts_until_they_get_in() {
        let mut clock = OutageClock::after_start(Some(1_000));
        assert_eq!(clock.look(Some(FULL.into()), 61_000), None);
        let ended = clock.look(None, 121_000).expect("an outage ended");
        assert_eq!(ended.lasted, Duration::from_secs(120));
        assert_eq!(
            ended.cause, "the relay was not running",
            "the first cause is kept"
        );
    }

    #[test]
    fn an_outage_while_running_lasts_from_the_last_open_look() {
        let mut clock = OutageClock::after_start(None);
        clock.look(None, 1_000);
        clock.look(None, 2_000);
        assert_eq!(clock.look(Some(FULL.into()), 3_000), None);
        assert!(!clock.is_open(), "no beat while webhooks are kept out");
        assert_eq!(clock.look(Some("certificate".into()), 500_000), None);
        let ended = clock.look(None, 1_802_000).expect("an outage ended");
        assert_eq!(ended.lasted, Duration::from_secs(1_800));
        assert_eq!(ended.cause, FULL);
    }
}
