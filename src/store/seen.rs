//! Which uuids each studio has seen, for deduplication within the retention period.
//!
//! Lookups go to an in-memory set of digests of studio and uuid ([`DigestSet`]), rebuilt from
//! sled when the store opens. On disk the digests are kept in chunks keyed by the newest
//! first-seen time in them: the group commit writes the marks of its requests as one chunk,
//! and small chunks are later moved, packed into chunks of up to [`CHUNK_DIGESTS`], to a tree
//! of their own. Packed in place, they sat in leaves that every later pack rewrote (sled
//! merges emptied leaves into their neighbours): that tripled the disk written per event.
//! sled's memory grows with its number of keys (about 33 bytes per key measured, whatever its
//! cache setting), so one key per uuid cost more than the digest itself; packed, 2 million
//! digests kept sled within its cache. New chunks land at one edge of the tree and retention
//! cuts from the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::digest::{UuidDigest, DIGEST_BYTES};
use super::digest_set::{DigestSet, Stripe};
use crate::lock::lock;

/// Chunks as the group commit writes them: `newest_first_seen_ms (u64 BE) ++ id (u64 BE)` ->
/// digests, 16 bytes each.
const CHUNKS: &str = "seen_at-uuid_digests";
/// Packed chunks, same layout; only appended to, and cut from the old end.
const PACKED_CHUNKS: &str = "seen_at-uuid_digests_packed";
/// Earlier layouts, converted when found: one key per uuid, by time then digest, and before
/// that `studio \0 uuid` -> `seen_at_ms (i64 BE)`.
const TIME_KEYED_MARKS: &str = "seen_at-studio_uuid_digest";
const UUID_KEYED_MARKS: &str = "studio-uuid-seen_at";

/// 8 KiB of digests. sled rewrites a whole leaf (up to 16 keys) from time to time, and writes
/// anything over a quarter segment to a blob file it never syncs (see `SEGMENT_SIZE`): a leaf
/// of full chunks stays at half that. Past a few hundred digests a chunk saves no more memory.
pub(super) const CHUNK_DIGESTS: usize = 512;
const LEAF_KEYS: usize = 16;
const _: () = assert!(LEAF_KEYS * CHUNK_DIGESTS * DIGEST_BYTES <= super::SEGMENT_SIZE / 8);
/// Digests forgotten from memory at a time while pruning (2 MiB): each batch is one pass over
/// the stripes it touches, where one digest at a time would move a stripe's tail for each.
const PRUNE_BATCH: usize = 256 * CHUNK_DIGESTS;

/// A mark in memory that the next group commit writes: when its uuid was first seen, and which.
type Mark = (i64, UuidDigest);

#[derive(Clone)]
pub(super) struct SeenMarks {
    db: sled::Db,
    tree: sled::Tree,
    packed: sled::Tree,
    digests: Arc<DigestSet>,
    unwritten: Arc<Mutex<Vec<Mark>>>,
    /// Digests written in small chunks since packing last ran. Not under `pack_from`, which
    /// a prune holds for its whole run: the group commit adds to this and must not wait.
    written_since_pack: Arc<AtomicUsize>,
    /// Where the next pack starts: sled leaves emptied leaves behind for a while, and walking
    /// them from the start of the tree on every pass grew with the tree's history. Its lock
    /// also keeps pruning and packing apart: a pack must not write back a chunk that a prune
    /// has just forgotten.
    pack_from: Arc<Mutex<Vec<u8>>>,
}

/// Exclusive hold on one uuid while it is checked and, if new, queued and marked.
pub(super) struct Claim<'a> {
    marks: &'a SeenMarks,
    digest: UuidDigest,
    stripe: MutexGuard<'a, Stripe>,
    /// The one search of the stripe per uuid; the lock keeps it true until the claim ends.
    found: Result<usize, usize>,
}

