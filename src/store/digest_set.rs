//! The remembered uuid digests in memory: what every webhook is checked against.
//!
//! This set is the relay's one piece of state that grows with traffic (a week at 1.5 million
//! webhooks a day is about 10 million entries), so it is built for size. Each stripe is a
//! sorted array of the digests' first 12 bytes, grown by an eighth at a time: about 13 bytes
//! per uuid, growing smoothly. A hash set took 19 to 39 bytes per uuid (16 bytes and a control
//! byte, at a load between 7/16 and 7/8), and since uniform digests fill every stripe alike,
//! all of them doubled at about the same moment.
//!
//! 96 bits still leave collisions out of reach: with 10^8 uuids remembered, the chance that a
//! new uuid is taken for a duplicate is below 10^-20.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use super::seen::UuidDigest;

/// Enough that each stripe stays a few thousand entries (a memmove of tens of KiB on insert)
/// at 10 million uuids, for 128 KiB when empty.
const STRIPES: usize = 4096;

/// The part of a digest kept in memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) struct Key([u8; 12]);

impl From<UuidDigest> for Key {
    fn from(digest: UuidDigest) -> Key {
        let bytes = digest.to_be_bytes();
        Key(bytes[..12].try_into().expect("16-byte digest"))
    }
}

pub(super) struct DigestSet {
    stripes: Box<[Mutex<Stripe>]>,
    /// Stripes are chosen by a hash with a random key, not by the digest's own bits: a sender
    /// choosing uuids could otherwise pile them into one stripe and make every insert slow.
    hasher: RandomState,
}

impl DigestSet {
    pub(super) fn new() -> DigestSet {
        DigestSet {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The stripe that holds `digest`, locked.
    pub(super) fn stripe(&self, digest: UuidDigest) -> MutexGuard<'_, Stripe> {
        let index = self.hasher.hash_one(digest) as usize % STRIPES;
        lock(&self.stripes[index])
    }

    /// Adds digests in any order, for loading many at once; call [`DigestSet::seal`] before
    /// any lookup.
    pub(super) fn add_unsorted(&self, digest: UuidDigest) {
        self.stripe(digest).0.push(Key::from(digest));
    }

    /// Sorts what [`DigestSet::add_unsorted`] added and drops repeats.
    pub(super) fn seal(&self) {
        for stripe in self.stripes.iter() {
            let mut stripe = lock(stripe);
            stripe.0.sort_unstable();
            stripe.0.dedup();
            stripe.trim();
        }
    }

    /// Gives back memory after a large prune (say, once traffic has dropped).
    pub(super) fn trim(&self) {
        for stripe in self.stripes.iter() {
            lock(stripe).trim();
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

/// One sorted array of keys.
#[derive(Default)]
pub(super) struct Stripe(Vec<Key>);

impl Stripe {
    pub(super) fn contains(&self, digest: UuidDigest) -> bool {
        self.0.binary_search(&Key::from(digest)).is_ok()
    }

    /// Returns whether `digest` was new.
    pub(super) fn insert(&mut self, digest: UuidDigest) -> bool {
        let key = Key::from(digest);
        let Err(at) = self.0.binary_search(&key) else {
            return false;
        };
        if self.0.len() == self.0.capacity() {
            // An eighth, not the doubling `Vec` would do: at most 12.5 % unused.
            self.0.reserve_exact((self.0.len() / 8).max(16));
        }
        self.0.insert(at, key);
        true
    }

    /// Returns whether `digest` was there.
    pub(super) fn remove(&mut self, digest: UuidDigest) -> bool {
        match self.0.binary_search(&Key::from(digest)) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn trim(&mut self) {
        let (len, capacity) = (self.0.len(), self.0.capacity());
        if capacity > len + len / 4 {
            self.0.shrink_to(len + len / 8);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u128) -> UuidDigest {
        // Spread like real digests: the high bytes are the ones kept.
        UuidDigest::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
    }

    #[test]
    fn inserted_digests_are_found_once_and_removed_once() {
        let set = DigestSet::new();
        for n in 0..10_000 {
            assert!(set.stripe(digest(n)).insert(digest(n)));
        }
        assert!(!set.stripe(digest(7)).insert(digest(7)), "already there");
        assert_eq!(set.len(), 10_000);
        assert!(set.stripe(digest(9_999)).contains(digest(9_999)));
        assert!(!set.stripe(digest(10_000)).contains(digest(10_000)));
        assert!(set.stripe(digest(7)).remove(digest(7)));
        assert!(!set.stripe(digest(7)).remove(digest(7)));
        assert!(!set.stripe(digest(7)).contains(digest(7)));
        assert_eq!(set.len(), 9_999);
    }

    #[test]
    fn agrees_with_a_hash_set_over_random_inserts_and_removes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (set, mut model) = (DigestSet::new(), std::collections::HashSet::new());
        // A small space of digests, so the same ones come back again and again.
        for _ in 0..200_000 {
            let n = rng.gen_range(0..20_000u128);
            let d = digest(n);
            match rng.gen_range(0..3) {
                0 => assert_eq!(set.stripe(d).insert(d), model.insert(n), "insert {n}"),
                1 => assert_eq!(set.stripe(d).remove(d), model.remove(&n), "remove {n}"),
                _ => assert_eq!(set.stripe(d).contains(d), model.contains(&n), "find {n}"),
            }
            if rng.gen_ratio(1, 10_000) {
                set.trim();
            }
        }
        assert_eq!(set.len(), model.len());
    }

    #[test]
    fn unsorted_loads_are_sorted_and_deduplicated_by_seal() {
        let set = DigestSet::new();
        for n in (0..5_000).rev().chain(0..100) {
            set.add_unsorted(digest(n));
        }
        set.seal();
        assert_eq!(set.len(), 5_000);
        for n in 0..5_000 {
            assert!(set.stripe(digest(n)).contains(digest(n)), "{n}");
        }
    }

    #[test]
    fn stripes_grow_by_an_eighth_and_trim_after_removals() {
        let set = DigestSet::new();
        let count = 200 * STRIPES as u128;
        for n in 0..count {
            set.stripe(digest(n)).insert(digest(n));
        }
        let capacity = set.capacity();
        assert!(
            capacity as f64 <= 1.2 * count as f64,
            "{capacity} slots for {count} digests"
        );
        for n in 0..count - 1_000 {
            set.stripe(digest(n)).remove(digest(n));
        }
        set.trim();
        assert!(set.capacity() < capacity / 10, "{}", set.capacity());
    }
}
