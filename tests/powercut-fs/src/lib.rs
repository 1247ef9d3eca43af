//! A FUSE file system for power-cut tests, in the manner of LazyFS: it behaves as an ordinary
//! file system for whoever uses it, and remembers, besides what is written, what of it was
//! made *durable*. [`PowerCutFs::power_cut`] then loses everything that was not, and mounts
//! again what a machine would find on its disk after the power came back.
//!
//! Everything lives in memory, in two images of the same inodes:
//!
//! - the **live** image: what `read`, `readdir`, `stat` see;
//! - the **durable** image: what survives a power cut.
//!
//! What makes a change durable, and nothing else does:
//!
//! - `fsync` or `fdatasync` of a file: its whole content (bytes, length) and mode as they are
//!   now. Not its name: a new file whose directory was never fsynced is lost whole.
//! - `fsync` of a directory: its entries as they are now (creations, unlinks, renames into or
//!   out of it). A rename is atomic across its two directories, as on a journalling file
//!   system: fsyncing either directory makes it durable in both (the entry appears at the new
//!   name and disappears from the old one together). A created entry whose inode was never
//!   fsynced comes back empty (a file of length 0, or an empty directory).
//! - `fsync` of the file [`SYNCFS_FILE`] at the root: everything, as `syncfs` would. The
//!   kernel does not pass `syncfs` (or `sync`) on to a FUSE server (only virtiofs gets
//!   it), so a program relying on them would lose its data here: test builds of r2-sync
//!   fsync that file after each shared syncfs when told to (`R2SYNC_FAULT_SYNCFS`).
//! - Nothing else: not `close`, not `flush`, not time.
//!
//! At a cut, each inode with changes not yet durable may also keep them all, with the
//! probability the caller gives (the kernel's writeback may have reached the disk before the
//! power went): 0 gives the harshest case, where only what was fsynced is left. With a
//! probability above 0, a file that does not keep all of its pending writes keeps, half the
//! time, the first few of them in the order they were made (a torn write-back, at the
//! granularity of the write requests the kernel passed on); writes torn inside one request,
//! or kept out of order, are not modelled.
//!
//! Not supported (answered with an error): hard links, symlinks, special files, extended
//! attributes. Locks are the kernel's own (FUSE keeps them locally when the server does not
//! offer them), which is enough for one machine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const ROOT: u64 = 1;

/// The file at the root whose `fsync` stands for a `syncfs` of the whole file system (which
/// the kernel does not pass on to FUSE): everything written before it is made durable. Test
/// builds of r2-sync call it after each shared syncfs when `R2SYNC_FAULT_SYNCFS` names it.
pub const SYNCFS_FILE: &str = ".powercut-syncfs";
/// Nothing is cached by the kernel: every lookup and stat comes here.
const TTL: Duration = Duration::ZERO;

#[derive(Clone, Debug)]
enum Content {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, u64>),
}

/// A change to a file's bytes not yet durable, kept so that a cut can keep some of them.
#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    Len(u64),
}

impl Op {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Op::Write(offset, bytes) => {
                let start = *offset as usize;
                let end = start + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[start..end].copy_from_slice(bytes);
            }
            Op::Len(len) => data.resize(*len as usize, 0),
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    content: Content,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

impl Node {
    fn empty_like(&self) -> Node {
        Node {
            content: match self.content {
                Content::File(_) => Content::File(Vec::new()),
                Content::Dir(_) => Content::Dir(BTreeMap::new()),
            },
            ..self.clone()
        }
    }

