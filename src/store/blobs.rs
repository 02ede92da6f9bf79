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
    /// Files synced once. A file found while sled was still writing it (for a write that is not
    /// part of this commit) was synced half-written, so each is synced again on the next
    /// commit: that commit's flush waited for every write begun before it, this file's too.
    synced_once: HashSet<u64>,
    /// Files synced after they were complete. By name (sled names each by a log sequence
    /// number), not a high-water mark: a slow writer can create a file with a lower number
    /// after one with a higher number.
    synced: HashSet<u64>,
}

impl BlobFiles {
    pub(super) fn of_store(path: &Path) -> BlobFiles {
        BlobFiles {
            dir: path.join("blobs"),
            synced_once: HashSet::new(),
            synced: HashSet::new(),
        }
    }

    /// Call after sled's flush. Syncs the blob files new since the last call (all of them the
    /// first time) and, again, those that were new at the last call, then the directory if any
    /// were new. Returns how many files were synced.
    pub(super) fn sync_new(&mut self) -> io::Result<usize> {
        let mut present = HashSet::with_capacity(self.synced.len());
        let mut first_seen = HashSet::new();
        let mut syncs = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(lsn) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if self.synced.contains(&lsn) {
                present.insert(lsn);
                continue;
            }
            match File::open(entry.path()) {
                Ok(file) => file.sync_data()?,
                // sled deletes blobs it no longer needs; one gone needs no sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            syncs += 1;
            if self.synced_once.contains(&lsn) {
                present.insert(lsn);
            } else {
                first_seen.insert(lsn);
            }
        }
        if !first_seen.is_empty() {
            File::open(&self.dir)?.sync_all()?;
        }
        // Forgets files sled has deleted, so the sets stay as small as the directory.
        self.synced = present;
        self.synced_once = first_seen;
        Ok(syncs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_blob_file_is_synced_on_two_commits_and_deleted_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        for name in ["7", "5", "not-a-blob"] {
            std::fs::write(blobs.join(name), b"page").unwrap();
        }
        let mut files = BlobFiles::of_store(dir.path());
        assert_eq!(files.sync_new().unwrap(), 2);
        // Again: either may have been half-written when first found.
        assert_eq!(files.sync_new().unwrap(), 2);
        assert_eq!(files.sync_new().unwrap(), 0);
        // Created after a higher-numbered one was synced: still synced, twice.
        std::fs::write(blobs.join("6"), b"page").unwrap();
        std::fs::remove_file(blobs.join("5")).unwrap();
        assert_eq!(files.sync_new().unwrap(), 1);
        assert_eq!(files.sync_new().unwrap(), 1);
        assert_eq!(files.sync_new().unwrap(), 0);
        assert_eq!(files.synced, HashSet::from([6, 7]));
    }
}
