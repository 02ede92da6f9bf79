//! A file system for tests that forgets what was not synced, as a power cut does.
//!
//! Files live in memory. Each keeps its `current` bytes, what the last fsync or fdatasync left
//! `durable`, and the changes (writes, size changes) made since. [`LossyFs::power_cut`]
//! unmounts it (the relay must be gone: SIGKILL first), puts every file back to its durable
//! bytes and mounts it again, so nothing of the old kernel state (page cache, dentries) is left.
//!
//! What survives a cut, by [`Model`]:
//! - Contents: only what a file's fsync or fdatasync covered. `sync_file_range` (what sled's
//!   own flush ends in) never reaches a FUSE file system, and neither does `close`. With
//!   `torn`, each file also keeps a random prefix of its last unsynced write, applied on top of
//!   its durable bytes, as a disk that lost power in the middle of that write would.
//! - Names (create, mkdir, rename, unlink): kept, as on a file system that journals its
//!   metadata (ext4 with `data=ordered`): the name is there after a cut, its contents revert.
//!   With `strict_names`, a directory's entries revert to what they were at its last fsync, as
//!   POSIX allows: a file created, renamed or removed since then is back where it was.
//! - With `fsync` off (the control model), fsync and fsyncdir are accepted and do nothing:
//!   nothing written ever survives a cut.
//!
//! The power can also go at an exact point: after a given number of changes (writes, syncs,
//! new names), every later one fails with EIO, so nothing done after that point survives,
//! however long the relay takes to be killed.
//!
//! The kernel sends writes through to the file system at once (no writeback cache is asked
//! for), so every `write` the relay makes is seen here before the call returns. Locks (sled's
//! `flock` on its log) are left to the kernel, which keeps them for the mount.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a power cut keeps; see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// fsync and fdatasync make a file's contents durable (off: the control model).
    pub fsync: bool,
    /// A cut keeps a random prefix of each file's last unsynced write.
    pub torn: bool,
    /// A directory's entries survive a cut only as they were at its last fsync.
    pub strict_names: bool,
}

impl Model {
    /// Contents as synced, names as a journaling file system keeps them.
    pub const JOURNALED: Model = Model {
        fsync: true,
        torn: false,
        strict_names: false,
    };
}

/// What one power cut took.
#[derive(Debug, Default, Clone, Copy)]
pub struct CutReport {
    /// Files whose contents went back to what was last synced.
    pub files_reverted: usize,
    /// Unsynced bytes written and lost (a torn write's kept prefix not counted).
    pub bytes_lost: u64,
    /// Files that kept part of their last unsynced write.
    pub torn_writes: usize,
}

/// Whether this machine can mount one: `/dev/fuse` and `fusermount3` (which unmounts it when
/// a test fails, and mounts it where the test does not run as root).
pub fn available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("no /dev/fuse".into());
    }
    match Command::new("fusermount3").arg("-V").output() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("no fusermount3 ({e}); apt-get install fuse3")),
    }
}

/// A mounted [`Model`] file system on a temp dir; unmounted when dropped.
pub struct LossyFs {
    session: Option<BackgroundSession>,
    disk: Arc<Mutex<Disk>>,
    /// Last: removed once nothing is mounted on it.
    mountpoint: tempfile::TempDir,
}

impl LossyFs {
    /// Mounts an empty file system. `seed` decides the torn writes.
    pub fn mount(model: Model, seed: u64) -> std::io::Result<LossyFs> {
        let disk = Arc::new(Mutex::new(Disk::new(model, seed)));
        let mut fs = LossyFs {
            session: None,
            disk,
            mountpoint: tempfile::tempdir()?,
        };
        fs.attach()?;
        Ok(fs)
    }

    pub fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// Unmounts, forgets what was not synced, and mounts again. Nothing may have a file open
    /// on it (kill the relay and wait for it first).
    pub fn power_cut(&mut self) -> std::io::Result<CutReport> {
        if let Some(session) = self.session.take() {
            self.unmount()?;
            session.join()?;
        }
        let report = disk(&self.disk).cut();
        self.attach()?;
        Ok(report)
    }

    /// Plans the power to go after `changes` more changes (writes, syncs, new names...): the
    /// next one fails with EIO, as does every later one until [`LossyFs::power_cut`]. Nothing
    /// after that moment reaches the disk, however long the relay takes to be killed.
    pub fn power_off_after(&self, changes: u64) {
        disk(&self.disk).changes_left = Some(changes);
    }

    /// Whether the power went (see [`LossyFs::power_off_after`]).
    pub fn is_off(&self) -> bool {
        disk(&self.disk).off
    }

