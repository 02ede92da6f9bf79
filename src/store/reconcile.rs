//! What reconcile keeps: each studio's customer fingerprints from its last sweep, its sweep
//! record (the sweep under way and the last one that ended), and the relay's heartbeat.
//!
//! Everything lives in one tree, so a page's fingerprints and the sweep's new position are
//! written in one atomic batch: a crash leaves either both or neither (separate inserts are not
//! atomic in sled 0.34). They are not synced per page: a crash may take the sweep back a few
//! pages, which only repeats events with the same ids.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::StoreError;
use crate::reconcile::{Fingerprint, Sweep, SweepRecord};
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
        match self.tree.get(record_key(studio))? {
            None => Ok(SweepRecord::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("reconcile record: {e}"))),
        }
    }

    /// Starts `sweep` unless one is under way; returns the record as it now is, and whether
    /// this call started it. Atomic against every other writer of the record.
    pub fn start(
        &self,
        studio: &StudioId,
        sweep: impl Fn(&SweepRecord) -> Sweep,
    ) -> Result<(SweepRecord, bool), StoreError> {
        let key = record_key(studio);
        loop {
            let old = self.tree.get(&key)?;
            let mut record: SweepRecord = match &old {
                None => SweepRecord::default(),
                Some(bytes) => serde_json::from_slice(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("reconcile record: {e}")))?,
            };
            if record.running.is_some() {
                return Ok((record, false));
            }
            record.running = Some(sweep(&record));
            record.failure = None;
            let new = encode(&record)?;
            // Another writer changed the record meanwhile: look at it again.
            if self.tree.compare_and_swap(&key, old, Some(new))?.is_ok() {
                return Ok((record, true));
            }
        }
    }

    /// Saves the record as the worker has it (a sweep that failed for good, or a resumed one).
    pub fn save_record(&self, studio: &StudioId, record: &SweepRecord) -> Result<(), StoreError> {
        self.tree.insert(record_key(studio), encode(record)?)?;
        Ok(())
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

    /// Writes a page's fingerprints and the record that moves the sweep past it, together.
    pub fn commit_page(
        &self,
        studio: &StudioId,
        updates: &[FingerprintUpdate],
        record: &SweepRecord,
    ) -> Result<(), StoreError> {
        let mut batch = fingerprint_batch(studio, updates);
        batch.insert(record_key(studio), encode(record)?);
        self.tree.apply_batch(batch)?;
        Ok(())
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
    use crate::reconcile::Trigger;

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
        store
            .commit_page(&berlin, &[(4, Some(fp(4))), (9, None)], &record)
            .unwrap();
        assert_eq!(store.record(&berlin).unwrap(), record);
        assert_eq!(store.customers(&berlin), 1);
        record.finish(5);
        store.save_record(&berlin, &record).unwrap();
        assert!(store.record(&berlin).unwrap().has_baseline());
    }

    #[test]
    fn keeps_the_heartbeat() {
        let (_dir, store) = store();
        assert_eq!(store.last_heartbeat().unwrap(), None);
        store.beat(1234).unwrap();
        assert_eq!(store.last_heartbeat().unwrap(), Some(1234));
    }
}
