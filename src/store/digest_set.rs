//! The remembered uuid digests in memory: what every webhook is checked against.
//!
//! This set is the relay's one piece of state that grows with traffic (a week at 1.5 million
//! webhooks a day is about 10 million entries), so it is built for size. Each stripe is a
//! sorted array of the digests' first 12 bytes, grown by an eighth at a time: about 13 to 16
//! bytes per uuid (jemalloc rounds each array up to its size class), growing in small steps. A
//! hash set took 19 to 39 bytes per uuid (16 bytes and a control byte, at a load between 7/16
//! and 7/8), and since uniform digests fill every stripe alike, all of them doubled at about
//! the same moment.
//!
//! 96 bits leave accidental collisions out of reach: with 10^8 uuids remembered, the chance
//! that a new uuid is taken for a duplicate is below 10^-20. A sender choosing uuids could
//! find two of its own that collide in about 2^48 hashes, and so have its own second one taken
//! for a duplicate; hitting another studio's uuid would take about 2^96.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use super::digest::UuidDigest;
use crate::lock::lock;

/// Enough that each stripe stays a few thousand entries (a memmove of tens of KiB on insert)
/// at 10 million uuids, for 128 KiB when empty.
const STRIPES: usize = 4096;

/// The part of a digest kept in memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DigestPrefix([u8; 12]);

impl From<UuidDigest> for DigestPrefix {
    fn from(digest: UuidDigest) -> DigestPrefix {
        let bytes = digest.to_be_bytes();
        DigestPrefix(bytes[..12].try_into().expect("16-byte digest"))
    }
}

pub(super) struct DigestSet {
    stripes: Box<[Mutex<Stripe>]>,
    hasher: RandomState,
}

impl DigestSet {
    /// Loads digests in any order, as read from disk; the set exists, sorted, only once
    /// [`DigestLoader::finish`] has run, so nothing can look up an unsorted stripe.
    pub(super) fn loader() -> DigestLoader {
        DigestLoader {
            stripes: (0..STRIPES).map(|_| Vec::new()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The stripe that holds `digest`, locked.
    pub(super) fn stripe(&self, digest: UuidDigest) -> MutexGuard<'_, Stripe> {
        lock(&self.stripes[stripe_index(&self.hasher, digest)])
    }

    /// Adds many digests with one sort per stripe, rather than a memmove per digest.
    pub(super) fn insert_many(&self, digests: &[UuidDigest]) {
        for run in self.by_stripe(digests).chunk_by(|a, b| a.0 == b.0) {
            let mut stripe = lock(&self.stripes[run[0].0]);
            stripe.0.reserve_exact(run.len());
            stripe.0.extend(run.iter().map(|(_, prefix)| *prefix));
            stripe.0.sort_unstable();
            stripe.0.dedup();
        }
    }

    /// Removes many digests with one pass over each stripe they fall in; returns how many
    /// were there.
    pub(super) fn remove_many(&self, digests: &[UuidDigest]) -> usize {
        let mut removed = 0;
        for run in self.by_stripe(digests).chunk_by(|a, b| a.0 == b.0) {
            let mut stripe = lock(&self.stripes[run[0].0]);
            let before = stripe.0.len();
            stripe
                .0
                .retain(|kept| run.binary_search_by(|(_, gone)| gone.cmp(kept)).is_err());
            removed += before - stripe.0.len();
        }
        removed
    }

    /// `digests` as (stripe, prefix), sorted: runs of one stripe, each sorted by prefix.
    fn by_stripe(&self, digests: &[UuidDigest]) -> Vec<(usize, DigestPrefix)> {
        let mut grouped: Vec<_> = digests
            .iter()
            .map(|&d| (stripe_index(&self.hasher, d), DigestPrefix::from(d)))
            .collect();
        grouped.sort_unstable();
        grouped
    }

    /// Gives back memory after a large prune (say, once traffic has dropped).
    pub(super) fn trim(&self) {
        for stripe in self.stripes.iter() {
            let mut stripe = lock(stripe);
            let (len, capacity) = (stripe.0.len(), stripe.0.capacity());
            if capacity > len + len / 4 {
                stripe.fit();
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).0.len()).sum()
    }

    /// How many digests the stripes could hold without growing.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.stripes.iter().map(|s| lock(s).0.capacity()).sum()
    }
}

/// Stripes are chosen by a hash with a random key, not by the digest's own bits: a sender
/// choosing uuids could otherwise pile them into one stripe and make every insert slow.
fn stripe_index(hasher: &RandomState, digest: UuidDigest) -> usize {
    hasher.hash_one(digest) as usize % STRIPES
}

/// Collects digests unsorted. While loading, each stripe grows by doubling, so start-up
/// briefly holds up to twice what the set keeps.
pub(super) struct DigestLoader {
    stripes: Vec<Vec<DigestPrefix>>,
    hasher: RandomState,
}

impl DigestLoader {
    pub(super) fn add(&mut self, digest: UuidDigest) {
        self.stripes[stripe_index(&self.hasher, digest)].push(digest.into());
    }