    fn entries(&self) -> Option<&BTreeMap<OsString, u64>> {
        match &self.content {
            Content::Dir(e) => Some(e),
            Content::File(_) => None,
        }
    }
}

/// Counts of what the file system saw and did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// `write` requests.
    pub writes: u64,
    /// `fsync`/`fdatasync` of files.
    pub file_syncs: u64,
    /// `fsync` of directories.
    pub dir_syncs: u64,
    /// `fsync`s of [`SYNCFS_FILE`], each one standing for a `syncfs`.
    pub syncfs: u64,
    /// Power cuts.
    pub cuts: u64,
    /// Inodes whose changes not yet durable were lost at a cut.
    pub lost: u64,
    /// Inodes whose changes not yet durable were kept at a cut (written back in time).
    pub kept: u64,
    /// Files that kept only their first few pending writes at a cut.
    pub torn: u64,
}

struct State {
    live: HashMap<u64, Node>,
    /// Where each linked live inode is (no hard links: one place each).
    parent: HashMap<u64, (u64, OsString)>,
    durable: HashMap<u64, Node>,
    /// Inodes whose live state may differ from their durable one.
    pending: HashSet<u64>,
    /// Each file's writes and length changes since it was last made durable, in order.
    ops: HashMap<u64, Vec<Op>>,
    next_ino: u64,
    stats: Stats,
}

impl State {
    fn new(root_uid: u32, root_gid: u32) -> Self {
        let root = Node {
            content: Content::Dir(BTreeMap::new()),
            perm: 0o755,
            uid: root_uid,
            gid: root_gid,
            mtime: SystemTime::now(),
        };
        Self {
            live: HashMap::from([(ROOT, root.clone())]),
            parent: HashMap::new(),
            durable: HashMap::from([(ROOT, root)]),
            pending: HashSet::new(),
            ops: HashMap::new(),
            next_ino: ROOT + 1,
            stats: Stats::default(),
        }
    }

    fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.live.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.pending.insert(ino);
        self.live.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match &mut self.node_mut(ino)?.content {
            Content::Dir(e) => Ok(e),
            Content::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.node(parent)?
            .entries()
            .ok_or(Errno::ENOTDIR)?
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let (kind, size, nlink) = match &node.content {
            Content::File(data) => (FileType::RegularFile, data.len() as u64, 1),
            Content::Dir(_) => (FileType::Directory, 0, 2),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: node.perm,
            nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Adds a new inode under `parent`.
    fn make(&mut self, req: &Request, parent: u64, name: &OsStr, content: Content, perm: u16) -> Result<u64, Errno> {
        if self.dir_mut(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.live.insert(
            ino,
            Node {
                content,
                perm,
                uid: req.uid(),
                gid: req.gid(),
                mtime: SystemTime::now(),
            },
        );
        self.pending.insert(ino);
        self.dir_mut(parent)?.insert(name.to_owned(), ino);
        self.parent.insert(ino, (parent, name.to_owned()));
        Ok(ino)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        match &self.node(ino)?.content {
            Content::Dir(e) if want_dir && !e.is_empty() => return Err(Errno::ENOTEMPTY),
            Content::Dir(_) if !want_dir => return Err(Errno::EISDIR),
            Content::File(_) if want_dir => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.dir_mut(parent)?.remove(name);
        self.parent.remove(&ino);
        Ok(())
    }

    fn rename(&mut self, from: (u64, &OsStr), to: (u64, &OsStr), flags: RenameFlags) -> Result<(), Errno> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let ino = self.child(from.0, from.1)?;
        let moving_dir = matches!(self.node(ino)?.content, Content::Dir(_));
        if let Ok(existing) = self.child(to.0, to.1) {
            if existing == ino {
                return Ok(());
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            match &self.node(existing)?.content {
                Content::Dir(_) if !moving_dir => return Err(Errno::EISDIR),
                Content::Dir(e) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
                Content::File(_) if moving_dir => return Err(Errno::ENOTDIR),
                _ => {}
            }
            self.parent.remove(&existing);
        }
        self.node(to.0)?.entries().ok_or(Errno::ENOTDIR)?;
        self.dir_mut(from.0)?.remove(from.1);
        self.dir_mut(to.0)?.insert(to.1.to_owned(), ino);
        self.parent.insert(ino, (to.0, to.1.to_owned()));
        Ok(())
    }

    /// Makes inode `ino`'s live state its durable state (the module's doc says what that
    /// covers).
    fn sync(&mut self, ino: u64) {
        let Some(node) = self.live.get(&ino).cloned() else {
            return;
        };
        self.pending.remove(&ino);
        self.ops.remove(&ino);
        if let Content::Dir(now) = &node.content {
            let before = self
                .durable
                .get(&ino)
                .and_then(Node::entries)
                .cloned()
                .unwrap_or_default();
            // Entries new here, possibly renamed in: their old durable entry goes with them.
            for (name, &child) in now {
                if before.get(name) != Some(&child) {
                    self.unlink_durably_elsewhere(child, ino, name);
                }
            }
            // Entries gone from here whose inode lives on elsewhere: renamed out, and the
            // entry they were renamed to becomes durable with this one's removal.
            for (name, &child) in &before {
                if now.get(name) == Some(&child) {
                    continue;
                }
                if let Some((to, to_name)) = self.parent.get(&child).cloned() {
                    if to != ino {
                        let empty = self.live.get(&to).map(Node::empty_like);
                        let target = self.durable.entry(to).or_insert_with(|| empty.expect("a live parent"));
                        if let Content::Dir(entries) = &mut target.content {
                            entries.insert(to_name, child);
                        }
                    }
                }
            }
        }
        self.durable.insert(ino, node);
    }

    /// Removes every durable entry for `child` but `(dir, name)`.
    fn unlink_durably_elsewhere(&mut self, child: u64, dir: u64, name: &OsStr) {
        for (&d, node) in self.durable.iter_mut() {
            if let Content::Dir(entries) = &mut node.content {
                entries.retain(|n, c| *c != child || (d == dir && n == name));
            }
        }
    }

    /// Loses what is not durable (but for inodes the dice let keep it), and makes what is
    /// left, reachable from the root, the new live and durable image.
    fn cut(&mut self, keep: f64, rng: &mut impl Rng) {
        let mut pending: Vec<u64> = self.pending.iter().copied().collect();
        pending.sort_unstable();
        pending.shuffle(rng);
        for ino in pending {
            if !self.live.contains_key(&ino) {
                continue;
            }
            let ops = self.ops.get(&ino).map_or(0, Vec::len);
            if keep > 0.0 && rng.random_bool(keep) {
                self.sync(ino);
                self.stats.kept += 1;
            } else if keep > 0.0 && ops > 1 && rng.random_bool(0.5) {
                let first = rng.random_range(1..ops);
                let mut node = match self.durable.get(&ino) {
                    Some(durable) => durable.clone(),
                    None => self.live[&ino].empty_like(),
                };
                if let Content::File(data) = &mut node.content {
                    for op in &self.ops[&ino][..first] {
                        op.apply(data);
                    }
                }
                self.durable.insert(ino, node);
                self.stats.torn += 1;
            } else {
                self.stats.lost += 1;
            }
        }
        let mut live = HashMap::new();
        let mut parent = HashMap::new();
        let mut seen = HashSet::from([ROOT]);
        let mut queue = vec![ROOT];
        while let Some(ino) = queue.pop() {
            let mut node = match (self.durable.get(&ino), self.live.get(&ino)) {
                (Some(durable), _) => durable.clone(),
                (None, Some(live)) => live.empty_like(),
                (None, None) => unreachable!("every inode ever made stays in the live image until a cut"),
            };
            if let Content::Dir(entries) = &mut node.content {
                entries.retain(|name, &mut child| {
                    // An inode reachable twice would be a hard link, which this file system
                    // never makes: keep the first.
                    if !seen.insert(child) {
                        return false;
                    }
                    parent.insert(child, (ino, name.clone()));
                    queue.push(child);
                    true
                });
            }
            live.insert(ino, node);
        }
        self.durable = live.clone();
        self.live = live;
        self.parent = parent;
        self.pending.clear();
        self.ops.clear();
        self.stats.cuts += 1;
    }
}

struct Fs {
    state: Arc<Mutex<State>>,
}

impl Fs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        // Writes come in requests of at most 64 KiB, so that a torn write-back (see the
        // module's doc) can keep part of one big write.
        if let Err(nearest) = config.set_max_write(64 << 10) {
            eprintln!("powercut-fs: the kernel caps writes at {nearest} bytes, not 64 KiB");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = self.state();
        match s.child(parent.0, name).and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
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
        let mut s = self.state();
        let changed = s.node_mut(ino.0).and_then(|node| {
            if let Some(mode) = mode {
                node.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            if let Some(size) = size {
                match &mut node.content {
                    Content::File(data) => data.resize(size as usize, 0),
                    Content::Dir(_) => return Err(Errno::EISDIR),
                }
                node.mtime = SystemTime::now();
            }
            Ok(())
        });
        if let (Ok(()), Some(size)) = (&changed, size) {
            s.ops.entry(ino.0).or_default().push(Op::Len(size));
        }
        let changed = changed.and_then(|()| {
            let node = s.node_mut(ino.0)?;
            match mtime {
                Some(TimeOrNow::SpecificTime(t)) => node.mtime = t,
                Some(TimeOrNow::Now) => node.mtime = SystemTime::now(),
                None => {}
            }
            Ok(())
        });
        match changed.and_then(|()| s.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut s = self.state();
        let made = s.make(req, parent.0, name, Content::Dir(BTreeMap::new()), perm(mode, umask));
        match made.and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
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
        match self.state().rename((parent.0, name), (newparent.0, newname), flags) {
            Ok(()) => reply.ok(),
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
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let mut truncated = false;
        let ino = match s.child(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(Errno::EEXIST),
            Ok(ino) => match s.node_mut(ino).map(|n| &mut n.content) {
                Ok(Content::Dir(_)) => Err(Errno::EISDIR),
                Ok(Content::File(data)) => {
                    if flags & libc::O_TRUNC != 0 {
                        data.clear();
                        truncated = true;
                    }
                    Ok(ino)
                }
                Err(e) => Err(e),
            },
            Err(Errno::ENOENT) => s.make(req, parent.0, name, Content::File(Vec::new()), perm(mode, umask)),
            Err(e) => Err(e),
        };
        if let (true, Ok(ino)) = (truncated, &ino) {
            s.ops.entry(*ino).or_default().push(Op::Len(0));
        }
        match ino.and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(0), FopenFlags::empty()),
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
        let s = self.state();
        match s.node(ino.0).map(|n| &n.content) {
            Ok(Content::File(data)) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Ok(Content::Dir(_)) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        s.stats.writes += 1;
        match s.node_mut(ino.0) {
            Ok(node) => match &mut node.content {
                Content::File(data) => {
                    let op = Op::Write(offset, bytes.to_vec());
                    op.apply(data);
                    node.mtime = SystemTime::now();
                    s.ops.entry(ino.0).or_default().push(op);
                    reply.written(bytes.len() as u32);
                }
                Content::Dir(_) => reply.error(Errno::EISDIR),
            },
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Closing a file makes nothing durable.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        s.stats.file_syncs += 1;
        if s.parent
            .get(&ino.0)
            .is_some_and(|(p, n)| *p == ROOT && n == SYNCFS_FILE)
        {
            s.stats.syncfs += 1;
            let mut all: Vec<u64> = s.pending.iter().copied().collect();
            all.sort_unstable();
            for ino in all {
                s.sync(ino);
            }
        } else {
            s.sync(ino.0);
        }
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = self.state();
        let entries = match s.node(ino.0).map(Node::entries) {
            Ok(Some(e)) => e,
            Ok(None) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        let up = s.parent.get(&ino.0).map_or(ROOT, |(p, _)| *p);
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (up, FileType::Directory, OsString::from("..")),
        ];
        for (name, &child) in entries {
            let kind = match s.live.get(&child).map(|n| &n.content) {
                Some(Content::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        s.stats.dir_syncs += 1;
        s.sync(ino.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// A mounted [`PowerCutFs`]: unmounted when dropped.
pub struct PowerCutFs {
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
}

impl PowerCutFs {
    /// Mounts an empty file system at `mountpoint` (an existing directory). Fails, saying
    /// why, where FUSE is not available.
    pub fn mount(mountpoint: &Path) -> io::Result<Self> {
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "/dev/fuse is missing: the power-cut tests need FUSE (load the fuse module, or give \
                 the container --device /dev/fuse --cap-add SYS_ADMIN)",
            ));
        }
        let meta = std::fs::metadata(mountpoint)?;
        let state = Arc::new(Mutex::new(State::new(meta.uid(), meta.gid())));
        let mut fs = Self {
            mountpoint: mountpoint.to_path_buf(),
            state,
            session: None,
        };
        fs.start()?;
        Ok(fs)
    }

    fn start(&mut self) -> io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("r2sync-powercut".into()),
            MountOption::Subtype("powercut".into()),
            MountOption::RW,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoExec,
        ];
        let fs = Fs {
            state: Arc::clone(&self.state),
        };
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mounting the power-cut FUSE file system at {}: {e} (as root it mounts \
                     directly; otherwise it needs fusermount3, Debian package fuse3)",
                    self.mountpoint.display()
                ),
            )
        })?;
        self.session = Some(session);
        Ok(())
    }

    /// Unmounts (waiting up to 10 s for whoever still has a file open to let go) and waits
    /// for the session to end.
    fn stop(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let mut tries = 0;
        loop {
            match unmount(&self.mountpoint) {
                Ok(()) => break,
                Err(rustix::io::Errno::BUSY) if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    // Left mounted: detach it, so that nothing is served from it any more.
                    if let Err(detach) = rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH) {
                        eprintln!(
                            "powercut-fs: {} stays mounted: {e}; detaching failed too: {detach}",
                            self.mountpoint.display()
                        );
                    }
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!(
                            "unmounting {}: {e} (a process still had a file open on it?)",
                            self.mountpoint.display()
                        ),
                    ));
                }
            }
        }
        match session.join() {
            // The session's last read of /dev/fuse after the unmount: ENODEV, or, where the
            // connection asked for abort errors, ECONNABORTED. Both mean it ended as asked.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CONNABORTED.raw_os_error()) => Ok(()),
            ended => ended,
        }
    }

    /// Cuts the power: unmounts, loses every change not durable (each inode with pending
    /// changes keeps them all with probability `keep`, as if written back just in time; the
    /// dice are `seed`'s), and mounts what is left. Whoever used the file system must have
    /// been killed first.
    pub fn power_cut(&mut self, keep: f64, seed: u64) -> io::Result<()> {
        self.stop()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        self.state.lock().unwrap_or_else(|p| p.into_inner()).cut(keep, &mut rng);
        self.start()
    }

    /// What the file system has seen and done so far.
    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

/// Unmounts `path`: directly as root, else with `fusermount3 -u` (whose failures are taken
/// for a busy mount, to be tried again).
fn unmount(path: &Path) -> Result<(), rustix::io::Errno> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()) {
        Err(rustix::io::Errno::PERM) => {
            let done = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(path)
                .stderr(std::process::Stdio::null())
                .status();
            match done {
                Ok(status) if status.success() => Ok(()),
                Ok(_) => Err(rustix::io::Errno::BUSY),
                Err(_) => Err(rustix::io::Errno::PERM),
            }
        }
        other => other,
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        drop(self.stop());
    }
}

#[cfg(test)]
mod tests;
