//! NDJSON file sink: one enriched event per line.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
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
fn append(path: &Path, lines: &[u8]) -> Result<(), SinkError> {
    let fail = |what: &str, e: std::io::Error| SinkError(format!("{what} {}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
    }
    let created = !path.exists();
    let mut file: File = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| fail("cannot open", e))?;
    let before = file.metadata().map_err(|e| fail("cannot read", e))?.len();
    // A line left unfinished (a write that failed partway, or an edit by hand) would swallow
    // the first line of this delivery; ending it first costs one byte and keeps ours whole.
    let unfinished =
        before > 0 && last_byte(&file, before).map_err(|e| fail("cannot read", e))? != b'\n';
    let data = if unfinished {
        Cow::Owned([b"\n", lines].concat())
    } else {
        Cow::Borrowed(lines)
    };
    if let Err(e) = file.write_all(&data) {
        // Take back a partial write, so the retry does not follow half a line. Only if the file
        // grew: a partner may have truncated or rotated it meanwhile.
        if file.metadata().is_ok_and(|m| m.len() > before) {
            let _ = file.set_len(before);
        }
        return Err(fail("cannot write", e));
    }
    file.sync_data().map_err(|e| fail("cannot sync", e))?;
    if created {
        let dir = dir.unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("cannot sync the directory of", e))?;
    }
    Ok(())
}

fn last_byte(file: &File, len: u64) -> std::io::Result<u8> {
    let mut byte = [0];
    file.read_exact_at(&mut byte, len - 1)?;
    Ok(byte[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_line_left_unfinished_does_not_swallow_the_next_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"{\"id\":\"a\"}\n{\"id\":\"b\"").unwrap();
        let sink = FileSink::new(path.clone());
        sink.deliver_lines(&[b"{\"id\":\"c\"}", b"{\"id\":\"d\"}"])
            .await
            .unwrap();
        sink.deliver(b"{\"id\":\"e\"}").await.unwrap();
        // Byte for byte: every delivery also ends its own last line.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\"}\n{\"id\":\"b\"\n{\"id\":\"c\"}\n{\"id\":\"d\"}\n{\"id\":\"e\"}\n"
        );
    }
}