    /// Sorts each stripe and drops repeats (a pack cut short by a crash leaves some).
    pub(super) fn finish(self) -> DigestSet {
        let stripes = self
            .stripes
            .into_iter()
            .map(|mut prefixes| {
                prefixes.sort_unstable();
                prefixes.dedup();
                let mut stripe = Stripe(prefixes);
                stripe.fit();
                Mutex::new(stripe)
            })
            .collect();
        DigestSet {
            stripes,
            hasher: self.hasher,
        }
    }
}

/// One sorted array of prefixes.
pub(super) struct Stripe(Vec<DigestPrefix>);

impl Stripe {
    /// Where `digest` is (`Ok`), or where it would go (`Err`), for [`Stripe::insert_at`].
    pub(super) fn find(&self, digest: UuidDigest) -> Result<usize, usize> {
        self.0.binary_search(&digest.into())
    }

    #[cfg(test)]
    pub(super) fn contains(&self, digest: UuidDigest) -> bool {
        self.find(digest).is_ok()
    }

    /// Returns whether `digest` was new.
    #[cfg(test)]
    pub(super) fn insert(&mut self, digest: UuidDigest) -> bool {
        let Err(at) = self.find(digest) else {
            return false;
        };
        self.insert_at(at, digest);
        true
    }

    /// Inserts `digest` at `at`, which [`Stripe::find`] gave under the same lock.
    pub(super) fn insert_at(&mut self, at: usize, digest: UuidDigest) {
        if self.0.len() == self.0.capacity() {
            // An eighth, not the doubling `Vec` would do: at most 12.5 % unused.
            self.0.reserve_exact((self.0.len() / 8).max(16));
        }
        self.0.insert(at, digest.into());
    }

    /// Room for an eighth more, as [`Stripe::insert_at`] would leave it.
    fn fit(&mut self) {
        let len = self.0.len();
        self.0.shrink_to(len + len / 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u128) -> UuidDigest {
        // Spread like real digests: the high bytes are the ones kept.
        UuidDigest::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    fn digests(range: std::ops::Range<u128>) -> Vec<UuidDigest> {
        range.map(digest).collect()
    }

    fn empty() -> DigestSet {
        DigestSet::loader().finish()
    }

    #[test]
    fn inserted_digests_are_found_once() {
        let set = empty();
        for n in 0..10_000 {
            assert!(set.stripe(digest(n)).insert(digest(n)));
        }
        assert!(!set.stripe(digest(7)).insert(digest(7)), "already there");
        assert_eq!(set.len(), 10_000);
        assert!(set.stripe(digest(9_999)).contains(digest(9_999)));
        assert!(!set.stripe(digest(10_000)).contains(digest(10_000)));
    }

    #[test]
    fn agrees_with_a_hash_set_over_random_inserts_and_removes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (set, mut model) = (empty(), std::collections::HashSet::new());
        // A small space of digests, so the same ones come back again and again.
        for _ in 0..60_000 {
            let n = rng.gen_range(0..20_000u128);
            let d = digest(n);
            match rng.gen_range(0..4) {
                0 => assert_eq!(set.stripe(d).insert(d), model.insert(n), "insert {n}"),
                1 => {
                    let gone = set.remove_many(&[d, d]) == 1;
                    assert_eq!(gone, model.remove(&n), "remove {n}");
                }
                2 => {
                    let batch: Vec<u128> = (0..20).map(|_| rng.gen_range(0..20_000)).collect();
                    set.insert_many(&batch.iter().map(|&n| digest(n)).collect::<Vec<_>>());
                    model.extend(batch);
                }
                _ => assert_eq!(set.stripe(d).contains(d), model.contains(&n), "find {n}"),
            }
            if rng.gen_ratio(1, 3_000) {
                set.trim();
            }
        }
        assert_eq!(set.len(), model.len());
    }

    #[test]
    fn a_load_in_any_order_with_repeats_is_sorted_by_finish() {
        let mut loader = DigestSet::loader();
        for n in (0..5_000).rev().chain(0..100) {
            loader.add(digest(n));
        }
        let set = loader.finish();
        assert_eq!(set.len(), 5_000);
        for n in 0..5_000 {
            assert!(set.stripe(digest(n)).contains(digest(n)), "{n}");
        }
        assert!(set.stripe(digest(6_000)).insert(digest(6_000)));
        assert!(set.stripe(digest(6_000)).contains(digest(6_000)));
    }

    #[test]
    fn removing_many_counts_each_digest_once_and_leaves_the_rest() {
        let set = empty();
        set.insert_many(&digests(0..1_000));
        let mut gone = digests(900..1_100);
        gone.extend(digests(950..960));
        assert_eq!(set.remove_many(&gone), 100);
        assert_eq!(set.len(), 900);
        assert!(set.stripe(digest(899)).contains(digest(899)));
        assert!(!set.stripe(digest(900)).contains(digest(900)));
    }

    #[test]
    fn stripes_grow_by_an_eighth_and_trim_after_removals() {
        let set = empty();
        let count = 200 * STRIPES as u128;
        for n in 0..count {
            set.stripe(digest(n)).insert(digest(n));
        }
        let capacity = set.capacity();
        assert!(
            capacity as f64 <= 1.2 * count as f64,
            "{capacity} slots for {count} digests"
        );
        set.remove_many(&digests(0..count - 1_000));
        set.trim();
        assert!(set.capacity() < capacity / 10, "{}", set.capacity());
    }
}