impl Claim<'_> {
    pub(super) fn already_seen(&self) -> bool {
        self.found.is_ok()
    }

    /// Seen from now on; on disk after the next [`SeenMarks::write_unwritten`], which the group
    /// commit runs before its flush.
    pub(super) fn mark(mut self, now_ms: i64) {
        lock(&self.marks.unwritten).push((now_ms, self.digest));
        if let Err(at) = self.found {
            self.stripe.insert_at(at, self.digest);
        }
    }
}

impl SeenMarks {
    /// Loads the digests into memory and converts any marks in the earlier layouts.
    pub(super) fn open(db: &sled::Db) -> sled::Result<SeenMarks> {
        let (tree, packed) = (db.open_tree(CHUNKS)?, db.open_tree(PACKED_CHUNKS)?);
        let mut loader = DigestSet::loader();
        let mut unpacked_digests = 0;
        for (tree, unpacked) in [(&packed, false), (&tree, true)] {
            for chunk in tree.iter().values() {
                let chunk = chunk?;
                digests_of(&chunk).for_each(|digest| loader.add(digest));
                if unpacked {
                    unpacked_digests += chunk.len() / DIGEST_BYTES;
                }
            }
        }
        let marks = SeenMarks {
            db: db.clone(),
            tree,
            packed,
            digests: Arc::new(loader.finish()),
            unwritten: Arc::default(),
            written_since_pack: Arc::new(AtomicUsize::new(unpacked_digests)),
            pack_from: Arc::default(),
        };
        if has_tree(db, TIME_KEYED_MARKS) {
            marks.convert(db, TIME_KEYED_MARKS, |key, _| {
                Some((time_of_key(key)?, UuidDigest::read(key.get(8..)?)?))
            })?;
        }
        if has_tree(db, UUID_KEYED_MARKS) {
            let now_ms = crate::event::now_millis();
            marks.convert(db, UUID_KEYED_MARKS, |studio_uuid, seen_at| {
                // An unreadable time counts as now: remembered a full retention, not dropped.
                let seen_at = <[u8; 8]>::try_from(seen_at)
                    .map(i64::from_be_bytes)
                    .unwrap_or(now_ms);
                Some((seen_at, UuidDigest::of_studio_uuid_key(studio_uuid)))
            })?;
        }
        Ok(marks)
    }

