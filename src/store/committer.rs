//! Group commit: one thread makes writes durable for every request waiting at that moment.
//!
//! sled 0.34.7's `flush_async` deadlocks with a handful of concurrent callers, and its `flush`
//! ends in `sync_file_range`, which persists neither the drive's write cache nor the file size.
//! So a single thread runs `flush()`, syncs any blob files sled wrote (see `blobs`), runs
//! `fdatasync` on the database file, and answers every ticket that was queued before the flush
//! began. Under load one flush serves many acknowledgements; when idle a lone request pays one
//! flush. Before the flush it writes the seen-marks of those requests as one chunk, and after
//! answering them it packs small chunks. When idle it still syncs blob files written outside
//! any commit. After a failed sync it acknowledges nothing more until restarted.

use std::fs::File;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use super::blobs::BlobFiles;
use super::seen::SeenMarks;

type Ticket = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Committer {
    tickets: mpsc::Sender<Ticket>,
    /// Set once, at the first failed sync.
    failure: tokio::sync::watch::Receiver<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("storage could not be made durable: {0}")]
pub struct CommitError(pub String);

impl Committer {
    /// Starts the committer thread. It ends when every `Committer` clone is dropped.
    pub fn start(
        db: sled::Db,
        db_file: File,
        blobs: BlobFiles,
        marks: SeenMarks,
    ) -> std::io::Result<Committer> {
        let (tickets, queue) = mpsc::channel::<Ticket>();
        let (failed, failure) = tokio::sync::watch::channel(None);
        thread::Builder::new()
            .name("gymrelay-commit".into())
            .spawn(move || run(db, db_file, blobs, marks, queue, failed))?;
        Ok(Committer { tickets, failure })
    }

    /// Resolves with the reason at the first failed sync (never, if none fails). After it,
    /// nothing is acknowledged again: the process must restart and read back what is on disk.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.clone();
        let reason = match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => return std::future::pending().await,
        };
        reason
    }

    /// Resolves once everything written before this call is on disk.
    pub async fn durable(&self) -> Result<(), CommitError> {
        let (tx, rx) = oneshot::channel();
        self.tickets
            .send(tx)
            .map_err(|_| CommitError("committer stopped".into()))?;
        match rx.await {
            Ok(result) => result.map_err(CommitError),
            Err(_) => Err(CommitError("committer stopped".into())),
        }
    }
}

/// How often an idle committer looks for blob files written outside any commit: delivering
/// events rewrites inbox leaves, and sled may write such a leaf as a new blob and delete the
/// old one, with no request waiting to make that durable.
const IDLE_BLOB_CHECK: Duration = Duration::from_millis(200);

fn run(
    db: sled::Db,
    db_file: File,
    mut blobs: BlobFiles,
    marks: SeenMarks,
    queue: mpsc::Receiver<Ticket>,
    told: tokio::sync::watch::Sender<Option<String>>,
) {
    let mut batch = Vec::new();
    // After a failed sync Linux may drop the pages it could not write and mark them clean, so
    // a later sync can succeed without them. Nothing is acknowledged after the first failure;
    // a restart reads back what is really on disk.
    let mut failed: Option<String> = None;
    loop {
        let first = match queue.recv_timeout(IDLE_BLOB_CHECK) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => {
                if failed.is_none() {
                    let _ = latch(&mut failed, sync_idle_blobs(&mut blobs, &db_file));
                    tell(&told, &failed);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        batch.push(first);
        batch.extend(queue.try_iter());
        let result = match &failed {
            Some(earlier) => Err(format!(
                "an earlier sync failed ({earlier}); restart the relay"
            )),
            None => latch(&mut failed, commit(&db, &db_file, &mut blobs, &marks)),
        };
        tell(&told, &failed);
        for ticket in batch.drain(..) {
            let _ = ticket.send(result.clone());
        }
        if failed.is_none() {
            if let Err(e) = marks.pack_if_due() {
                tracing::error!(error = %e, "packing seen uuids failed");
            }
        }
    }
}

/// Tells the relay of the first failure, once.
fn tell(told: &tokio::sync::watch::Sender<Option<String>>, failed: &Option<String>) {
    if failed.is_some() && told.borrow().is_none() {
        let _ = told.send(failed.clone());
    }
}

/// Remembers the first failure in `failed`, and logs it.
fn latch(failed: &mut Option<String>, result: Result<(), String>) -> Result<(), String> {
    if let Err(e) = &result {
        tracing::error!(error = %e, "storage sync failed; restart the relay");
        *failed = Some(e.clone());
    }
    result
}

/// Makes durable everything written before it began. Every request with a ticket in this
/// commit made its marks before sending the ticket.
fn commit(
    db: &sled::Db,
    db_file: &File,
    blobs: &mut BlobFiles,
    marks: &SeenMarks,
) -> Result<(), String> {
    marks
        .write_unwritten()
        .and_then(|_| db.flush())
        .map_err(|e| e.to_string())?;
    sync_new_blobs(blobs)?;
    sync_log(db_file)
}

/// Syncs blob files that appeared since the last commit, and the log that points at them.
fn sync_idle_blobs(blobs: &mut BlobFiles, db_file: &File) -> Result<(), String> {
    if sync_new_blobs(blobs)? > 0 {
        sync_log(db_file)?;
    }
    Ok(())
}

fn sync_new_blobs(blobs: &mut BlobFiles) -> Result<usize, String> {
    blobs.sync_new().map_err(|e| format!("blob files: {e}"))
}

fn sync_log(db_file: &File) -> Result<(), String> {
    db_file.sync_data().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committer over a real store whose log "file" is `/dev/null`: `fdatasync` on a device
    /// fails (EINVAL), as a failing disk would.
    fn committer_whose_sync_fails() -> (tempfile::TempDir, Committer) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let log = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let marks = SeenMarks::open(&db).unwrap();
        let committer = Committer::start(db, log, BlobFiles::of_store(dir.path()), marks).unwrap();
        (dir, committer)
    }

    fn durable(committer: &Committer) -> Result<(), CommitError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(committer.durable())
    }

    #[test]
    fn after_a_failed_sync_no_commit_succeeds() {
        let (_dir, committer) = committer_whose_sync_fails();
        let first = durable(&committer).unwrap_err().0;
        assert!(!first.contains("earlier"), "{first}");
        let second = durable(&committer).unwrap_err().0;
        assert!(
            second.contains("an earlier sync failed") && second.contains("restart the relay"),
            "{second}"
        );
    }

    #[test]
    fn an_idle_committer_with_no_new_blob_file_syncs_nothing() {
        let (_dir, committer) = committer_whose_sync_fails();
        std::thread::sleep(IDLE_BLOB_CHECK * 5);
        // The commit's own failure, not an earlier one from the idle check.
        let error = durable(&committer).unwrap_err().0;
        assert!(!error.contains("earlier"), "{error}");
    }

    #[test]
    fn a_blob_file_written_while_idle_is_synced_with_the_log() {
        let (dir, committer) = committer_whose_sync_fails();
        std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs").join("4096"), b"a page").unwrap();
        // No request arrives: only the idle check can find the blob and sync the log, and
        // that sync fails. Five idle periods, then the first commit reports the earlier
        // failure instead of its own.
        std::thread::sleep(IDLE_BLOB_CHECK * 5);
        let error = durable(&committer).unwrap_err().0;
        assert!(error.contains("an earlier sync failed"), "{error}");
    }
}
