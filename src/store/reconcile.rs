//! What reconcile keeps: each studio's customer fingerprints from its last sweep, its sweep
//! record (the sweep under way and the last one that ended), and the relay's heartbeat.
//!
//! Everything lives in one tree, so a page's fingerprints and the sweep's new position are
//! written in one atomic batch: a crash leaves either both or neither (separate inserts are not
//! atomic in sled 0.34). They are not synced per page: a crash may take the sweep back a few
//! pages, which only repeats events with the same ids.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{abort, transaction_result, StoreError};
use crate::reconcile::{Fingerprint, Sweep, SweepRecord, Trigger};
use crate::tenant::StudioId;

const TREE: &str = "reconcile-studio-customer_fingerprint";
const FINGERPRINT: u8 = b'f';
const RECORD: u8 = b's';
const HEARTBEAT: &[u8] = b"h";

#[derive(Clone)]
pub struct ReconcileStore {
    tree: sled::Tree,
}

/// A fingerprint to store, or a customer to forget.
pub type FingerprintUpdate = (i64, Option<Fingerprint>);

impl ReconcileStore {
    pub fn open(db: &sled::Db) -> Result<ReconcileStore, StoreError> {
        Ok(ReconcileStore {
            tree: db.open_tree(TREE)?,
        })
    }

    pub fn record(&self, studio: &StudioId) -> Result<SweepRecord, StoreError> {
        decode(self.tree.get(record_key(studio))?.as_deref())
    }

    /// Starts `sweep` unless one is under way; returns the record as it now is, and whether
    /// this call started it.
    pub fn start(
        &self,
        studio: &StudioId,
        sweep: impl Fn(&SweepRecord) -> Sweep,
    ) -> Result<(SweepRecord, bool), StoreError> {
        self.change_record(studio, |record| {
            if record.running.is_some() {
                return false;
            }
            let sweep = sweep(record);
            record.begin(sweep);
            true
        })
    }

    /// Starts a sweep for `trigger`, or, while one is under way, has one start as soon as it
    /// ends: the sweep under way fetched its earlier pages before whatever asks for this one
    /// (an outage), so it cannot stand in for it. One queued sweep covers any number of asks.
    pub fn start_or_queue(
        &self,
        studio: &StudioId,
        trigger: Trigger,
        now_ms: i64,
    ) -> Result<Queued, StoreError> {
        let (_, outcome) = self.change_record(studio, |record| {
            if record.running.is_none() {
                let baseline = !record.has_baseline();
                record.begin(Sweep::new(trigger, false, baseline, now_ms));
                Queued::Started
            } else if record.again.is_none() {
                record.again = Some(trigger);
                Queued::After
            } else {
                Queued::Already
            }
        })?;
        Ok(outcome)
    }

    /// Saves the record as the worker has it (a sweep that failed for good, or a resumed one);
    /// returns it as saved (see [`ReconcileStore::commit_page`]).
    pub fn save_record(
        &self,
        studio: &StudioId,
        record: &SweepRecord,
        now_ms: i64,
    ) -> Result<SweepRecord, StoreError> {
        self.commit_page(studio, &[], record, now_ms)
    }

    /// Reads, changes and writes the record as one transaction, so no other writer of it comes
    /// in between.
    fn change_record<T>(
        &self,
        studio: &StudioId,
        change: impl Fn(&mut SweepRecord) -> T,
    ) -> Result<(SweepRecord, T), StoreError> {
        let key = record_key(studio);
        let result = self.tree.transaction(|tx| {
            let mut record = decode(tx.get(&key)?.as_deref()).map_err(abort)?;
            let outcome = change(&mut record);
            tx.insert(key.as_slice(), encode(&record).map_err(abort)?)?;
            Ok((record, outcome))
        });
        transaction_result(result)
    }

