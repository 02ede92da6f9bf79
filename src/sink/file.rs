//! NDJSON file sink: one enriched event per line.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;

use crate::failure::Failure;

/// How many file appends run at once, over all studios. Without a bound, 1,000 studios with
/// file sinks kept over 500 threads, one per waiting fsync. Too tight a bound lets deliveries
/// fall behind, since the disk completes concurrent syncs in shared journal commits; the
/// README's Performance section has the measurements behind 64.
pub const FILE_WRITES_AT_ONCE: usize = 64;

/// The threads file sinks write on. They are apart from the studio threads' own blocking
/// threads, which also resolve host names for Open API and http sink requests: those must not
/// wait behind a slow disk, nor behind a write that never returns (a hung network mount).
pub struct FileWriters {
    runtime: Option<Runtime>,
    writes: FileWrites,
    at_once: usize,
}

/// What a file sink needs to write: a permit, then one of the writer threads. Shared by all
/// studios.
#[derive(Clone)]
pub struct FileWrites {
    permits: Arc<Semaphore>,
    threads: Handle,
}

impl FileWriters {
    pub fn start(at_once: usize) -> std::io::Result<FileWriters> {
        let at_once = at_once.max(1);
        // Only its blocking threads are used; nothing drives the runtime itself.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(at_once)
            .thread_name("gymrelay-file-write")
            .build()?;
        let writes = FileWrites {
            permits: Arc::new(Semaphore::new(at_once)),
            threads: runtime.handle().clone(),
        };
        Ok(FileWriters {
            runtime: Some(runtime),
            writes,
            at_once,
        })
    }

    pub fn writes(&self) -> FileWrites {
        self.writes.clone()
    }

    /// Waits until every write under way has ended, at most `grace`; false if some had not.
    /// Call it once the studios are stopped, so that none starts meanwhile.
    pub async fn finish(&self, grace: Duration) -> bool {
        let every_permit = self.writes.permits.acquire_many(self.at_once as u32);
        tokio::time::timeout(grace, every_permit).await.is_ok()
    }
}

impl Drop for FileWriters {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which must not happen on an async thread; a
        // write still under way then ends on its own (its event is delivered again after a
        // restart, as for any delivery a stop interrupts).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
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
    #[cfg(test)]
    pub async fn deliver(&self, body: &[u8]) -> Result<(), Failure> {
        self.deliver_lines(&[body]).await
    }

    /// Several events in one write and one sync: a backlog costs one fsync per batch, not per
    /// event. All or none are reported delivered.
    pub async fn deliver_lines(&self, bodies: &[&[u8]]) -> Result<(), Failure> {
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
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the file-write permits are never closed");
        self.writes
            .threads
            .spawn_blocking(move || {
                let appended = append(&path, &lines);
                drop(permit);
                appended
            })
            .await
            .map_err(|e| Failure::transient(format!("file sink task failed: {e}")))?
    }
}

/// The file is opened per delivery so that a partner may rotate or truncate it at any time; one
/// `write` per delivery keeps lines whole under O_APPEND. A new file's directory is synced too, or
/// the file itself could vanish with a power loss. Every io error is worth retrying: a full disk
/// or a missing mount may clear, and a wrong permission can be fixed without losing the events.
fn append(path: &Path, lines: &[u8]) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::transient(format!("{what} {}: {e}", path.display()))
    };
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
        let writers = FileWriters::start(1).unwrap();
        let sink = FileSink::new(path.clone(), writers.writes());
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

    /// A delivery cancelled while it waits for a permit (a pause) never writes, and the write
    /// under way keeps its permit until it ends, though its delivery was cancelled too: the
    /// relay waits for it when it stops. The stuck write is a real one, into a pipe nobody
    /// reads yet.
    #[cfg(target_os = "linux")]
    #[actix_rt::test]
    async fn cancelled_deliveries_never_write_and_a_write_under_way_keeps_its_permit() {
        let dir = tempfile::tempdir().unwrap();
        // /proc/self/fd shows resolved paths; the temp dir may sit behind a symlink.
        let pipe = dir.path().canonicalize().unwrap().join("stuck");
        let made = std::process::Command::new("mkfifo").arg(&pipe).status();
        assert!(made.unwrap().success());
        // The test's own end of the pipe, opened first: on Linux opening a pipe for reading and
        // writing never blocks, and it keeps what the sink writes until the test reads it.
        let mut reader = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pipe)
            .unwrap();
        let writers = FileWriters::start(1).unwrap();
        let sink = |path: PathBuf| FileSink::new(path, writers.writes());
        // More than any pipe holds by default (64 KiB, or 1 MiB with 64 KiB pages), so the
        // write blocks until the test reads.
        let line = vec![b'x'; 4 << 20];
        let expected = line.len() + 1;
        let stuck = sink(pipe.clone());
        let stuck = actix_rt::spawn(async move { stuck.deliver(&line).await });
        let started = std::time::Instant::now();
        while times_open(&pipe) < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the write never began"
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        stuck.abort();
        let (paused_path, later_path) = (dir.path().join("paused"), dir.path().join("later"));
        let paused = sink(paused_path.clone());
        let paused = actix_rt::spawn(async move { paused.deliver(b"{}").await });
        // Long enough for it to be waiting for the permit, not merely spawned.
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(!paused.is_finished());
        paused.abort();
        let later = sink(later_path.clone());
        let later = actix_rt::spawn(async move { later.deliver(b"{}").await });
        // Waiting is the only way to see that something does not happen.
        let finished_while_stuck = writers.finish(Duration::from_millis(300)).await;

        // Drained before any assertion, or a failing test would hang on the stuck thread.
        let drained = actix_rt::task::spawn_blocking(move || {
            let mut all = vec![0; expected];
            reader.read_exact(&mut all)
        });
        drained.await.unwrap().unwrap();
        assert!(
            !finished_while_stuck,
            "the cancelled write gave up its permit before it ended"
        );
        later.await.unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&later_path).unwrap(), "{}\n");
        assert!(!paused_path.exists(), "a cancelled delivery wrote");
        assert!(writers.finish(Duration::from_secs(10)).await);
    }

    /// How many of this process's open files are `path`.
    fn times_open(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
            .count()
    }
}