    /// Held for a few microseconds of in-memory work; never across an await.
    pub(super) fn claim(&self, digest: UuidDigest) -> Claim<'_> {
        let stripe = self.digests.stripe(digest);
        let found = stripe.find(digest);
        Claim {
            marks: self,
            digest,
            stripe,
            found,
        }
    }

    /// Writes the marks made since the last call, as one chunk (or more, if very many). Until
    /// this is flushed, a crash forgets them; their events, queued before, are then delivered
    /// again on a resend rather than dropped.
    pub(super) fn write_unwritten(&self) -> sled::Result<()> {
        let marks = std::mem::take(&mut *lock(&self.unwritten));
        if marks.is_empty() {
            return Ok(());
        }
        let written = marks
            .chunks(CHUNK_DIGESTS)
            .try_for_each(|chunk| self.write_chunk(&self.tree, chunk));
        if written.is_err() {
            // Kept for the next commit: the uuids are already refused as duplicates.
            lock(&self.unwritten).extend(marks);
            return written;
        }
        self.written_since_pack
            .fetch_add(marks.len(), Ordering::Relaxed);
        Ok(())
    }

    fn write_chunk(&self, tree: &sled::Tree, marks: &[Mark]) -> sled::Result<()> {
        let newest = marks.iter().map(|(at, _)| *at).max().unwrap_or_default();
        let mut value = Vec::with_capacity(marks.len() * DIGEST_BYTES);
        for (_, digest) in marks {
            value.extend_from_slice(&digest.to_be_bytes());
        }
        tree.insert(chunk_key(newest, self.db.generate_id()?), value)?;
        Ok(())
    }

    /// Moves small chunks to the packed tree, as chunks of up to [`CHUNK_DIGESTS`], once that
    /// many digests have been written since the last pass. A packed chunk takes the key of the
    /// newest chunk in it and is written before those are removed: a crash in between leaves
    /// a digest twice on disk, never none.
    pub(super) fn pack_if_due(&self) -> sled::Result<()> {
        if self.written_since_pack.load(Ordering::Relaxed) < CHUNK_DIGESTS {
            return Ok(());
        }
        // A long prune must not hold up the group commit that runs this; the next one packs.
        let mut pack_from = match self.pack_from.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        let mut group: Vec<(sled::IVec, sled::IVec)> = Vec::new();
        let mut digests = 0;
        for item in self.tree.range(&pack_from[..]..) {
            let (key, value) = item?;
            let count = value.len() / DIGEST_BYTES;
            if digests + count > CHUNK_DIGESTS {
                self.pack(&group)?;
                *pack_from = key.to_vec();
                group.clear();
                digests = 0;
            }
            digests += count;
            group.push((key, value));
        }
        // The newest chunks wait until they fill a whole one.
        self.written_since_pack.store(digests, Ordering::Relaxed);
        Ok(())
    }

    fn pack(&self, group: &[(sled::IVec, sled::IVec)]) -> sled::Result<()> {
        let Some((newest, _)) = group.last() else {
            return Ok(());
        };
        let packed: Vec<u8> = group.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        self.packed.insert(newest, packed)?;
        for (key, _) in group {
            self.tree.remove(key)?;
        }
        Ok(())
    }

    /// Forgets uuids first seen before `cutoff_ms` (those of a chunk once its newest is);
    /// returns how many.
    pub(super) fn prune(&self, cutoff_ms: i64) -> sled::Result<usize> {
        let _no_packing = lock(&self.pack_from);
        let (mut forgotten, mut pruned) = (Vec::new(), 0);
        let removed = self.remove_chunks_before(cutoff_ms, &mut forgotten, &mut pruned);
        // Also after an error: a chunk removed from disk can no longer be pruned, so digests
        // of it kept in memory would be refused as duplicates until a restart.
        pruned += self.digests.remove_many(&forgotten);
        removed?;
        if pruned > 0 {
            self.digests.trim();
        }
        Ok(pruned)
    }

    /// Removes the chunks written before `cutoff_ms` from disk, collecting their digests in
    /// `forgotten` and forgetting them in memory a batch at a time (counted in `pruned`).
    /// Whatever is left in `forgotten` when it returns, error or not, the caller forgets.
    fn remove_chunks_before(
        &self,
        cutoff_ms: i64,
        forgotten: &mut Vec<UuidDigest>,
        pruned: &mut usize,
    ) -> sled::Result<()> {
        let end = chunk_key(cutoff_ms, 0);
        for tree in [&self.packed, &self.tree] {
            for item in tree.range(..&end[..]) {
                let (key, chunk) = item?;
                tree.remove(&key)?;
                forgotten.extend(digests_of(&chunk));
                if forgotten.len() >= PRUNE_BATCH {
                    *pruned += self.digests.remove_many(forgotten);
                    forgotten.clear();
                }
            }
        }
        Ok(())
    }

    /// Rewrites the marks of an earlier layout as chunks in time order, then drops its tree.
    /// Safe to repeat after a crash: a digest already remembered is skipped, so a uuid keeps
    /// one mark even when an old tree comes back after a downgrade. That mark is the one
    /// already in chunks, even if the old tree's is newer; finding and removing a digest in a
    /// chunk would cost more than forgetting such a uuid early, once, after a downgrade.
    fn convert(
        &self,
        db: &sled::Db,
        name: &str,
        read: impl Fn(&[u8], &[u8]) -> Option<Mark>,
    ) -> sled::Result<()> {
        let old = db.open_tree(name)?;
        let mut marks = Vec::new();
        for item in old.iter() {
            let (key, value) = item?;
            if let Some((at, digest)) = read(&key, &value) {
                if !self.claim(digest).already_seen() {
                    marks.push((at, digest));
                }
            }
        }
        // Within this layout, one mark per uuid, the newest: remembered the longest.
        marks.sort_unstable_by_key(|(at, digest)| (*digest, std::cmp::Reverse(*at)));
        marks.dedup_by_key(|(_, digest)| *digest);
        let digests: Vec<UuidDigest> = marks.iter().map(|(_, digest)| *digest).collect();
        self.digests.insert_many(&digests);
        marks.sort_by_key(|(at, _)| *at);
        for chunk in marks.chunks(CHUNK_DIGESTS) {
            self.write_chunk(&self.packed, chunk)?;
        }
        db.drop_tree(name)?;
        tracing::info!(
            converted = marks.len(),
            layout = name,
            "seen uuids converted"
        );
        Ok(())
    }

    /// How many uuids are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.digests.len()
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.digests.capacity()
    }
}

