//! sled writes a page too large for its log (over a quarter segment) to a file of its own in
//! `<path>/blobs`, and never syncs that file. A leaf of the inbox holds up to 16 events, so a
//! few large ones (a big body, a big Open API response) make such a page. The group commit
//! therefore syncs every blob file it has not synced yet, and the directory, before it
//! acknowledges: otherwise a power loss could take an acknowledged event with it.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub(super) struct BlobFiles {
    dir: PathBuf,
    /// By name (sled names each by a log sequence number). Not a high-water mark: a slow
    /// writer can create a file with a lower number after one with a higher number.
    synced: HashSet<u64>,
}

impl BlobFiles {
    pub(super) fn of_store(path: &Path) -> BlobFiles {
        BlobFiles {
            dir: path.join("blobs"),
            synced: HashSet::new(),
        }
    }

    /// Syncs the blob files not synced before (all of them the first time), then the
    /// directory if any were new. Returns how many were synced.
    pub(super) fn sync_new(&mut self) -> io::Result<usize> {
        let mut present = HashSet::with_capacity(self.synced.len());
        let mut newly_synced = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(lsn) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if !self.synced.contains(&lsn) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // sled deletes blobs it no longer needs; one gone needs no sync.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                newly_synced += 1;
            }
            present.insert(lsn);
        }
        if newly_synced > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        // Forgets files sled has deleted, so the set stays as small as the directory.
        self.synced = present;
        Ok(newly_synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_blob_file_is_synced_once_and_deleted_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        for name in ["7", "5", "not-a-blob"] {
            std::fs::write(blobs.join(name), b"page").unwrap();
        }
        let mut files = BlobFiles::of_store(dir.path());
        assert_eq!(files.sync_new().unwrap(), 2);
        assert_eq!(files.sync_new().unwrap(), 0);
        // Created after a higher-numbered one was synced: still synced.
        std::fs::write(blobs.join("6"), b"page").unwrap();
        std::fs::remove_file(blobs.join("5")).unwrap();
        assert_eq!(files.sync_new().unwrap(), 1);
        assert_eq!(files.synced, HashSet::from([6, 7]));
    }
}
