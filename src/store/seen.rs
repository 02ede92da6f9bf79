//! Which uuids each studio has seen, for deduplication within the retention period.
//!
//! sled keeps one mark per uuid, keyed by when it was first seen and then a digest of studio
//! and uuid. New marks therefore land at one edge of the tree and retention cuts from the other,
//! so sled's cache holds only those edges. Keyed by uuid instead, every mark landed on a random
//! page and kept the whole tree hot: sled's memory grew to about five times its cache setting.
//! Lookups go to an in-memory set of the digests, rebuilt from sled when the store opens. With
//! sled's share, a remembered uuid costs about 70 bytes of memory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::tenant::StudioId;

/// The tree of marks: `first_seen_ms (u64 BE) ++ digest (16 bytes)` -> nothing.
const MARKS: &str = "seen_at-studio_uuid_digest";
/// The earlier layout, `studio \0 uuid` -> `seen_at_ms (i64 BE)`, converted when found.
const UUID_KEYED_MARKS: &str = "studio-uuid-seen_at";

/// Independent locks, so intake of different uuids rarely waits on another.
const STRIPES: usize = 64;

/// The first 128 bits of SHA-256 over `studio \0 uuid`: collisions are out of reach even for
/// a sender choosing uuids, so equal digests mean the same uuid of the same studio.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct UuidDigest(u128);

impl UuidDigest {
    pub(super) fn of(studio: &StudioId, uuid: &str) -> UuidDigest {
        let mut hasher = Sha256::new();
        hasher.update(studio.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(uuid.as_bytes());
        UuidDigest::from_sha256(hasher.finalize().as_slice())
    }

    fn from_sha256(hash: &[u8]) -> UuidDigest {
        let first: [u8; 16] = hash[..16].try_into().expect("SHA-256 is 32 bytes");
        UuidDigest(u128::from_be_bytes(first))
    }

    fn stripe(self) -> usize {
        ((self.0 >> 64) as usize) % STRIPES
    }
}

/// Hashed with a random key (std's default), not by the digest's own bits: a sender choosing
/// uuids could otherwise pile them into one bucket.
type DigestSet = HashSet<UuidDigest>;

#[derive(Clone)]
pub(super) struct SeenMarks {
    tree: sled::Tree,
    stripes: Arc<[Mutex<DigestSet>; STRIPES]>,
}

/// Exclusive hold on one uuid while it is checked and, if new, queued and marked.
pub(super) struct Claim<'a> {
    tree: &'a sled::Tree,
    digest: UuidDigest,
    set: MutexGuard<'a, DigestSet>,
}

impl Claim<'_> {
    pub(super) fn already_seen(&self) -> bool {
        self.set.contains(&self.digest)
    }

    pub(super) fn mark(mut self, now_ms: i64) -> sled::Result<()> {
        self.tree.insert(mark_key(now_ms, self.digest), &[])?;
        self.set.insert(self.digest);
        Ok(())
    }
}

impl SeenMarks {
    /// Loads the digests into memory and converts any marks in the earlier layout.
    pub(super) fn open(db: &sled::Db) -> sled::Result<SeenMarks> {
        let marks = SeenMarks {
            tree: db.open_tree(MARKS)?,
            stripes: Arc::new(std::array::from_fn(|_| Mutex::new(DigestSet::default()))),
        };
        for key in marks.tree.iter().keys() {
            let digest = digest_of_key(&key?);
            marks.claim(digest).set.insert(digest);
        }
        if has_tree(db, UUID_KEYED_MARKS) {
            marks.convert_uuid_keyed(db)?;
        }
        Ok(marks)
    }

    /// Held for a few microseconds of in-memory sled work; never across an await.
    pub(super) fn claim(&self, digest: UuidDigest) -> Claim<'_> {
        Claim {
            tree: &self.tree,
            digest,
            set: lock(&self.stripes[digest.stripe()]),
        }
    }

    /// Forgets uuids first seen before `cutoff_ms`; returns how many.
    pub(super) fn prune(&self, cutoff_ms: i64) -> sled::Result<usize> {
        let end = time_key(cutoff_ms);
        let mut pruned = 0;
        loop {
            // In chunks, so a large cut does not hold every key in memory at once.
            let chunk: Vec<sled::IVec> = self
                .tree
                .range(..&end[..])
                .keys()
                .take(1024)
                .collect::<sled::Result<_>>()?;
            if chunk.is_empty() {
                break;
            }
            for key in chunk {
                let digest = digest_of_key(&key);
                // Under the uuid's lock, so no intake checks it between the two removals. A
                // digest has one mark at most: a second intake of it is refused as a duplicate.
                let mut claim = self.claim(digest);
                if self.tree.remove(&key)?.is_some() {
                    claim.set.remove(&digest);
                    pruned += 1;
                }
            }
        }
        if pruned > 0 {
            self.shrink_sparse_stripes();
        }
        Ok(pruned)
    }

    /// After a large prune (say, once traffic has dropped), gives back the memory of the
    /// buckets no longer needed; a set never shrinks by itself.
    fn shrink_sparse_stripes(&self) {
        for stripe in self.stripes.iter() {
            let mut set = lock(stripe);
            if set.len() < set.capacity() / 4 {
                let keep = set.len() * 2;
                set.shrink_to(keep);
            }
        }
    }

    /// Rewrites marks of the earlier layout, then drops the old tree. Safe to repeat after a
    /// crash: a mark rewritten twice has the same key. A uuid that also has a mark in the new
    /// layout (the old tree came back after a downgrade) keeps that one mark only.
    fn convert_uuid_keyed(&self, db: &sled::Db) -> sled::Result<()> {
        let old = db.open_tree(UUID_KEYED_MARKS)?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let mut converted = 0usize;
        for item in old.iter() {
            let (studio_uuid, seen_at) = item?;
            // An unreadable time counts as now: remembered a full retention rather than dropped.
            let seen_at = <[u8; 8]>::try_from(seen_at.as_ref())
                .map(i64::from_be_bytes)
                .unwrap_or(now_ms);
            let digest = UuidDigest::from_sha256(Sha256::digest(&studio_uuid).as_slice());
            let claim = self.claim(digest);
            if !claim.already_seen() {
                claim.mark(seen_at)?;
                converted += 1;
            }
        }
        db.drop_tree(UUID_KEYED_MARKS)?;
        tracing::info!(converted, "seen uuids converted to the time-ordered layout");
        Ok(())
    }

    /// How many uuids are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).len()).sum()
    }

    /// How many digests the sets could hold without growing.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).capacity()).sum()
    }
}

