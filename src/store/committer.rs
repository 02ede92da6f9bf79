//! Group commit: one thread makes writes durable for every request waiting at that moment.
//!
//! sled 0.34.7's `flush_async` deadlocks with a handful of concurrent callers, and its `flush`
//! ends in `sync_file_range`, which persists neither the drive's write cache nor the file size.
//! So a single thread runs `flush()`, syncs any blob files sled wrote (see `blobs`), runs
//! `fdatasync` on the database file, and answers every ticket that was queued before the flush
//! began. Under load one flush serves many acknowledgements; when idle a lone request pays one
//! flush. Before the flush it writes the seen-marks of those requests as one chunk, and after
//! answering them it packs small chunks.

use std::fs::File;
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::blobs::BlobFiles;
use super::seen::SeenMarks;

type Ticket = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Committer {
    tickets: mpsc::Sender<Ticket>,
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
        thread::Builder::new()
            .name("gymrelay-commit".into())
            .spawn(move || run(db, db_file, blobs, marks, queue))?;
        Ok(Committer { tickets })
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

fn run(
    db: sled::Db,
    db_file: File,
    mut blobs: BlobFiles,
    marks: SeenMarks,
    queue: mpsc::Receiver<Ticket>,
) {
    let mut batch = Vec::new();
    while let Ok(first) = queue.recv() {
        batch.push(first);
        batch.extend(queue.try_iter());
        // Every request with a ticket here made its marks before sending the ticket.
        let result = marks
            .write_unwritten()
            .and_then(|_| db.flush())
            .map_err(|e| e.to_string())
            .and_then(|_| blobs.sync_new().map_err(|e| format!("blob files: {e}")))
            .and_then(|_| db_file.sync_data().map_err(|e| e.to_string()));
        if let Err(e) = &result {
            tracing::error!(error = %e, "storage flush failed");
        }
        for ticket in batch.drain(..) {
            let _ = ticket.send(result.clone());
        }
        if let Err(e) = marks.pack_if_due() {
            tracing::error!(error = %e, "packing seen uuids failed");
        }
    }
}
