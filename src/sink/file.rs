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
        self.deliver_lines(&[body]).await
    }

    /// Several events in one write and one sync: a backlog costs one fsync per batch, not per
    /// event. All or none are reported delivered.
    pub async fn deliver_lines(&self, bodies: &[&[u8]]) -> Result<(), SinkError> {
        let path = self.path.clone();
        let mut lines = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum());
        for body in bodies {
            lines.extend_from_slice(body);
            lines.push(b'\n');
        }
        actix_web::rt::task::spawn_blocking(move || append(&path, &lines))
            .await
            .map_err(|e| SinkError(format!("file sink task failed: {e}")))?
    }
}

/// The file is opened per delivery so that a partner may rotate or truncate it at any time; one
/// `write` per delivery keeps lines whole under O_APPEND. A new file's directory is synced too, or
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