fn has_tree(db: &sled::Db, name: &str) -> bool {
    db.tree_names().iter().any(|n| n == name.as_bytes())
}

/// Times before 1970 cannot occur; clamping keeps the key order equal to time order.
fn chunk_key(newest_ms: i64, id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&(newest_ms.max(0) as u64).to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

fn time_of_key(key: &[u8]) -> Option<i64> {
    let time: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(time) as i64)
}

fn digests_of(chunk: &[u8]) -> impl Iterator<Item = UuidDigest> + '_ {
    chunk
        .chunks_exact(DIGEST_BYTES)
        .filter_map(UuidDigest::read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::StudioId;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    fn berlin(uuid: &str) -> UuidDigest {
        UuidDigest::of(&StudioId::parse("berlin").unwrap(), uuid)
    }

    /// Marks `count` new uuids `u<i>` first seen at `i`, each written as its own group commit.
    fn mark_one_by_one(marks: &SeenMarks, count: i64) {
        for i in 0..count {
            let claim = marks.claim(berlin(&format!("u{i}")));
            assert!(!claim.already_seen());
            claim.mark(i);
            marks.write_unwritten().unwrap();
        }
    }

    #[test]
    fn marks_keyed_by_uuid_are_converted_and_still_deduplicate() {
        let (_dir, db) = db();
        let old = db.open_tree(UUID_KEYED_MARKS).unwrap();
        old.insert(b"berlin\0u1", &1_000i64.to_be_bytes()).unwrap();
        old.insert(b"berlin\0u2", &5_000i64.to_be_bytes()).unwrap();

        let marks = SeenMarks::open(&db).unwrap();
        assert!(!has_tree(&db, UUID_KEYED_MARKS));
        let hamburg = StudioId::parse("hamburg").unwrap();
        assert!(marks.claim(berlin("u1")).already_seen());
        assert!(!marks.claim(UuidDigest::of(&hamburg, "u1")).already_seen());
        // Both land in one chunk, remembered until the newer of the two is past retention.
        assert_eq!(marks.prune(5_000).unwrap(), 0);
        assert_eq!(marks.prune(5_001).unwrap(), 2);
        assert!(!marks.claim(berlin("u2")).already_seen());
    }

    #[test]
    fn marks_keyed_by_time_are_converted_and_still_deduplicate() {
        let (_dir, db) = db();
        let old = db.open_tree(TIME_KEYED_MARKS).unwrap();
        for (at, uuid) in [(1_000u64, "u1"), (2_000, "u2")] {
            let mut key = at.to_be_bytes().to_vec();
            key.extend_from_slice(&berlin(uuid).to_be_bytes());
            old.insert(key, &[]).unwrap();
        }

        let marks = SeenMarks::open(&db).unwrap();
        assert!(!has_tree(&db, TIME_KEYED_MARKS));
        assert_eq!(marks.len(), 2);
        assert!(marks.claim(berlin("u1")).already_seen());
        drop(marks);
        let marks = SeenMarks::open(&db).unwrap();
        assert!(
            marks.claim(berlin("u2")).already_seen(),
            "written, not only loaded"
        );
        assert_eq!(marks.prune(2_001).unwrap(), 2);
    }

    #[test]
    fn a_uuid_marked_twice_in_an_old_layout_keeps_its_newest_mark() {
        let (_dir, db) = db();
        let old = db.open_tree(TIME_KEYED_MARKS).unwrap();
        for at in [3_000u64, 1_000] {
            let mut key = at.to_be_bytes().to_vec();
            key.extend_from_slice(&berlin("u1").to_be_bytes());
            old.insert(key, &[]).unwrap();
        }

        let marks = SeenMarks::open(&db).unwrap();
        assert_eq!(marks.len(), 1);
        let chunk = marks.packed.first().unwrap().unwrap().1;
        assert_eq!(chunk.len(), DIGEST_BYTES, "one mark on disk");
        assert_eq!(
            marks.prune(3_000).unwrap(),
            0,
            "the mark at 1,000 was dropped"
        );
        assert_eq!(marks.prune(3_001).unwrap(), 1);
    }

    /// Marks "u1" in chunks at `in_chunks`, then in the earliest layout at `in_earlier`, as
    /// after a downgrade that wrote the earlier layout again; opens this version over both.
    fn marked_in_both_layouts(in_chunks: i64, in_earlier: i64) -> (tempfile::TempDir, SeenMarks) {
        let (dir, db) = db();
        {
            let marks = SeenMarks::open(&db).unwrap();
            marks.claim(berlin("u1")).mark(in_chunks);
            marks.write_unwritten().unwrap();
        }
        let old = db.open_tree(UUID_KEYED_MARKS).unwrap();
        old.insert(b"berlin\0u1", &in_earlier.to_be_bytes())
            .unwrap();
        let marks = SeenMarks::open(&db).unwrap();
        // Converted marks go to the packed tree: counting one tree would miss them.
        assert_eq!(
            marks.tree.len() + marks.packed.len(),
            1,
            "the earlier layout's mark was not added"
        );
        (dir, marks)
    }

    #[test]
    fn a_uuid_already_in_chunks_keeps_that_mark_over_an_earlier_layouts() {
        let (_dir, marks) = marked_in_both_layouts(9_000, 1_000);
        assert_eq!(marks.prune(2_000).unwrap(), 0);
        assert!(marks.claim(berlin("u1")).already_seen());
    }

    /// The rule holds when the earlier layout's mark is the newer one too (a downgrade that
    /// took webhooks): the uuid is forgotten by its chunk's time, up to one retention early.
    #[test]
    fn a_uuid_already_in_chunks_keeps_that_mark_even_when_the_earlier_layouts_is_newer() {
        let (_dir, marks) = marked_in_both_layouts(1_000, 9_000);
        assert_eq!(marks.prune(2_000).unwrap(), 1);
        assert!(!marks.claim(berlin("u1")).already_seen());
    }

    #[test]
    fn unwritten_marks_are_forgotten_by_a_restart() {
        let (_dir, db) = db();
        {
            let marks = SeenMarks::open(&db).unwrap();
            marks.claim(berlin("written")).mark(1);
            marks.write_unwritten().unwrap();
            marks.claim(berlin("unwritten")).mark(2);
            assert!(marks.claim(berlin("unwritten")).already_seen());
        }
        let marks = SeenMarks::open(&db).unwrap();
        assert!(marks.claim(berlin("written")).already_seen());
        assert!(!marks.claim(berlin("unwritten")).already_seen());
    }

    #[test]
    fn small_chunks_are_packed_and_still_reloaded_and_pruned_in_time_order() {
        let (_dir, db) = db();
        let count = 3 * CHUNK_DIGESTS as i64 + 100;
        {
            let marks = SeenMarks::open(&db).unwrap();
            mark_one_by_one(&marks, count);
            assert_eq!(marks.tree.len(), count as usize);
            marks.pack_if_due().unwrap();
            // Three full chunks, and the newest 100 waiting to fill a fourth.
            assert_eq!(marks.packed.len(), 3);
            assert_eq!(marks.tree.len(), 100);
            marks.pack_if_due().unwrap();
            assert_eq!(marks.tree.len(), 100, "not before a whole chunk is waiting");
        }
        let marks = SeenMarks::open(&db).unwrap();
        assert_eq!(marks.len(), count as usize);
        let capacity = marks.capacity();
        // The first chunk's newest mark is first seen at CHUNK_DIGESTS - 1: one millisecond
        // later the chunk goes.
        let first_full = CHUNK_DIGESTS as i64;
        assert_eq!(marks.prune(first_full - 1).unwrap(), 0);
        assert_eq!(marks.prune(first_full).unwrap(), CHUNK_DIGESTS);
        assert!(!marks
            .claim(berlin(&format!("u{}", first_full - 1)))
            .already_seen());
        assert!(marks
            .claim(berlin(&format!("u{first_full}")))
            .already_seen());
        assert_eq!(marks.prune(count).unwrap(), count as usize - CHUNK_DIGESTS);
        assert_eq!(marks.len(), 0);
        assert_eq!(marks.packed.len() + marks.tree.len(), 0);
        assert!(
            marks.capacity() < capacity / 2,
            "sets shrink: {} of {capacity}",
            marks.capacity()
        );
    }

    #[test]
    fn chunks_left_unpacked_by_a_restart_are_packed_at_the_next_commit() {
        let (_dir, db) = db();
        {
            let marks = SeenMarks::open(&db).unwrap();
            mark_one_by_one(&marks, CHUNK_DIGESTS as i64 + 1);
        }
        let marks = SeenMarks::open(&db).unwrap();
        marks.pack_if_due().unwrap();
        assert_eq!(marks.packed.len(), 1);
        assert_eq!(marks.tree.len(), 1);
    }

    #[test]
    fn a_pack_cut_short_leaves_digests_twice_and_counts_them_once() {
        let (_dir, db) = db();
        {
            let marks = SeenMarks::open(&db).unwrap();
            mark_one_by_one(&marks, 2);
            // As if a pack wrote the packed chunk and a crash kept the chunks it packed.
            let (newest, _) = marks.tree.last().unwrap().unwrap();
            let both = [berlin("u0").to_be_bytes(), berlin("u1").to_be_bytes()].concat();
            marks.packed.insert(newest, both).unwrap();
        }
        let marks = SeenMarks::open(&db).unwrap();
        assert_eq!(marks.len(), 2);
        assert_eq!(marks.prune(10).unwrap(), 2);
        assert_eq!(marks.packed.len() + marks.tree.len(), 0);
    }

    #[test]
    fn a_prune_of_more_than_one_batch_forgets_every_digest() {
        let (_dir, db) = db();
        let marks = SeenMarks::open(&db).unwrap();
        let count = PRUNE_BATCH + CHUNK_DIGESTS + 1;
        for i in 0..count {
            marks.claim(berlin(&format!("u{i}"))).mark(1);
        }
        marks.write_unwritten().unwrap();
        assert_eq!(marks.prune(2).unwrap(), count);
        assert_eq!(marks.len(), 0);
        assert!(!marks.claim(berlin("u0")).already_seen());
    }

    #[test]
    fn many_marks_in_one_commit_stay_below_sleds_blob_size() {
        let (_dir, db) = db();
        let marks = SeenMarks::open(&db).unwrap();
        for i in 0..2 * CHUNK_DIGESTS + 1 {
            marks.claim(berlin(&format!("u{i}"))).mark(1);
        }
        marks.write_unwritten().unwrap();
        assert_eq!(marks.tree.len(), 3);
        for chunk in marks.tree.iter().values() {
            assert!(chunk.unwrap().len() <= CHUNK_DIGESTS * DIGEST_BYTES);
        }
    }
}