    /// The kernel may still be closing the files of a process just killed: busy for a moment.
    fn unmount(&self) -> std::io::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("fusermount3")
                .arg("-u")
                .arg(self.mountpoint.path())
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "fusermount3 -u: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn attach(&mut self) -> std::io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("lossy".into()),
            MountOption::Subtype("lossy".into()),
        ];
        // Requests are served under one lock anyway; a second thread lets a read or write be
        // taken from the kernel while another is answered.
        config.n_threads = Some(2);
        let fs = Mounted {
            disk: self.disk.clone(),
        };
        self.session = Some(fuser::spawn_mount(fs, self.mountpoint.path(), &config)?);
        Ok(())
    }
}

impl Drop for LossyFs {
    /// Lazy, so that a test failing with the relay still running leaves no mount behind.
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", "-q"])
                .arg(self.mountpoint.path())
                .status();
        }
    }
}

fn disk(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(|e| e.into_inner())
}

/// A change to a file's contents not yet covered by an fsync.
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Change::Write { offset, data } => write_at(bytes, *offset, data),
            Change::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }
}

fn write_at(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

#[derive(Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Change>,
}

impl FileData {
    fn change(&mut self, change: Change) {
        change.apply(&mut self.current);
        self.unsynced.push(change);
    }

    fn sync(&mut self) {
        for change in self.unsynced.drain(..) {
            change.apply(&mut self.durable);
        }
    }
}

struct DirData {
    parent: u64,
    entries: BTreeMap<OsString, u64>,
    /// The entries at the last fsyncdir (used with `strict_names`).
    durable: BTreeMap<OsString, u64>,
}

enum Contents {
    File(FileData),
    Dir(DirData),
}

struct Inode {
    contents: Contents,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    nlink: u32,
}

