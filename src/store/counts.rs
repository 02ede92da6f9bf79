//! How many entries each studio has in a tree, kept in memory. Counted once when the store
//! opens, then moved by the store's own inserts and removals, so a scrape or a status-page poll
//! costs the same with a backlog of a million events as with none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub(super) struct Counts {
    by_studio: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Counts {
    /// Counts the keys of `tree`, which are `studio \0 ...`.
    pub(super) fn of(tree: &sled::Tree) -> sled::Result<Counts> {
        let counts = Counts::default();
        {
            let mut map = counts.lock();
            for key in tree.iter().keys() {
                let key = key?;
                let studio = key.split(|b| *b == 0).next().unwrap_or_default();
                *map.entry(String::from_utf8_lossy(studio).into_owned())
                    .or_default() += 1;
            }
        }
        Ok(counts)
    }

    pub(super) fn add(&self, studio: &str, n: usize) {
        if n == 0 {
            return;
        }
        let mut map = self.lock();
        match map.get_mut(studio) {
            Some(count) => *count += n,
            None => {
                map.insert(studio.to_string(), n);
            }
        }
    }

    pub(super) fn remove(&self, studio: &str, n: usize) {
        let mut map = self.lock();
        if let Some(count) = map.get_mut(studio) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                map.remove(studio);
            }
        }
    }

    pub(super) fn get(&self, studio: &str) -> usize {
        self.lock().get(studio).copied().unwrap_or(0)
    }

    /// Every studio with at least one entry, by id.
    pub(super) fn all(&self) -> Vec<(String, usize)> {
        self.lock().iter().map(|(s, n)| (s.clone(), *n)).collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, usize>> {
        crate::lock::lock(&self.by_studio)
    }
}
