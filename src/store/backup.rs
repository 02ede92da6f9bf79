//! A copy of the store taken while the relay runs: every tree is read and written into a new
//! store at the target, which is then made durable. Intake is not paused. An event acknowledged
//! before the copy began is either still waiting, and then in the copy (entries that exist for
//! the whole copy are read), or already delivered. The copy is a store like any other: start a
//! relay with `storage.path` pointing at it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{StoreError, SEGMENT_SIZE};

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
    if to.exists() && std::fs::read_dir(to).map_or(true, |mut d| d.next().is_some()) {
        return Err(refuse(
            "the backup target must be a new or empty directory".into(),
        ));
    }
    let copy = sled::Config::new()
        .path(to)
        .segment_size(SEGMENT_SIZE)
        .open()
        .map_err(|e| refuse(e.to_string()))?;
    copy.import(db.export());
    copy.flush()?;
    // sled's flush is not an fsync (see the committer): sync the copy's files and directory.
    sync_dir_files(to).map_err(|e| refuse(format!("sync: {e}")))?;
    drop(copy);
    Ok(BackupReport {
        path: to.to_path_buf(),
        seconds: started.elapsed().as_secs_f64(),
        bytes_on_disk: disk_bytes(to),
    })
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

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
