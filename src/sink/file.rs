//! NDJSON file sink: one enriched event per line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::SinkError;

pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path }
    }

    /// Appends the line and syncs it, on a blocking thread: an fsync must not hold up the
    /// other studios that share this actor thread.
    pub async fn deliver(&self, body: &[u8]) -> Result<(), SinkError> {
        let path = self.path.clone();
        let mut line = Vec::with_capacity(body.len() + 1);
        line.extend_from_slice(body);
        line.push(b'\n');
        actix_web::rt::task::spawn_blocking(move || append(&path, &line))
            .await
            .map_err(|e| SinkError(format!("file sink task failed: {e}")))?
    }
}

/// The file is opened per event so that a partner may rotate or truncate it at any time; one
/// `write` per line keeps lines whole under O_APPEND. A new file's directory is synced too, or
/// the file itself could vanish with a power loss.
fn append(path: &Path, line: &[u8]) -> Result<(), SinkError> {
    let fail = |what: &str, e: std::io::Error| SinkError(format!("{what} {}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
    }
    let created = !path.exists();
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| fail("cannot open", e))?;
    file.write_all(line).map_err(|e| fail("cannot write", e))?;
    file.sync_data().map_err(|e| fail("cannot sync", e))?;
    if created {
        let dir = dir.unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("cannot sync the directory of", e))?;
    }
    Ok(())
}
