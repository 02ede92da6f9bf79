//! Everything on disk: which uuids each studio has seen, and each studio's inbox of events
//! waiting for enrichment and delivery. Callers never see sled.

mod arrival_order;
mod backup;
mod blobs;
mod committer;
mod counts;
mod digest;
mod digest_set;
mod reconcile;
mod seen;
mod sled_files;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use arrival_order::ArrivalOrder;
pub use backup::{BackupReport, RestoreError};
use blobs::BlobFiles;
pub use committer::CommitError;
use committer::Committer;
use counts::Counts;
use digest::UuidDigest;
pub use reconcile::{FingerprintUpdate, Queued, ReconcileStore};
use seen::SeenMarks;

use crate::event::{DeadLetter, QueuedEvent};
use crate::tenant::StudioId;

pub const SEGMENT_SIZE: usize = 1024 * 1024;

/// The largest value the store keeps in its synced log: sled writes values over a quarter of a
/// segment to blob files it never syncs. Every stored event must stay below it.
pub const MAX_VALUE_BYTES: usize = SEGMENT_SIZE / 4;

/// Where the store lives and how much of it sled may cache.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub path: std::path::PathBuf,
    pub cache_capacity_bytes: u64,
}

/// Tree names say what maps to what.
const INBOX: &str = "studio-seq-event";
/// Same keys as the inbox: an event keeps its key when buried and when replayed.
const DEAD: &str = "studio-seq-dead_letter";
const BUDGETS: &str = "studio-open_api_budget";
/// Inbox entries that cannot be decoded, moved aside with their bytes as they were, so that one
/// bad entry neither blocks its studio nor is lost.
const UNREADABLE: &str = "studio-seq-unreadable_entry";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("cannot open storage at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("unreadable stored entry: {0}")]
    Corrupt(String),
}

/// Outcome of recording a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    Accepted,
    Duplicate,
}

/// One event in a studio's inbox, with the key that removes it.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    key: Vec<u8>,
    pub event: QueuedEvent,
}

impl InboxEntry {
    /// Whether both are the same inbox entry.
    pub fn is(&self, other: &InboxEntry) -> bool {
        self.key == other.key
    }

    fn studio(&self) -> &str {
        let studio = self.key.split(|b| *b == 0).next().unwrap_or_default();
        std::str::from_utf8(studio).unwrap_or_default()
    }

    /// Its place in arrival order (see [`Store::sequence`]).
    pub fn sequence(&self) -> u64 {
        sequence_of(&self.key)
    }

