//! Files sled 0.34.7 can leave behind, after a crash or a power loss, in a state in which it
//! then refuses to open the store ("Read corrupted data"), so that the relay could not start
//! again. The power-loss test (tests/it/power_loss.rs) found both.
//!
//! - `conf` (segment size, compression, version, then their CRC-32) is written when sled
//!   creates a store (or finds it empty), and never synced: a cut soon after left it torn.
//!   Every open now syncs it before anything is acknowledged, stores made earlier included.
//!   A torn one can therefore only come from a cut while its store was being created, with
//!   nothing acknowledged yet: it is removed, and sled writes it anew from the relay's
//!   settings, which are fixed (see `SEGMENT_SIZE`). A whole one with other settings is left
//!   for sled to refuse, as before.
//! - A snapshot is written at every open as `snap.<lsn>.generating`, synced, then renamed to
//!   `snap.<lsn>`. sled takes a leftover `.generating` file for its newest snapshot, and a
//!   cut (or a SIGKILL) before it was complete left one half written. It is removed: sled
//!   wrote it from the previous snapshot and its log, both still there (the previous snapshot
//!   goes only after the rename), and recovers the same state from them.

use std::fs::File;
use std::io;
use std::path::Path;

const CONF: &str = "conf";
/// What sled takes for no conf at all (and writes anew by itself).
const EMPTY_CONF: usize = 8;

/// Removes what sled would refuse to open the store at `dir` for; returns what it removed.
pub(super) fn remove_unfinished(dir: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    if conf_is_torn(dir)? {
        std::fs::remove_file(dir.join(CONF))?;
        removed.push(CONF.to_string());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(dir.join(name))?;
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

fn conf_is_torn(dir: &Path) -> io::Result<bool> {
    let bytes = match std::fs::read(dir.join(CONF)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if bytes.len() <= EMPTY_CONF {
        return Ok(false);
    }
    let (text, crc) = bytes.split_at(bytes.len() - 4);
    Ok(crc32fast::hash(text).to_le_bytes() != crc)
}

/// Makes the `conf` of an open store durable.
pub(super) fn sync_conf(dir: &Path) -> io::Result<()> {
    File::open(dir.join(CONF))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> sled::Config {
        sled::Config::new().path(dir).segment_size(1 << 20)
    }

    #[test]
    fn a_torn_conf_is_removed_and_sled_opens_the_store_with_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        drop(config(dir.path()).open().unwrap());
        let whole = std::fs::read(dir.path().join(CONF)).unwrap();
        assert!(remove_unfinished(dir.path()).unwrap().is_empty());

        // As the power-loss test left it: the text lost, part of the CRC written.
        let mut torn = vec![0; whole.len() - 4];
        torn.extend_from_slice(&whole[whole.len() - 4..whole.len() - 2]);
        std::fs::write(dir.path().join(CONF), &torn).unwrap();
        assert!(
            config(dir.path()).open().is_err(),
            "sled refuses a torn conf"
        );
        assert_eq!(remove_unfinished(dir.path()).unwrap(), [CONF]);
        drop(config(dir.path()).open().unwrap());
        assert_eq!(std::fs::read(dir.path().join(CONF)).unwrap(), whole);
    }

    #[test]
    fn a_whole_conf_with_other_settings_is_left_for_sled_to_refuse() {
        let dir = tempfile::tempdir().unwrap();
        drop(config(dir.path()).segment_size(1 << 19).open().unwrap());
        assert!(remove_unfinished(dir.path()).unwrap().is_empty());
        assert!(config(dir.path()).open().is_err());
    }

    #[test]
    fn a_half_written_snapshot_is_removed_and_the_store_opens_with_everything_in_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = config(dir.path()).open().unwrap();
            for i in 0..1000u32 {
                db.insert(i.to_be_bytes(), &[1; 100][..]).unwrap();
            }
            db.flush().unwrap();
        }
        // This open writes a snapshot of the first one's log.
        drop(config(dir.path()).open().unwrap());
        let snapshot = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("snap.")
            })
            .unwrap();
        let bytes = std::fs::read(&snapshot).unwrap();
        // The next open's snapshot, cut short.
        let next = format!("snap.{:016X}.generating", u32::MAX);
        std::fs::write(dir.path().join(&next), &bytes[..bytes.len() / 2]).unwrap();
        assert!(config(dir.path()).open().is_err(), "sled refuses it");

        assert_eq!(remove_unfinished(dir.path()).unwrap(), [next]);
        let db = config(dir.path()).open().unwrap();
        assert_eq!(db.len(), 1000);
    }
}