fn has_tree(db: &sled::Db, name: &str) -> bool {
    db.tree_names().iter().any(|n| n == name.as_bytes())
}

fn lock(stripe: &Mutex<DigestSet>) -> MutexGuard<'_, DigestSet> {
    stripe.lock().unwrap_or_else(|e| e.into_inner())
}

/// Times before 1970 cannot occur; clamping keeps the key order equal to time order.
fn time_key(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

fn mark_key(seen_at_ms: i64, digest: UuidDigest) -> [u8; 24] {
    let mut key = [0; 24];
    key[..8].copy_from_slice(&time_key(seen_at_ms));
    key[8..].copy_from_slice(&digest.0.to_be_bytes());
    key
}

fn digest_of_key(key: &[u8]) -> UuidDigest {
    let bytes: [u8; 16] = key
        .get(8..24)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_default();
    UuidDigest(u128::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    fn berlin(uuid: &str) -> UuidDigest {
        UuidDigest::of(&StudioId::parse("berlin").unwrap(), uuid)
    }

    #[test]
    fn marks_in_the_earlier_layout_are_converted_and_still_deduplicate() {
        let (_dir, db) = db();
        let old = db.open_tree(UUID_KEYED_MARKS).unwrap();
        old.insert(b"berlin\0u1", &1_000i64.to_be_bytes()).unwrap();
        old.insert(b"berlin\0u2", &5_000i64.to_be_bytes()).unwrap();

        let marks = SeenMarks::open(&db).unwrap();
        assert!(!has_tree(&db, UUID_KEYED_MARKS));
        let hamburg = StudioId::parse("hamburg").unwrap();
        assert!(marks.claim(berlin("u1")).already_seen());
        assert!(!marks.claim(UuidDigest::of(&hamburg, "u1")).already_seen());
        assert_eq!(
            marks.prune(2_000).unwrap(),
            1,
            "u1 keeps its first-seen time"
        );
        assert!(!marks.claim(berlin("u1")).already_seen());
        assert!(marks.claim(berlin("u2")).already_seen());
    }

    #[test]
    fn a_uuid_marked_in_both_layouts_keeps_the_newer_mark_only() {
        let (_dir, db) = db();
        {
            let marks = SeenMarks::open(&db).unwrap();
            marks.claim(berlin("u1")).mark(9_000).unwrap();
        }
        // As after a downgrade that wrote the earlier layout again, then this version.
        let old = db.open_tree(UUID_KEYED_MARKS).unwrap();
        old.insert(b"berlin\0u1", &1_000i64.to_be_bytes()).unwrap();

        let marks = SeenMarks::open(&db).unwrap();
        assert_eq!(marks.tree.len(), 1);
        assert_eq!(
            marks.prune(2_000).unwrap(),
            0,
            "the older mark was not added"
        );
        assert!(marks.claim(berlin("u1")).already_seen());
    }

    #[test]
    fn marks_are_reloaded_and_pruned_in_time_order() {
        let (_dir, db) = db();
        {
            let marks = SeenMarks::open(&db).unwrap();
            for (i, uuid) in (0..3000).map(|i| (i, format!("u{i}"))) {
                let claim = marks.claim(berlin(&uuid));
                assert!(!claim.already_seen());
                claim.mark(i).unwrap();
            }
        }
        let marks = SeenMarks::open(&db).unwrap();
        assert_eq!(marks.len(), 3000);
        let capacity = marks.capacity();
        assert_eq!(marks.prune(2500).unwrap(), 2500, "more than one chunk");
        assert_eq!(marks.len(), 500);
        assert!(
            marks.capacity() < capacity / 2,
            "sets shrink: {} of {capacity}",
            marks.capacity()
        );
        assert!(!marks.claim(berlin("u2499")).already_seen());
        assert!(marks.claim(berlin("u2500")).already_seen());
    }
}