impl Inode {
    fn new(contents: Contents, perm: u16, req: &Request) -> Inode {
        let now = SystemTime::now();
        Inode {
            nlink: if matches!(contents, Contents::Dir(_)) {
                2
            } else {
                1
            },
            contents,
            perm,
            uid: req.uid(),
            gid: req.gid(),
            mtime: now,
            ctime: now,
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size) = match &self.contents {
            Contents::File(f) => (FileType::RegularFile, f.current.len() as u64),
            Contents::Dir(d) => (FileType::Directory, d.entries.len() as u64),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind,
            perm: self.perm,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

struct Disk {
    model: Model,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    rng: StdRng,
    /// Changes still taken before the power goes (None: no cut planned).
    changes_left: Option<u64>,
    /// The power is gone: every change fails with EIO until the cut is done.
    off: bool,
}

const ROOT: u64 = 1;

impl Disk {
    fn new(model: Model, seed: u64) -> Disk {
        let root = Inode {
            contents: Contents::Dir(DirData {
                parent: ROOT,
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            }),
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: SystemTime::now(),
            ctime: SystemTime::now(),
            nlink: 2,
        };
        Disk {
            model,
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            rng: StdRng::seed_from_u64(seed),
            changes_left: None,
            off: false,
        }
    }

    /// Counts one change (a write, an fsync, a new name...) against a planned cut.
    fn change(&mut self) -> Result<(), Errno> {
        match &mut self.changes_left {
            _ if self.off => return Err(Errno::EIO),
            Some(0) => {
                self.off = true;
                return Err(Errno::EIO);
            }
            Some(left) => *left -= 1,
            None => {}
        }
        Ok(())
    }

    fn dir(&self, ino: u64) -> Result<&DirData, Errno> {
        match self.inodes.get(&ino).map(|i| &i.contents) {
            Some(Contents::Dir(d)) => Ok(d),
            Some(Contents::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirData, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.contents) {
            Some(Contents::Dir(d)) => Ok(d),
            Some(Contents::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileData, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.contents) {
            Some(Contents::File(f)) => Ok(f),
            Some(Contents::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.inodes
            .get(&ino)
            .map(|i| i.attr(ino))
            .ok_or(Errno::ENOENT)
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn touch(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.mtime = SystemTime::now();
            inode.ctime = inode.mtime;
        }
    }

    /// A new file or directory named `name` in `parent`.
    fn make(&mut self, parent: u64, name: &OsStr, inode: Inode) -> Result<FileAttr, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_dir = matches!(inode.contents, Contents::Dir(_));
        self.inodes.insert(ino, inode);
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        if is_dir {
            self.inodes.get_mut(&parent).unwrap().nlink += 1;
        }
        self.touch(parent);
        self.attr(ino)
    }

    /// Takes `name` out of `parent`; the inode stays until the next cut finds nothing naming
    /// it (an open file may still be read, and `strict_names` may bring the name back).
    fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.inodes[&ino].contents, want_dir) {
            (Contents::Dir(d), true) if !d.entries.is_empty() => return Err(Errno::ENOTEMPTY),
            (Contents::Dir(_), false) => return Err(Errno::EISDIR),
            (Contents::File(_), true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.unlinked(ino);
        if want_dir {
            self.inodes.get_mut(&parent).unwrap().nlink -= 1;
        }
        self.touch(parent);
        Ok(())
    }

    fn unlinked(&mut self, ino: u64) {
        let inode = self.inodes.get_mut(&ino).unwrap();
        inode.nlink = match inode.contents {
            Contents::Dir(_) => 0,
            Contents::File(_) => inode.nlink.saturating_sub(1),
        };
        inode.ctime = SystemTime::now();
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        let ino = self.lookup(parent, name)?;
        let moving_dir = matches!(self.inodes[&ino].contents, Contents::Dir(_));
        self.dir(new_parent)?;
        if let Ok(old) = self.lookup(new_parent, new_name) {
            if old == ino {
                return Ok(());
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            match (&self.inodes[&old].contents, moving_dir) {
                (Contents::Dir(d), true) if !d.entries.is_empty() => return Err(Errno::ENOTEMPTY),
                (Contents::Dir(_), false) => return Err(Errno::EISDIR),
                (Contents::File(_), true) => return Err(Errno::ENOTDIR),
                _ => {}
            }
            self.remove(new_parent, new_name, moving_dir)?;
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), ino);
        if moving_dir && parent != new_parent {
            self.inodes.get_mut(&parent).unwrap().nlink -= 1;
            self.inodes.get_mut(&new_parent).unwrap().nlink += 1;
            self.dir_mut(ino)?.parent = new_parent;
        }
        self.touch(parent);
        self.touch(new_parent);
        Ok(())
    }

    fn fsync(&mut self, ino: u64) -> Result<(), Errno> {
        let fsync = self.model.fsync;
        match self.inodes.get_mut(&ino).map(|i| &mut i.contents) {
            Some(Contents::File(f)) if fsync => f.sync(),
            Some(Contents::Dir(d)) if fsync => d.durable = d.entries.clone(),
            Some(_) => {}
            None => return Err(Errno::ENOENT),
        }
        Ok(())
    }

    /// The power cut; see the module's documentation.
    fn cut(&mut self) -> CutReport {
        let mut report = CutReport::default();
        let (torn, strict_names) = (self.model.torn, self.model.strict_names);
        for inode in self.inodes.values_mut() {
            match &mut inode.contents {
                Contents::File(f) => {
                    if f.unsynced.is_empty() {
                        continue;
                    }
                    report.files_reverted += 1;
                    report.bytes_lost += f
                        .unsynced
                        .iter()
                        .map(|c| match c {
                            Change::Write { data, .. } => data.len() as u64,
                            Change::SetLen(_) => 0,
                        })
                        .sum::<u64>();
                    let mut kept = f.durable.clone();
                    if let (true, Some(Change::Write { offset, data })) = (torn, f.unsynced.last())
                    {
                        let prefix = self.rng.gen_range(0..=data.len());
                        if prefix > 0 {
                            write_at(&mut kept, *offset, &data[..prefix]);
                            report.torn_writes += 1;
                            report.bytes_lost -= prefix as u64;
                        }
                    }
                    f.unsynced.clear();
                    f.durable = kept.clone();
                    f.current = kept;
                }
                Contents::Dir(d) if strict_names => d.entries = d.durable.clone(),
                Contents::Dir(_) => {}
            }
        }
        self.keep_named();
        self.changes_left = None;
        self.off = false;
        report
    }

    /// Drops every inode no name leads to any more, and counts the links of the others again.
    fn keep_named(&mut self) {
        let mut links: HashMap<u64, u32> = HashMap::from([(ROOT, 2)]);
        let mut parents = Vec::new();
        // A directory that strict names bring back beside where it was moved to keeps its
        // first name only, as a directory has one parent.
        let mut dropped = Vec::new();
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            let Ok(d) = self.dir(dir) else { continue };
            for (name, &ino) in &d.entries {
                match self.inodes.get(&ino).map(|i| &i.contents) {
                    Some(Contents::Dir(_)) if !links.contains_key(&ino) => {
                        *links.entry(dir).or_default() += 1;
                        links.insert(ino, 2);
                        parents.push((ino, dir));
                        todo.push(ino);
                    }
                    Some(Contents::File(_)) => *links.entry(ino).or_default() += 1,
                    _ => dropped.push((dir, name.clone())),
                }
            }
        }
        self.inodes.retain(|ino, _| links.contains_key(ino));
        for (ino, inode) in &mut self.inodes {
            inode.nlink = links[ino];
        }
        for (dir, name) in dropped {
            let d = self.dir_mut(dir).unwrap();
            d.entries.remove(&name);
            d.durable.remove(&name);
        }
        for (ino, parent) in parents {
            self.dir_mut(ino).unwrap().parent = parent;
        }
    }
}

/// The mounted side: every request is served under the disk's lock.
struct Mounted {
    disk: Arc<Mutex<Disk>>,
}

/// Only this file system changes what it serves, through the kernel: what the kernel caches
/// stays true for as long as it likes.
const TTL: Duration = Duration::from_secs(60);

/// `fallocate` mode that only reserves space.
const FALLOC_FL_KEEP_SIZE: i32 = 1;

impl Mounted {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        disk(&self.disk)
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        match self
            .changing()
            .and_then(|mut d| d.remove(parent.0, name, dir))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// The disk for a request that changes it; EIO once the power is gone.
    fn changing(&self) -> Result<MutexGuard<'_, Disk>, Errno> {
        let mut disk = self.disk();
        disk.change()?;
        Ok(disk)
    }
}

impl Filesystem for Mounted {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let disk = self.disk();
        match disk.lookup(parent.0, name).and_then(|ino| disk.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.disk().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut disk = match self.changing() {
            Ok(disk) => disk,
            Err(e) => return reply.error(e),
        };
        let ino = ino.0;
        if let Some(size) = size {
            if let Err(e) = disk.file_mut(ino).map(|f| f.change(Change::SetLen(size))) {
                return reply.error(e);
            }
            disk.touch(ino);
        }
        let Some(inode) = disk.inodes.get_mut(&ino) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(mode) = mode {
            inode.perm = (mode & 0o7777) as u16;
        }
        inode.uid = uid.unwrap_or(inode.uid);
        inode.gid = gid.unwrap_or(inode.gid);
        match mtime {
            Some(TimeOrNow::SpecificTime(t)) => inode.mtime = t,
            Some(TimeOrNow::Now) => inode.mtime = SystemTime::now(),
            None => {}
        }
        reply.attr(&TTL, &inode.attr(ino));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let dir = Contents::Dir(DirData {
            parent: parent.0,
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        });
        let inode = Inode::new(dir, (mode & !umask & 0o7777) as u16, req);
        match self
            .changing()
            .and_then(|mut d| d.make(parent.0, name, inode))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let file = Contents::File(FileData::default());
        let inode = Inode::new(file, (mode & !umask & 0o7777) as u16, req);
        match self
            .changing()
            .and_then(|mut d| d.make(parent.0, name, inode))
        {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .changing()
            .and_then(|mut d| d.rename(parent.0, name, newparent.0, newname, flags))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut disk = self.disk();
        match disk.file_mut(ino.0) {
            Ok(f) => {
                let start = (offset as usize).min(f.current.len());
                let end = (start + size as usize).min(f.current.len());
                reply.data(&f.current[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut disk = match self.changing() {
            Ok(disk) => disk,
            Err(e) => return reply.error(e),
        };
        let change = Change::Write {
            offset,
            data: data.to_vec(),
        };
        match disk.file_mut(ino.0) {
            Ok(f) => {
                f.change(change);
                disk.touch(ino.0);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    /// `close`: makes nothing durable.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.changing().and_then(|mut d| d.fsync(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.fsync(req, ino, fh, datasync, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let disk = self.disk();
        let dir = match disk.dir(ino.0) {
            Ok(dir) => dir,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (dir.parent, FileType::Directory, OsStr::new("..")),
        ];
        let entries = dir.entries.iter().map(|(name, &child)| {
            let kind = match disk.inodes[&child].contents {
                Contents::Dir(_) => FileType::Directory,
                Contents::File(_) => FileType::RegularFile,
            };
            (child, kind, name.as_os_str())
        });
        for (i, (child, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let disk = self.disk();
        let used: u64 = disk
            .inodes
            .values()
            .map(|i| match &i.contents {
                Contents::File(f) => f.current.len() as u64,
                Contents::Dir(_) => 0,
            })
            .sum();
        // 64 GiB: far above the relay's free-space floor.
        let blocks = (64u64 << 30) / 4096;
        let free = blocks.saturating_sub(used.div_ceil(4096));
        reply.statfs(blocks, free, free, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut disk = match self.changing() {
            Ok(disk) => disk,
            Err(e) => return reply.error(e),
        };
        let file = match disk.file_mut(ino.0) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        match mode {
            FALLOC_FL_KEEP_SIZE => {}
            0 => {
                let end = offset + length;
                if end > file.current.len() as u64 {
                    file.change(Change::SetLen(end));
                }
            }
            _ => return reply.error(Errno::EOPNOTSUPP),
        }
        reply.ok();
    }
}