    /// The fingerprints stored for the customers in `range`.
    pub fn fingerprints(
        &self,
        studio: &StudioId,
        range: (Bound<i64>, Bound<i64>),
    ) -> Result<BTreeMap<i64, Fingerprint>, StoreError> {
        let bound = |b: Bound<i64>, unbounded: Vec<u8>| match b {
            Bound::Included(id) => Bound::Included(fingerprint_key(studio, id)),
            Bound::Excluded(id) => Bound::Excluded(fingerprint_key(studio, id)),
            Bound::Unbounded => Bound::Included(unbounded),
        };
        let prefix = fingerprint_prefix(studio);
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 9]);
        let range = (bound(range.0, prefix.clone()), bound(range.1, end));
        let mut found = BTreeMap::new();
        for item in self.tree.range(range) {
            let (key, value) = item?;
            let (Some(id), Some(fingerprint)) = (
                customer_of(&key[prefix.len()..]),
                Fingerprint::from_slice(&value),
            ) else {
                return Err(StoreError::Corrupt("reconcile fingerprint".into()));
            };
            found.insert(id, fingerprint);
        }
        Ok(found)
    }

    /// Writes a page's fingerprints and the record that moves the sweep past it, together, and
    /// returns the record as written: a sweep queued meanwhile (see
    /// [`ReconcileStore::start_or_queue`]) is kept, and started at once if this record ends
    /// the sweep under way.
    pub fn commit_page(
        &self,
        studio: &StudioId,
        updates: &[FingerprintUpdate],
        record: &SweepRecord,
        now_ms: i64,
    ) -> Result<SweepRecord, StoreError> {
        let key = record_key(studio);
        let batch = fingerprint_batch(studio, updates);
        let result = self.tree.transaction(|tx| {
            let stored = decode(tx.get(&key)?.as_deref()).map_err(abort)?;
            let mut record = record.clone();
            record.again = stored.again;
            if record.running.is_none() {
                if let Some(trigger) = record.again.take() {
                    let baseline = !record.has_baseline();
                    record.begin(Sweep::new(trigger, false, baseline, now_ms));
                }
            }
            tx.apply_batch(&batch)?;
            tx.insert(key.as_slice(), encode(&record).map_err(abort)?)?;
            Ok(record)
        });
        transaction_result(result)
    }

    /// Records what live events delivered, so the next sweep does not report it again.
    pub fn note_delivered(
        &self,
        studio: &StudioId,
        updates: &[FingerprintUpdate],
    ) -> Result<(), StoreError> {
        self.tree.apply_batch(fingerprint_batch(studio, updates))?;
        Ok(())
    }

    /// Forgets a customer's fingerprint (erasure); whether there was one.
    pub fn forget(&self, studio: &StudioId, customer: i64) -> Result<bool, StoreError> {
        Ok(self
            .tree
            .remove(fingerprint_key(studio, customer))?
            .is_some())
    }

    /// How many customers have a fingerprint.
    #[cfg(test)]
    pub fn customers(&self, studio: &StudioId) -> usize {
        self.tree.scan_prefix(fingerprint_prefix(studio)).count()
    }

    /// When the relay last said it was running (milliseconds since the epoch).
    pub fn last_heartbeat(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tree
            .get(HEARTBEAT)?
            .and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes)))
    }

    pub fn beat(&self, now_ms: i64) -> Result<(), StoreError> {
        self.tree.insert(HEARTBEAT, &now_ms.to_be_bytes())?;
        Ok(())
    }
}

fn fingerprint_batch(studio: &StudioId, updates: &[FingerprintUpdate]) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (customer, fingerprint) in updates {
        let key = fingerprint_key(studio, *customer);
        match fingerprint {
            Some(fingerprint) => batch.insert(key, &fingerprint.0[..]),
            None => batch.remove(key),
        }
    }
    batch
}

/// How [`ReconcileStore::start_or_queue`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Started,
    /// Starts when the sweep under way ends.
    After,
    /// One was queued already.
    Already,
}

fn decode(bytes: Option<&[u8]>) -> Result<SweepRecord, StoreError> {
    match bytes {
        None => Ok(SweepRecord::default()),
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("reconcile record: {e}"))),
    }
}

fn encode(record: &SweepRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(format!("reconcile record: {e}")))
}

fn record_key(studio: &StudioId) -> Vec<u8> {
    let mut key = vec![RECORD];
    key.extend_from_slice(studio.as_str().as_bytes());
    key
}

fn fingerprint_prefix(studio: &StudioId) -> Vec<u8> {
    let mut key = vec![FINGERPRINT];
    key.extend_from_slice(studio.as_str().as_bytes());
    key.push(0);
    key
}

/// Ids sort as numbers: big-endian with the sign bit flipped.
fn fingerprint_key(studio: &StudioId, customer: i64) -> Vec<u8> {
    let mut key = fingerprint_prefix(studio);
    key.extend_from_slice(&((customer as u64) ^ (1 << 63)).to_be_bytes());
    key
}

