//! Keeps each studio's inbox filling in sequence order. A studio's worker reads on from the
//! last sequence it has read; if two webhooks of one studio took sequences 10 and 11 and 11 was
//! inserted first, a worker that read 11 would never go back for 10. Taking the sequence and
//! inserting under one lock per studio (striped, so studios rarely wait for each other) makes
//! an entry visible only after every entry of its studio with a lower sequence.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::tenant::StudioId;

const STRIPES: usize = 64;

#[derive(Clone)]
pub struct ArrivalOrder {
    stripes: Arc<[Mutex<()>]>,
}

impl Default for ArrivalOrder {
    fn default() -> Self {
        ArrivalOrder {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl ArrivalOrder {
    /// Held while a studio's new entries take their sequences and are inserted.
    pub fn lock(&self, studio: &StudioId) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        studio.hash(&mut hasher);
        crate::lock::lock(&self.stripes[hasher.finish() as usize % STRIPES])
    }
}
