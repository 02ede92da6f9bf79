//! Everything the Open API handlers share: built once, handed to every worker as app data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::customers::{CustomerChanges, Page};
use super::data::DataSet;
use super::fault::Fault;
use super::latency::Latency;
use super::record::RequestLog;
use super::studio::SimStudio;
use super::vendor_limit::{VendorLimit, Verdict};

/// One studio as the handlers need it.
pub(crate) struct StudioEntry {
    pub open_api_key: String,
    pub data: DataSet,
    pub latency: Latency,
    /// Customers as changed by a test or the control routes; customer answers read them, not
    /// `data`.
    customers: Mutex<CustomerChanges>,
}

impl StudioEntry {
    fn new(studio: SimStudio) -> Self {
        let data = DataSet::new(studio.id, studio.seed).with_customers(studio.customers);
        Self {
            customers: Mutex::new(CustomerChanges::new(&data)),
            open_api_key: studio.open_api_key,
            data,
            latency: studio.latency,
        }
    }

    /// Reads or changes the studio's customers.
    fn customers<T>(&self, f: impl FnOnce(&mut CustomerChanges, &DataSet) -> T) -> T {
        let mut changes = self
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut changes, &self.data)
    }

    pub(crate) fn customer(&self, id: i64) -> Option<Value> {
        self.customers(|changes, data| changes.customer(data, id))
    }

    pub(crate) fn customer_exists(&self, id: i64) -> bool {
        self.customers(|changes, data| changes.exists(data, id))
    }

    pub(crate) fn customer_page(&self, after: i64, size: usize) -> Page {
        self.customers(|changes, data| changes.page(data, after, size))
    }

    // Every change to customers goes through these three, from `OpenApiSim`'s methods and from
    // the HTTP routes of `control` alike. Update and add answer the record they left, taken
    // under the same lock, so that a caller that shows it cannot be overtaken by another change
    // between the write and a second look-up.

    /// The new record, or `None` if there is no such customer.
    pub(crate) fn update_customer(&self, id: i64, fields: &Map<String, Value>) -> Option<Value> {
        self.customers(|changes, data| changes.update(data, id, fields))
    }

    /// The new customer's id and record.
    pub(crate) fn add_customer(&self, fields: &Map<String, Value>) -> (i64, Value) {
        self.customers(|changes, data| changes.add(data, fields))
    }

    /// `false` if there is no such customer.
    pub(crate) fn delete_customer(&self, id: i64) -> bool {
        self.customers(|changes, data| changes.delete(data, id))
    }
}

pub(crate) struct SimState {
    pub studios: HashMap<String, StudioEntry>,
    pub log: RequestLog,
    faults: Mutex<HashMap<String, Fault>>,
    limit: Option<Mutex<VendorLimit>>,
    /// The last `servedSeq` handed out, when answers are stamped.
    stamps: Option<AtomicU64>,
    /// Flips to true once `stop` begins, to cut delays short.
    stopping: watch::Sender<bool>,
    /// Requests inside the handler, hanging ones included.
    in_flight: AtomicUsize,
    /// Requests held by `Fault::Hang`; waiting for them would never end.
    hanging: AtomicUsize,
}

impl SimState {
    pub(crate) fn new(
        studios: Vec<SimStudio>,
        limit: Option<VendorLimit>,
        record_requests: bool,
        stamp_answers: bool,
    ) -> Self {
        let studios = studios
            .into_iter()
            .map(|s| (s.id.clone(), StudioEntry::new(s)))
            .collect();
        Self {
            studios,
            log: RequestLog::new(record_requests),
            faults: Mutex::new(HashMap::new()),
            limit: limit.map(Mutex::new),
            stamps: stamp_answers.then(|| AtomicU64::new(0)),
            stopping: watch::Sender::new(false),
            in_flight: AtomicUsize::new(0),
            hanging: AtomicUsize::new(0),
        }
    }

    pub(crate) fn fault(&self, studio: &str) -> Fault {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(studio)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn set_fault(&self, studio: &str, fault: Fault) {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        match fault {
            Fault::None => faults.remove(studio),
            fault => faults.insert(studio.to_owned(), fault),
        };
    }

    /// The vendor's verdict, or `Allow` when the simulator runs without a limit.
    pub(crate) fn check_limit(&self, studio: &str, endpoint: &str, now: Instant) -> Verdict {
        match &self.limit {
            Some(limit) => limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .check(studio, endpoint, now),
            None => Verdict::Allow,
        }
    }

    /// Sleeps for `delay`, or less if the server starts stopping meanwhile.
    pub(crate) async fn delay(&self, delay: Duration) {
        let mut stopping = self.stopping.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
    }

    /// The next `servedSeq`, or `None` when answers are not stamped.
    pub(crate) fn next_stamp(&self) -> Option<u64> {
        self.stamps
            .as_ref()
            .map(|last| last.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Holds the request until its future is dropped, which happens when the server stops.
    pub(crate) async fn hang(&self) {
        let _held = Counted::enter(&self.hanging);
        std::future::pending::<()>().await;
    }

    pub(crate) fn begin_stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Marks a request as being handled until the guard is dropped.
    pub(crate) fn enter(&self) -> Counted<'_> {
        Counted::enter(&self.in_flight)
    }

    /// Requests that will still get an answer: in the handler and not hanging.
    pub(crate) fn answering(&self) -> usize {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        in_flight.saturating_sub(self.hanging.load(Ordering::SeqCst))
    }
}

/// Counts something for as long as the guard lives, however the future holding it ends.
pub(crate) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