fn customer_of(suffix: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = suffix.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ReconcileStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, ReconcileStore::open(&db).unwrap())
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 16])
    }

    #[test]
    fn ranges_follow_numeric_order_and_stay_within_the_studio() {
        let (_dir, store) = store();
        let berlin = StudioId::parse("berlin").unwrap();
        let updates: Vec<FingerprintUpdate> = [-5, 1, 2, 300, i64::MAX]
            .iter()
            .map(|&id| (id, Some(fp(1))))
            .collect();
        store.note_delivered(&berlin, &updates).unwrap();
        store
            .note_delivered(&StudioId::parse("berlin2").unwrap(), &[(3, Some(fp(2)))])
            .unwrap();
        let ids = |range| -> Vec<i64> {
            store
                .fingerprints(&berlin, range)
                .unwrap()
                .into_keys()
                .collect()
        };
        assert_eq!(
            ids((Bound::Unbounded, Bound::Unbounded)),
            [-5, 1, 2, 300, i64::MAX]
        );
        assert_eq!(ids((Bound::Excluded(1), Bound::Included(300))), [2, 300]);
        assert_eq!(ids((Bound::Excluded(300), Bound::Unbounded)), [i64::MAX]);
        assert_eq!(store.customers(&berlin), 5);
        assert!(store.forget(&berlin, 2).unwrap());
        assert!(!store.forget(&berlin, 2).unwrap());
    }

    #[test]
    fn a_sweep_starts_once_and_a_page_moves_it_with_its_fingerprints() {
        let (_dir, store) = store();
        let berlin = StudioId::parse("berlin").unwrap();
        let (record, started) = store
            .start(&berlin, |r| {
                Sweep::new(Trigger::Manual, false, !r.has_baseline(), 1)
            })
            .unwrap();
        assert!(started && record.running.as_ref().unwrap().baseline);
        let (_, again) = store
            .start(&berlin, |_| Sweep::new(Trigger::Manual, true, false, 2))
            .unwrap();
        assert!(!again);
        let mut record = store.record(&berlin).unwrap();
        record.running.as_mut().unwrap().after = Some(10);
        let saved = store
            .commit_page(&berlin, &[(4, Some(fp(4))), (9, None)], &record, 3)
            .unwrap();
        assert_eq!(saved, record);
        assert_eq!(store.record(&berlin).unwrap(), record);
        assert_eq!(store.customers(&berlin), 1);
        record.finish(5);
        store.save_record(&berlin, &record, 5).unwrap();
        assert!(store.record(&berlin).unwrap().has_baseline());
    }

    #[test]
    fn a_sweep_asked_for_while_one_runs_starts_when_it_ends() {
        let (_dir, store) = store();
        let berlin = StudioId::parse("berlin").unwrap();
        assert_eq!(
            store.start_or_queue(&berlin, Trigger::Downtime, 1).unwrap(),
            Queued::Started
        );
        // The worker's copy, read before the sweep was asked for again.
        let mut worker = store.record(&berlin).unwrap();
        assert_eq!(
            store.start_or_queue(&berlin, Trigger::Downtime, 2).unwrap(),
            Queued::After
        );
        assert_eq!(
            store.start_or_queue(&berlin, Trigger::Downtime, 3).unwrap(),
            Queued::Already
        );
        worker.running.as_mut().unwrap().after = Some(100);
        let saved = store.commit_page(&berlin, &[], &worker, 4).unwrap();
        assert_eq!(
            saved.again,
            Some(Trigger::Downtime),
            "a page keeps it queued"
        );
        assert_eq!(saved.running.as_ref().unwrap().after, Some(100));

        worker.finish(5);
        let saved = store.commit_page(&berlin, &[], &worker, 5).unwrap();
        let next = saved.running.as_ref().expect("the queued sweep started");
        assert_eq!(
            (next.trigger, next.after, next.started_ms),
            (Trigger::Downtime, None, 5)
        );
        assert!(!next.baseline, "the sweep that ended is its baseline");
        assert_eq!(saved.again, None);
        assert_eq!(store.record(&berlin).unwrap(), saved);
    }

    #[test]
    fn keeps_the_heartbeat() {
        let (_dir, store) = store();
        assert_eq!(store.last_heartbeat().unwrap(), None);
        store.beat(1234).unwrap();
        assert_eq!(store.last_heartbeat().unwrap(), Some(1234));
    }
}
