//! NDJSON file sink: one enriched event per line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::SinkError;

pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path }
    }

    /// Appends the line and syncs it. The file is opened per event so that a partner may rotate
    /// or truncate it at any time; one `write` per line keeps lines whole under O_APPEND.
    pub fn deliver(&self, body: &[u8]) -> Result<(), SinkError> {
        let fail = |what: &str, e: std::io::Error| {
            SinkError(format!("{what} {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
        }
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| fail("cannot open", e))?;
        let mut line = Vec::with_capacity(body.len() + 1);
        line.extend_from_slice(body);
        line.push(b'\n');
        file.write_all(&line).map_err(|e| fail("cannot write", e))?;
        file.sync_data().map_err(|e| fail("cannot sync", e))
    }
}
