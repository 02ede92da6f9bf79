//! NDJSON file sink: one enriched event per line.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::SinkError;

/// How many file appends run at once, over all studios. Each runs on a blocking thread, and an
/// unbounded number of them grew the thread pools to over 500 threads at 1,000 studios, each
/// waiting on its own fsync and each holding a stack and an allocator cache. The disk completes
/// concurrent syncs in shared journal commits, so the bound must not be too tight either: at 16
/// the scale bench's undelivered backlog grew to thousands of events, at 64 it stayed as small as
/// without a bound.
pub const FILE_WRITES_AT_ONCE: usize = 64;

/// The permits every file sink takes before it writes; shared by all studios.
#[derive(Clone)]
pub struct FileWrites(Arc<Semaphore>);

impl FileWrites {
    pub fn new(at_once: usize) -> FileWrites {
        FileWrites(Arc::new(Semaphore::new(at_once.max(1))))
    }
}

impl Default for FileWrites {
    fn default() -> Self {
        FileWrites::new(FILE_WRITES_AT_ONCE)
    }
}

pub struct FileSink {
    path: PathBuf,
    writes: FileWrites,
}

impl FileSink {
    pub fn new(path: PathBuf, writes: FileWrites) -> FileSink {
        FileSink { path, writes }
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
        // Waiting here, not on a thread, costs nothing if the delivery is cancelled (a pause).
        // The permit goes with the write and is given back when it ends, even when the delivery
        // was cancelled meanwhile, so the bound holds for the threads themselves.
        let permit = self
            .writes
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| SinkError(format!("file sink closed: {e}")))?;
        actix_web::rt::task::spawn_blocking(move || {
            let appended = append(&path, &lines);
            drop(permit);
            appended
        })
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
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    #[actix_rt::test]
    async fn a_line_left_unfinished_does_not_swallow_the_next_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, b"{\"id\":\"a\"}\n{\"id\":\"b\"").unwrap();
        let sink = FileSink::new(path.clone(), FileWrites::default());
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

    /// A write keeps its permit until it ends, even when its delivery is cancelled (a pause):
    /// the bound is on the threads, not on the deliveries that wait for them. The stuck write
    /// is a real one, into a pipe nobody reads yet.
    #[actix_rt::test]
    async fn a_cancelled_write_holds_its_permit_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = dir.path().join("stuck");
        let made = std::process::Command::new("mkfifo").arg(&pipe).status();
        assert!(made.unwrap().success());
        let writes = FileWrites::new(1);
        let stuck = FileSink::new(pipe.clone(), writes.clone());
        // More than a pipe holds (64 KiB), so the write blocks until the pipe is read.
        let line = vec![b'x'; 256 * 1024];
        let expected = line.len() + 1;
        let delivery = actix_rt::spawn(async move { stuck.deliver(&line).await });
        let started = std::time::Instant::now();
        while !open_here(&pipe) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the write never began"
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        delivery.abort();

        let out = dir.path().join("out.ndjson");
        let next = FileSink::new(out.clone(), writes);
        let next = actix_rt::spawn(async move { next.deliver(b"{}").await });
        // Waiting is the only way to see that something does not happen; the write it waits
        // for takes a millisecond once it has a permit.
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let ran_meanwhile = out.exists();

        // Drained before any assertion, or a failing test would hang on the stuck thread.
        let drained = actix_rt::task::spawn_blocking(move || {
            let mut all = vec![0; expected];
            File::open(&pipe).and_then(|mut p| p.read_exact(&mut all))
        });
        drained.await.unwrap().unwrap();
        assert!(
            !ran_meanwhile,
            "a second write ran while the first held the only permit"
        );
        next.await.unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{}\n");
    }

    /// Whether this process has `path` open.
    fn open_here(path: &Path) -> bool {
        std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
    }
}
