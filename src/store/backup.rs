//! A copy of the store taken while the relay runs: every tree is read and written into a new
//! store at the target, which is then made durable. Intake is not paused. An event acknowledged
//! before the copy began is either still waiting or a dead letter, and then in the copy (see
//! `copy_trees` for the order), or already delivered. The copy is a store like any other: start a
//! relay with `storage.path` pointing at it, or put it in place with `gymrelay restore`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{StoreError, DEAD, INBOX, SEGMENT_SIZE, UNREADABLE};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub seconds: f64,
    pub bytes_on_disk: u64,
}

pub(super) fn copy(db: &sled::Db, to: &Path) -> Result<BackupReport, StoreError> {
    let started = Instant::now();
    let refuse = |reason: String| StoreError::Open {
        path: to.display().to_string(),
        reason,
    };
    if !is_new_or_empty(to) {
        return Err(refuse(
            "the backup target must be a new or empty directory".into(),
        ));
    }
    let copy = sled::Config::new()
        .path(to)
        .segment_size(SEGMENT_SIZE)
        .open()
        .map_err(|e| refuse(e.to_string()))?;
    let written = copy_trees(db, &copy).and_then(|()| {
        copy.flush()?;
        // sled's flush is not an fsync (see the committer): sync the copy's files and names.
        sync_dir_files(to)
            .and_then(|()| sync_parent(to))
            .map_err(|e| refuse(format!("sync: {e}")))?;
        Ok(copy.size_on_disk()?)
    });
    drop(copy);
    match written {
        Ok(bytes_on_disk) => Ok(BackupReport {
            path: to.to_path_buf(),
            seconds: started.elapsed().as_secs_f64(),
            bytes_on_disk,
        }),
        Err(e) => {
            // Emptied, so that the same target can be used again.
            if let Err(cleanup) = take_back(to) {
                tracing::error!(path = %to.display(), error = %cleanup, "cannot remove a backup that failed");
            }
            Err(e)
        }
    }
}

/// Every tree, those an event moves between first and in the order it moves (inbox, then
/// dead letters or set aside): an event buried while the copy runs is read in the inbox
/// before it moved, or in the dead letters after. (One replayed back into the inbox during
/// the copy may be missed; replay it again after a restore.)
fn copy_trees(db: &sled::Db, copy: &sled::Db) -> Result<(), StoreError> {
    let moves_in_order = [INBOX, DEAD, UNREADABLE].map(sled::IVec::from);
    let rest = db
        .tree_names()
        .into_iter()
        .filter(|name| !moves_in_order.contains(name));
    for name in moves_in_order.clone().into_iter().chain(rest) {
        let (from, to) = (db.open_tree(&name)?, copy.open_tree(&name)?);
        let mut batch = sled::Batch::default();
        for (i, entry) in from.iter().enumerate() {
            let (key, value) = entry?;
            batch.insert(key, value);
            if i % COPY_BATCH == COPY_BATCH - 1 {
                to.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        to.apply_batch(batch)?;
    }
    Ok(())
}

/// Entries written to the copy at a time.
const COPY_BATCH: usize = 1024;

fn is_new_or_empty(dir: &Path) -> bool {
    !dir.exists() || std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

fn sync_dir_files(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_dir_files(&path)?;
        } else {
            std::fs::File::open(&path)?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Why a backup could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{}: not a backup of a gymrelay store ({reason})", from.display())]
    NotABackup { from: PathBuf, reason: String },
    #[error("{}: not empty; a restore never overwrites a store: stop the relay and move this directory aside first", to.display())]
    TargetNotEmpty { to: PathBuf },
    #[error("copying {} to {}: {reason}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        reason: std::io::Error,
    },
    #[error("{}: the restored copy does not open ({reason}); it was removed again", to.display())]
    DoesNotOpen { to: PathBuf, reason: String },
}

/// Copies a backup's files into `to` (new or empty) and makes them and their names durable.
pub(super) fn place(from: &Path, to: &Path) -> Result<(), RestoreError> {
    for file in ["conf", "db"] {
        if !from.join(file).is_file() {
            return Err(RestoreError::NotABackup {
                from: from.to_path_buf(),
                reason: format!("no {file} file"),
            });
        }
    }
    if !is_new_or_empty(to) {
        return Err(RestoreError::TargetNotEmpty {
            to: to.to_path_buf(),
        });
    }
    let copy_error = |reason| RestoreError::Copy {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(to).map_err(copy_error)?;
    copy_tree(from, to)
        .and_then(|()| sync_dir_files(to))
        .and_then(|()| sync_parent(to))
        .map_err(copy_error)
}

/// Empties `to` again after a restore that did not open, keeping the directory itself.
pub(super) fn take_back(to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(to)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A new directory's own name is an entry of its parent, lost at a power cut until that is
/// synced too.
fn sync_parent(dir: &Path) -> std::io::Result<()> {
    let absolute = std::path::absolute(dir)?;
    match absolute.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}