    /// An entry as the store would read it, for tests of what consumes entries.
    #[cfg(test)]
    pub fn for_test(studio: &StudioId, sequence: u64, event: QueuedEvent) -> InboxEntry {
        InboxEntry {
            key: studio_key(studio, &sequence.to_be_bytes()),
            event,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    seen: SeenMarks,
    inbox: sled::Tree,
    dead: sled::Tree,
    budgets: sled::Tree,
    unreadable: sled::Tree,
    /// Added to sled's ids to make sequences (see [`Store::next_sequence`]).
    sequence_offset: u64,
    reconcile: ReconcileStore,
    committer: Committer,
    /// Entries per studio in the inbox and the dead letters, moved by every insert and removal.
    waiting: Counts,
    buried: Counts,
    arrival_order: ArrivalOrder,
}

/// A dead letter with its id (`<studio>:<sequence>`), as listed by the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetterEntry {
    pub id: String,
    pub studio: String,
    #[serde(flatten)]
    pub letter: DeadLetter,
}

impl Store {
    pub fn open(config: &StoreSettings) -> Result<Store, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: config.path.display().to_string(),
            reason,
        };
        // What a crash or power loss can leave that sled would refuse (see `sled_files`).
        let removed = sled_files::remove_unfinished(&config.path)
            .map_err(|e| open_error(format!("unfinished files: {e}")))?;
        for file in removed {
            tracing::warn!(path = %config.path.display(), %file, "removed a file that sled left unfinished at a crash or power loss");
        }
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity_bytes)
            // sled writes values over a quarter of a segment to blob files it never syncs.
            // 1 MiB segments put that limit at 256 KiB, above the largest event stored (64 KiB
            // body plus an Open API response capped at 128 KiB). Fixed once a store exists.
            .segment_size(SEGMENT_SIZE)
            .open()
            .map_err(|e| open_error(e.to_string()))?;
        // sled keeps its log in `<path>/db`; fdatasync on it is what makes a flush survive power loss.
        let db_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(config.path.join("db"))
            .map_err(|e| open_error(format!("db file: {e}")))?;
        sled_files::sync_conf(&config.path).map_err(|e| open_error(format!("sync conf: {e}")))?;
        // The directory entries of a newly created database must survive a power loss too.
        std::fs::File::open(&config.path)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| open_error(format!("sync directory: {e}")))?;
        let seen = SeenMarks::open(&db)?;
        let blobs = BlobFiles::of_store(&config.path);
        let committer = Committer::start(db.clone(), db_file, blobs, seen.clone())
            .map_err(|e| open_error(e.to_string()))?;
        let inbox = db.open_tree(INBOX)?;
        let dead = db.open_tree(DEAD)?;
        let unreadable = db.open_tree(UNREADABLE)?;
        let waiting = Counts::of(&inbox)?;
        let buried = Counts::of(&dead)?;
        // sled's id counter is not part of what a copy of the store (a backup, a restore)
        // carries: a copy would hand out sequences its entries already have, and a new event
        // would overwrite a waiting one. Sequences are lifted above every one held.
        let mut highest =
            highest_sequence(&inbox, &waiting)?.max(highest_sequence(&dead, &buried)?);
        // Entries set aside are few: each is looked at.
        for key in unreadable.iter().keys() {
            highest = highest.max(Some(sequence_of(&key?)));
        }
        let next = db.generate_id()?;
        let sequence_offset = highest.map_or(0, |h| (h + 1).saturating_sub(next));
        Ok(Store {
            seen,
            waiting,
            buried,
            inbox,
            dead,
            budgets: db.open_tree(BUDGETS)?,
            unreadable,
            sequence_offset,
            reconcile: ReconcileStore::open(&db)?,
            arrival_order: ArrivalOrder::default(),
            db,
            committer,
        })
    }

    /// Appends `events` to the studio's inbox and records `uuid` as seen (in that order, see
    /// `record`), then waits until that is on disk. A uuid already seen changes nothing, but still waits for
    /// the disk: the first copy may be in the same group commit, and a duplicate must not be
    /// acknowledged before the original is durable.
    pub async fn intake(
        &self,
        studio: &StudioId,
        uuid: &str,
        events: &[QueuedEvent],
        now_ms: i64,
    ) -> Result<Intake, StoreError> {
        let outcome = self.record(studio, uuid, events, now_ms)?;
        self.committer.durable().await?;
        Ok(outcome)
    }

    /// The write half of [`Store::intake`] without waiting for the disk, for the micro bench:
    /// the mark is written as a group commit of this one request would write it.
    #[doc(hidden)]
    pub fn record_for_bench(
        &self,
        studio: &StudioId,
        uuid: &str,
        events: &[QueuedEvent],
        now_ms: i64,
    ) -> Result<Intake, StoreError> {
        let outcome = self.record(studio, uuid, events, now_ms)?;
        self.seen.write_unwritten()?;
        Ok(outcome)
    }

    fn record(
        &self,
        studio: &StudioId,
        uuid: &str,
        events: &[QueuedEvent],
        now_ms: i64,
    ) -> Result<Intake, StoreError> {
        let digest = UuidDigest::of(studio, uuid);
        let values = events
            .iter()
            .map(|event| serde_json::to_vec(event).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        // Two copies of one notification arriving together cannot both write: the loser waits
        // here and then finds the winner's mark.
        let claim = self.seen.claim(digest);
        if claim.already_seen() {
            return Ok(Intake::Duplicate);
        }
        // Until the inserts below are done, no later entry of this studio may take a sequence.
        let _in_order = self.arrival_order.lock(studio);
        let mut entries = Vec::with_capacity(values.len());
        for value in values {
            let seq = self.next_sequence()?;
            entries.push((studio_key(studio, &seq.to_be_bytes()), value));
        }
        // Queued first, marked seen last (the group commit writes the mark after these inserts,
        // before its flush). sled recovers a prefix of its log, so a crash can
        // leave an event queued but not marked seen (a resend is then delivered twice) and never
        // marked seen but not queued (a resend would be dropped as a duplicate). This ordering
        // replaces a multi-tree transaction: sled's transactions take a global lock that queued
        // every request behind the group commit's flush (8k/s against 30k+/s measured).
        // Counted before they can be seen, so a worker that finishes one at once cannot
        // subtract first.
        self.waiting.add(studio.as_str(), entries.len());
        for (i, (key, value)) in entries.iter().enumerate() {
            if let Err(e) = self.inbox.insert(&key[..], &value[..]) {
                self.waiting.remove(studio.as_str(), entries.len() - i);
                return Err(e.into());
            }
        }
        claim.mark(now_ms);
        Ok(Intake::Accepted)
    }

    /// A point in arrival order: every event queued before this call has a lower sequence,
    /// every later one a higher. Monotonic across restarts, unlike the wall clock.
    pub fn sequence(&self) -> Result<u64, StoreError> {
        Ok(self.next_sequence()?)
    }

    /// The next place in arrival order, above every entry the store held when it opened.
    fn next_sequence(&self) -> sled::Result<u64> {
        Ok(self.db.generate_id()? + self.sequence_offset)
    }

    /// The oldest events waiting for `studio`, in arrival order.
    pub fn pending(&self, studio: &StudioId, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        self.pending_after(studio, None, limit)
    }

    /// Up to `limit` events waiting for `studio` that come after sequence `after` in arrival
    /// order (from the oldest if None): how a worker reads ahead of what it already holds.
    pub fn pending_after(
        &self,
        studio: &StudioId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let start = match after {
            Some(seq) => studio_key(studio, &seq.saturating_add(1).to_be_bytes()),
            None => studio_key(studio, b""),
        };
        let end = studio_key(studio, &[0xff; 9]);
        let mut entries = Vec::new();
        for item in self.inbox.range(start..end) {
            if entries.len() >= limit {
                break;
            }
            let (key, value) = item?;
            match serde_json::from_slice(&value) {
                Ok(event) => entries.push(InboxEntry {
                    key: key.to_vec(),
                    event,
                }),
                Err(e) => self.set_aside(studio, &key, &value, &e.to_string())?,
            }
        }
        Ok(entries)
    }

    /// Moves an undecodable inbox entry to the unreadable entries, bytes unchanged.
    fn set_aside(
        &self,
        studio: &StudioId,
        key: &[u8],
        value: &[u8],
        error: &str,
    ) -> Result<(), StoreError> {
        tracing::error!(%studio, sequence = sequence_of(key), %error, "an inbox entry cannot be read: set aside in the store's unreadable entries, not delivered");
        let moved = (&self.inbox, &self.unreadable).transaction(|(inbox, unreadable)| {
            unreadable.insert(key, value)?;
            Ok::<_, ConflictableTransactionError<StoreError>>(inbox.remove(key)?.is_some())
        });
        if transaction_result(moved)? {
            self.waiting.remove(studio.as_str(), 1);
        }
        Ok(())
    }

    /// Number of events waiting for `studio`.
    pub fn pending_count(&self, studio: &StudioId) -> usize {
        self.waiting.get(studio.as_str())
    }

    /// Saves progress (enrichment, sinks delivered). Not waited on: losing it in a crash only
    /// repeats work, and sinks deduplicate by event id.
    pub fn save(&self, entry: &InboxEntry) -> Result<(), StoreError> {
        let value =
            serde_json::to_vec(&entry.event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.inbox.insert(&entry.key[..], value)?;
        Ok(())
    }

    /// Removes an event every sink has. Made durable by sled's periodic flush or the next group
    /// commit; a crash before that redelivers it (at least once, never lost).
    pub fn finish(&self, entry: &InboxEntry) -> Result<(), StoreError> {
        if self.inbox.remove(&entry.key[..])?.is_some() {
            self.waiting.remove(entry.studio(), 1);
        }
        Ok(())
    }

    /// Moves an event from the inbox to the dead letters, in one transaction.
    pub fn bury(&self, entry: &InboxEntry, letter: &DeadLetter) -> Result<(), StoreError> {
        let value = serde_json::to_vec(letter).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Counted before it can be replayed (see `record`).
        self.buried.add(entry.studio(), 1);
        let result = (&self.inbox, &self.dead).transaction(|(inbox, dead)| {
            let was_waiting = inbox.remove(&entry.key[..])?.is_some();
            let was_buried = dead.insert(&entry.key[..], &value[..])?.is_some();
            Ok::<_, ConflictableTransactionError<StoreError>>((was_waiting, was_buried))
        });
        let (was_waiting, was_buried) = transaction_result(result).inspect_err(|_| {
            self.buried.remove(entry.studio(), 1);
        })?;
        if was_waiting {
            self.waiting.remove(entry.studio(), 1);
        }
        if was_buried {
            self.buried.remove(entry.studio(), 1);
        }
        Ok(())
    }

    /// Dead letters of one studio, or of all, oldest first.
    pub fn dead_letters(
        &self,
        studio: Option<&StudioId>,
    ) -> Result<Vec<DeadLetterEntry>, StoreError> {
        let prefix = studio.map(|s| studio_key(s, b"")).unwrap_or_default();
        self.dead
            .scan_prefix(prefix)
            .map(|item| {
                let (key, value) = item?;
                let letter: DeadLetter = serde_json::from_slice(&value)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let (studio, seq) = split_key(&key)?;
                Ok(DeadLetterEntry {
                    id: format!("{studio}:{seq}"),
                    studio,
                    letter,
                })
            })
            .collect()
    }

    pub fn dead_letter_count(&self, studio: &StudioId) -> usize {
        self.buried.get(studio.as_str())
    }

    /// Puts a dead letter back into its studio's inbox at its original place, so it is next.
    /// Its entity is fetched again (answers are never stored), and it goes only to the sinks
    /// that do not have it. Returns its studio.
    pub fn replay(&self, id: &str) -> Result<Option<StudioId>, StoreError> {
        let Some((studio, seq)) = id.rsplit_once(':') else {
            return Ok(None);
        };
        let (Ok(studio), Ok(seq)) = (StudioId::parse(studio), seq.parse::<u64>()) else {
            return Ok(None);
        };
        let key = studio_key(&studio, &seq.to_be_bytes());
        // Counted before the worker can see it (see `record`), taken back if nothing moved.
        self.waiting.add(studio.as_str(), 1);
        let result = (&self.inbox, &self.dead).transaction(|(inbox, dead)| {
            let Some(value) = dead.remove(&key[..])? else {
                return Ok(None);
            };
            let mut letter: DeadLetter = serde_json::from_slice(&value)
                .map_err(|e| abort(StoreError::Corrupt(format!("dead letter: {e}"))))?;
            letter.event.failing_since_ms = None;
            let event = serde_json::to_vec(&letter.event)
                .map_err(|e| abort(StoreError::Corrupt(e.to_string())))?;
            let was_waiting = inbox.insert(&key[..], event)?.is_some();
            Ok(Some(was_waiting))
        });
        let moved = transaction_result(result);
        if !matches!(moved, Ok(Some(false))) {
            self.waiting.remove(studio.as_str(), 1);
        }
        if moved?.is_none() {
            return Ok(None);
        }
        self.buried.remove(studio.as_str(), 1);
        Ok(Some(studio))
    }

    /// Age in milliseconds of the oldest waiting event of `studio`, relative to `now_ms`.
    pub fn oldest_pending_age_ms(&self, studio: &StudioId, now_ms: i64) -> Option<i64> {
        // Read on every scrape for every studio: decode only the one field, not the event with
        // its fetched entity.
        #[derive(serde::Deserialize)]
        struct Received {
            received_at_ms: i64,
        }
        let (_, value) = self
            .inbox
            .scan_prefix(studio_key(studio, b""))
            .next()?
            .ok()?;
        let head: Received = serde_json::from_slice(&value).ok()?;
        Some((now_ms - head.received_at_ms).max(0))
    }

    /// Reconcile's fingerprints, sweep records and the relay's heartbeat.
    pub fn reconcile(&self) -> &ReconcileStore {
        &self.reconcile
    }

    /// A studio's recent Open API use, so a restart does not forget the current minute.
    pub fn save_budget(&self, studio: &StudioId, snapshot: &[u8]) -> Result<(), StoreError> {
        self.budgets.insert(studio.as_str().as_bytes(), snapshot)?;
        Ok(())
    }

    pub fn load_budget(&self, studio: &StudioId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .budgets
            .get(studio.as_str().as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Forgets uuids first seen before `cutoff_ms`; returns how many.
    pub fn prune_seen(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        Ok(self.seen.prune(cutoff_ms)?)
    }

    /// Removes every dead letter of `studio` about `customer` (see `About`); returns how many.
    /// Events still waiting are not touched: they hold no answer from the Open API, only ids,
    /// and are delivered with a fresh answer.
    pub fn erase_dead_letters(
        &self,
        studio: &StudioId,
        customer: i64,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.dead.scan_prefix(studio_key(studio, b"")) {
            let (key, value) = item?;
            let Ok(letter) = serde_json::from_slice::<BuriedAbout>(&value) else {
                tracing::error!(%studio, sequence = sequence_of(&key), "a dead letter cannot be read; erase passed over it");
                continue;
            };
            if letter.event.is_about(customer) && self.unbury(studio.as_str(), &key)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Events of `studio` about `customer` still waiting in its inbox.
    pub fn pending_about(&self, studio: &StudioId, customer: i64) -> Result<usize, StoreError> {
        let mut count = 0;
        for item in self.inbox.scan_prefix(studio_key(studio, b"")) {
            let (_, value) = item?;
            // Unreadable entries are the worker's to set aside.
            if let Ok(event) = serde_json::from_slice::<About>(&value) {
                count += usize::from(event.is_about(customer));
            }
        }
        Ok(count)
    }

    /// Removes one dead letter, keeping the count; false if it was gone already (replayed).
    fn unbury(&self, studio: &str, key: &[u8]) -> Result<bool, StoreError> {
        let removed = self.dead.remove(key)?.is_some();
        if removed {
            self.buried.remove(studio, 1);
        }
        Ok(removed)
    }

    /// Removes dead letters buried before `cutoff_ms`; returns how many, by studio.
    pub fn prune_dead_letters(&self, cutoff_ms: i64) -> Result<Vec<(String, usize)>, StoreError> {
        // Only the one field is decoded: a dead letter holds the whole event.
        #[derive(serde::Deserialize)]
        struct Buried {
            dead_at_ms: i64,
        }
        let mut removed: std::collections::BTreeMap<String, usize> = Default::default();
        for item in self.dead.iter() {
            let (key, value) = item?;
            let expired =
                serde_json::from_slice::<Buried>(&value).is_ok_and(|b| b.dead_at_ms < cutoff_ms);
            if expired {
                let (studio, _) = split_key(&key)?;
                if self.unbury(&studio, &key)? {
                    *removed.entry(studio).or_default() += 1;
                }
            }
        }
        Ok(removed.into_iter().collect())
    }

    /// Studios that have events waiting, with their counts (also those without a tenant file).
    pub fn pending_by_studio(&self) -> Vec<(String, usize)> {
        self.waiting.all()
    }

    /// Writes a copy of the whole store to `to` (a new or empty directory) while the relay
    /// runs; see `backup`. Blocks: call it off the async threads.
    pub fn backup_to(&self, to: &std::path::Path) -> Result<BackupReport, StoreError> {
        backup::copy(&self.db, to)
    }

    /// Puts the backup at `from` in place as the store at `settings.path` (new or empty) and
    /// opens it once, so a copy that would not open is found now, not at the relay's start.
    /// Returns the events waiting in it per studio.
    pub async fn restore(
        from: &std::path::Path,
        settings: &StoreSettings,
    ) -> Result<Vec<(String, usize)>, RestoreError> {
        let to = &settings.path;
        backup::place(from, to)?;
        let opened = Store::open(settings);
        let store = match opened {
            Ok(store) => store,
            Err(e) => {
                if let Err(cleanup) = backup::take_back(to) {
                    tracing::error!(path = %to.display(), error = %cleanup, "cannot remove the restored copy that does not open");
                }
                return Err(RestoreError::DoesNotOpen {
                    to: to.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let pending = store.pending_by_studio();
        // Opening writes sled's own files; they must be on disk before the relay counts on them.
        store.sync().await.map_err(|e| RestoreError::DoesNotOpen {
            to: to.clone(),
            reason: e.to_string(),
        })?;
        Ok(pending)
    }

    /// Resolves with the reason at the first failed sync (see the committer).
    pub async fn sync_failed(&self) -> String {
        self.committer.failed().await
    }

    /// Makes everything written so far durable (used at shutdown).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.committer.durable().await?;
        Ok(())
    }
}

/// What a transaction aborts with: the error it ends with.
fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn transaction_result<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    match result {
        Ok(value) => Ok(value),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

/// What an event is about, read without the rest of it (a backlog can be long).
#[derive(serde::Deserialize)]
struct About {
    event_type: String,
    entity_id: Option<i64>,
}

impl About {
    /// Whether the event is one of the member's own (the vendor's table decides which types'
    /// `entityId` is a customer).
    fn is_about(&self, customer: i64) -> bool {
        crate::route::is_about_customer(&self.event_type, self.entity_id, customer)
    }
}

/// The same, inside a dead letter.
#[derive(serde::Deserialize)]
struct BuriedAbout {
    event: About,
}

/// The highest sequence among the keys of `tree` (`studio \0 sequence`): the last key of each
/// studio that `counts` found in it.
fn highest_sequence(tree: &sled::Tree, counts: &Counts) -> sled::Result<Option<u64>> {
    let mut highest = None;
    for (studio, _) in counts.all() {
        let mut prefix = studio.into_bytes();
        prefix.push(0);
        if let Some(key) = tree.scan_prefix(prefix).keys().next_back() {
            highest = highest.max(Some(sequence_of(&key?)));
        }
    }
    Ok(highest)
}

/// The sequence at the end of an inbox key.
fn sequence_of(key: &[u8]) -> u64 {
    let tail = &key[key.len().saturating_sub(8)..];
    tail.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// Splits `studio \0 seq` back into its parts.
fn split_key(key: &[u8]) -> Result<(String, u64), StoreError> {
    let corrupt = || StoreError::Corrupt("malformed key".into());
    let nul = key.iter().position(|b| *b == 0).ok_or_else(corrupt)?;
    let seq: [u8; 8] = key[nul + 1..].try_into().map_err(|_| corrupt())?;
    Ok((
        String::from_utf8_lossy(&key[..nul]).into_owned(),
        u64::from_be_bytes(seq),
    ))
}

/// `studio \0 suffix`: studio ids never contain NUL, so a studio's keys form one prefix range.
fn studio_key(studio: &StudioId, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(studio.as_str().len() + 1 + suffix.len());
    key.extend_from_slice(studio.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(suffix);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path) -> StoreSettings {
        StoreSettings {
            path: dir.join("data"),
            cache_capacity_bytes: 16 * 1024 * 1024,
        }
    }

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&settings(dir)).unwrap()
    }

    /// The committer thread holds the last handle briefly after the store is dropped.
    fn reopen(dir: &std::path::Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Store::open(&settings(dir)) {
                Ok(store) => return store,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    fn event(id: &str) -> QueuedEvent {
        QueuedEvent {
            id: id.into(),
            event_type: "CUSTOMER_UPDATED".into(),
            entity_id: Some(1),
            occurred_at_ms: 0,
            received_at_ms: 0,
            content: None,
            enriched: None,
            delivered_to: vec![],
            attempts: vec![],
            failing_since_ms: None,
            decided_route: None,
        }
    }

    #[actix_rt::test]
    async fn dedupes_per_studio_keeps_order_and_prunes_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (a, b) = (StudioId::parse("a").unwrap(), StudioId::parse("b").unwrap());
        for id in ["u1", "u2", "u3"] {
            let outcome = store.intake(&a, id, &[event(id)], 1_000).await.unwrap();
            assert_eq!(outcome, Intake::Accepted);
        }
        assert_eq!(
            store.intake(&a, "u1", &[event("u1")], 2_000).await.unwrap(),
            Intake::Duplicate
        );
        assert_eq!(
            store.intake(&b, "u1", &[event("u1")], 2_000).await.unwrap(),
            Intake::Accepted,
            "another studio's uuid space"
        );
        let pending = store.pending(&a, 10).unwrap();
        let ids: Vec<_> = pending.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(ids, ["u1", "u2", "u3"]);
        store.finish(&pending[0]).unwrap();
        assert_eq!(store.pending_count(&a), 2);

        // u1..u3 of studio a were seen at 1_000, b's u1 at 2_000.
        assert_eq!(store.prune_seen(1_500).unwrap(), 3);
        assert_eq!(
            store.intake(&a, "u1", &[event("u1")], 3_000).await.unwrap(),
            Intake::Accepted,
            "forgotten after retention"
        );
        assert_eq!(
            store.intake(&b, "u1", &[event("u1")], 3_000).await.unwrap(),
            Intake::Duplicate
        );
        assert_eq!(
            store.pending_by_studio(),
            [("a".to_string(), 3), ("b".to_string(), 1)]
        );
    }

    #[actix_rt::test]
    async fn a_restored_copy_queues_new_events_after_the_ones_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let a = StudioId::parse("a").unwrap();
        // sled moves its id counter on at every open: the source has been restarted more
        // often than its copy will be.
        for _ in 0..3 {
            drop(reopen(dir.path()));
        }
        let source = reopen(dir.path());
        for id in ["u1", "u2"] {
            source.intake(&a, id, &[event(id)], 0).await.unwrap();
        }
        let pending = source.pending(&a, 10).unwrap();
        let letter = DeadLetter {
            event: pending[1].event.clone(),
            stage: "enrichment".into(),
            reason: "test".into(),
            dead_at_ms: 0,
        };
        source.bury(&pending[1], &letter).unwrap();
        let backup = dir.path().join("backup");
        source.backup_to(&backup).unwrap();

        let restored = Store::open(&StoreSettings {
            path: backup,
            cache_capacity_bytes: 16 * 1024 * 1024,
        })
        .unwrap();
        restored.intake(&a, "u3", &[event("u3")], 0).await.unwrap();
        let waiting = restored.pending(&a, 10).unwrap();
        let ids: Vec<_> = waiting.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(ids, ["u1", "u3"], "in arrival order");
        assert!(
            waiting[1].sequence() > pending[1].sequence(),
            "above the dead letter's too"
        );
        assert_eq!(restored.dead_letter_count(&a), 1);
    }

    #[actix_rt::test]
    async fn counts_follow_finish_bury_and_replay_and_are_recounted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let a = StudioId::parse("a").unwrap();
        let store = store(dir.path());
        for id in ["u1", "u2", "u3"] {
            store.intake(&a, id, &[event(id)], 0).await.unwrap();
        }
        let pending = store.pending(&a, 10).unwrap();
        store.finish(&pending[0]).unwrap();
        store.finish(&pending[0]).unwrap();
        let letter = DeadLetter {
            event: pending[1].event.clone(),
            stage: "enrichment".into(),
            reason: "test".into(),
            dead_at_ms: 0,
        };
        store.bury(&pending[1], &letter).unwrap();
        assert_eq!(
            (store.pending_count(&a), store.dead_letter_count(&a)),
            (1, 1)
        );
        let id = store.dead_letters(Some(&a)).unwrap().remove(0).id;
        assert_eq!(store.replay(&id).unwrap(), Some(a.clone()));
        assert_eq!(store.replay(&id).unwrap(), None, "already replayed");
        assert_eq!(
            (store.pending_count(&a), store.dead_letter_count(&a)),
            (2, 0)
        );
        store.bury(&pending[2], &letter).unwrap();
        store.sync().await.unwrap();
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(
            (store.pending_count(&a), store.dead_letter_count(&a)),
            (1, 1)
        );
        assert_eq!(store.pending_by_studio(), [("a".to_string(), 1)]);
    }

    #[actix_rt::test]
    async fn reading_ahead_starts_after_the_last_entry_held() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (StudioId::parse("a").unwrap(), StudioId::parse("b").unwrap());
        let store = store(dir.path());
        for id in ["u1", "u2", "u3"] {
            store.intake(&a, id, &[event(id)], 0).await.unwrap();
        }
        store.intake(&b, "u4", &[event("u4")], 0).await.unwrap();
        let first = store.pending_after(&a, None, 1).unwrap();
        assert_eq!(first[0].event.id, "u1");
        let rest = store
            .pending_after(&a, Some(first[0].sequence()), 10)
            .unwrap();
        let ids: Vec<_> = rest.iter().map(|e| e.event.id.as_str()).collect();
        assert_eq!(ids, ["u2", "u3"], "nothing of studio b");
        let last = rest[1].sequence();
        assert!(store.pending_after(&a, Some(last), 10).unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn an_unreadable_entry_is_set_aside_and_the_rest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = StudioId::parse("a").unwrap();
        let store = store(dir.path());
        for id in ["u1", "u2", "u3"] {
            store.intake(&a, id, &[event(id)], 0).await.unwrap();
        }
        let second = store.pending(&a, 3).unwrap().remove(1);
        store
            .inbox
            .insert(&second.key[..], &b"{not json"[..])
            .unwrap();
        let ids: Vec<_> = store
            .pending(&a, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.event.id)
            .collect();
        assert_eq!(ids, ["u1", "u3"]);
        assert_eq!(store.pending_count(&a), 2);
        assert_eq!(
            store.unreadable.get(&second.key[..]).unwrap().as_deref(),
            Some(&b"{not json"[..]),
            "kept as it was"
        );
    }

    #[actix_rt::test]
    async fn dead_letters_past_retention_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let a = StudioId::parse("a").unwrap();
        let store = store(dir.path());
        for id in ["u1", "u2"] {
            store.intake(&a, id, &[event(id)], 0).await.unwrap();
        }
        for (entry, dead_at_ms) in store.pending(&a, 2).unwrap().iter().zip([1_000, 5_000]) {
            let letter = DeadLetter {
                event: entry.event.clone(),
                stage: "sink:x".into(),
                reason: "test".into(),
                dead_at_ms,
            };
            store.bury(entry, &letter).unwrap();
        }
        assert_eq!(
            store.prune_dead_letters(2_000).unwrap(),
            [("a".to_string(), 1)]
        );
        let left = store.dead_letters(Some(&a)).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].letter.event.id, "u2");
        assert_eq!(store.dead_letter_count(&a), 1);
    }

    #[actix_rt::test]
    async fn progress_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let a = StudioId::parse("a").unwrap();
        {
            let store = store(dir.path());
            store.intake(&a, "u1", &[event("u1")], 0).await.unwrap();
            let mut entry = store.pending(&a, 1).unwrap().remove(0);
            entry.event.delivered_to.push("file:x".into());
            store.save(&entry).unwrap();
            store.sync().await.unwrap();
        }
        let store = reopen(dir.path());
        let entry = store.pending(&a, 1).unwrap().remove(0);
        assert_eq!(entry.event.delivered_to, ["file:x"]);
    }

    #[actix_rt::test]
    async fn large_events_that_sled_writes_to_blob_files_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let studio = StudioId::parse("a").unwrap();
        let mut large = serde_json::Map::new();
        large.insert("note".into(), "x".repeat(40 * 1024).into());
        {
            let store = store(dir.path());
            for i in 0..20 {
                let uuid = format!("u{i}");
                let mut queued = event(&uuid);
                queued.content = Some(large.clone());
                let intake = store.intake(&studio, &uuid, &[queued], 1_000).await;
                assert_eq!(intake.unwrap(), Intake::Accepted);
            }
        }
        // A leaf of 16 such events is over a quarter segment: this is the path the group
        // commit syncs.
        let blobs = std::fs::read_dir(dir.path().join("data/blobs")).unwrap();
        assert!(
            blobs.count() > 0,
            "no blob files: the test no longer covers them"
        );
        let store = reopen(dir.path());
        assert_eq!(store.pending(&studio, 100).unwrap().len(), 20);
    }
}
