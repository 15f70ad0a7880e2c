//! Safe, parallel snapshot of a directory tree.
//!
//! Every open is confined to the root: directories are opened from the root
//! fd (or, more than [`DEEP_REL`] bytes of path down, from an ancestor's fd,
//! so depth is unlimited) with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)` (or a component-by-component
//! `O_PATH|O_NOFOLLOW` walk where openat2 is missing). Every other entry is
//! first taken as an `O_PATH|O_NOFOLLOW` handle (one component relative to
//! its directory fd) and checked on that fd; only a regular file is then
//! reopened for reading, through `/proc/self/fd`, so whatever a racing
//! process renames into place, no FIFO, socket or device is ever opened.
//! Symlinks are read, never followed. The walk goes through a private
//! read-only `noatime` view of the root ([`crate::view`]): no atime changes,
//! symlinks' included; without it files and directories are opened with
//! `O_NOATIME`, and a refused `O_NOATIME` is recorded, never retried without.

use crate::confine::{
    cvt, errno, fstat, open_in_root, openat, path_handle, proc_fds, reopen_regular, Fd,
};
use crate::entry::{EntryKind, Extra, Rec, Tree, Xattr, F_ATIME, F_BTIME, F_CTIME, F_WALK};
use crate::hash::{hash_fd, AlignedBuf};
use crate::view::noatime_view;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Options of [`walk`].
#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    /// Directory inside the root to walk instead of the root itself
    /// ("/dev/shm"); resolved inside the root fd without following any
    /// symlink. Entry paths are then relative to it.
    pub subpath: Option<Vec<u8>>,
    /// Paths relative to the root ("/proc") that are recorded but not descended into.
    pub exclude: Vec<Vec<u8>>,
    /// Do not descend into directories on another filesystem than the root.
    pub one_filesystem: bool,
    /// Regular files larger than this are not hashed.
    pub hash_max_size: Option<u64>,
    /// Also MD5 and SHA-1 of every hashed file, in the same read as its SHA-256.
    pub legacy_hashes: bool,
    /// Worker threads; 0 = number of cores.
    pub threads: usize,
    #[doc(hidden)]
    /// Test hook: run on every worker thread at start.
    pub thread_start: Option<fn()>,
    #[doc(hidden)]
    /// Test hook: pretend openat2 is missing.
    pub force_no_openat2: bool,
    #[doc(hidden)]
    /// Test hook: walk without the noatime view (as without `CAP_SYS_ADMIN`).
    pub force_no_view: bool,
}

/// How a walk kept atimes unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtimeGuard {
    /// Everything was read through a private read-only `noatime` view of
    /// the root ([`crate::view`]): no atime changed, symlinks' included.
    View,
    /// The view could not be made (the reason is given): files and
    /// directories were opened with `O_NOATIME`, but reading a symlink may
    /// have updated the link's atime.
    NoAtimeFlag(String),
}

/// The result of [`walk`].
#[derive(Debug)]
pub struct Walked {
    /// Entries sorted by path bytes.
    pub tree: Tree,
    pub atime: AtimeGuard,
}

/// Shared counters, readable while a walk runs; `cancel` stops it.
#[derive(Debug, Default)]
pub struct Progress {
    pub entries: AtomicU64,
    pub bytes_hashed: AtomicU64,
    pub cancel: AtomicBool,
}

/// Why a walk failed as a whole.
#[derive(Debug)]
pub enum WalkError {
    /// The root could not be opened or listed.
    Io(io::Error),
    /// The subpath could not be opened inside the root (ELOOP: it is or
    /// goes through a symlink; ENOTDIR: not a directory; ENOENT: missing).
    Subpath(io::Error),
    /// [`Progress::cancel`] was set.
    Cancelled,
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

/// Bytes of path below a directory fd after which a directory's own fd
/// becomes the base its descendants are opened from: the walk is never
/// limited by `PATH_MAX`, and only about one fd per this many bytes of
/// depth is held open.
pub(crate) const DEEP_REL: usize = 1024;
const READ_BUF: usize = 256 * 1024;
const DENTS_BUF: usize = 64 * 1024;
/// Entries of one directory handled by one task.
const CHUNK: usize = 192;

const WANTED_XATTR_EXACT: [&[u8]; 2] = [b"security.capability", b"security.selinux"];
const WANTED_XATTR_PREFIX: [&[u8]; 3] = [
    b"trusted.overlay.",
    b"user.overlay.",
    b"user.fuseoverlayfs.",
];

fn wanted_xattr(name: &[u8]) -> bool {
    WANTED_XATTR_EXACT.contains(&name) || WANTED_XATTR_PREFIX.iter().any(|p| name.starts_with(p))
}

// ---------------------------------------------------------------- fd utils

/// Short lowercase description of an OS error.
pub fn describe(e: &io::Error) -> String {
    match errno(e) {
        libc::EACCES | libc::EPERM => "permission denied".into(),
        libc::ENOENT => "vanished".into(),
        _ => {
            let s = e.to_string();
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

pub(crate) fn statx_at(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<libc::statx> {
    let mut st = MaybeUninit::<libc::statx>::uninit();
    // SAFETY: valid pointers; statx fills the struct on success.
    let r = unsafe {
        libc::statx(
            dirfd,
            name.as_ptr(),
            flags | libc::AT_NO_AUTOMOUNT,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            st.as_mut_ptr(),
        )
    };
    cvt(r)?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { st.assume_init() })
}

fn ts_ns(t: &libc::statx_timestamp) -> i64 {
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as i64)
}

fn rec_from_statx(st: &libc::statx) -> Rec {
    let mode = st.stx_mode as u32;
    let kind = EntryKind::from_mode(mode);
    let mut r = Rec {
        kind,
        mode: (mode & 0o7777) as u16,
        uid: st.stx_uid,
        gid: st.stx_gid,
        size: st.stx_size,
        mtime_ns: ts_ns(&st.stx_mtime),
        inode: st.stx_ino,
        nlink: st.stx_nlink,
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        blocks: st.stx_blocks,
        flags: F_WALK,
        ..Rec::default()
    };
    if matches!(kind, EntryKind::Char | EntryKind::Block) {
        r.rdev_major = st.stx_rdev_major;
        r.rdev_minor = st.stx_rdev_minor;
    }
    if st.stx_mask & libc::STATX_ATIME != 0 {
        r.flags |= F_ATIME;
        r.atime_ns = ts_ns(&st.stx_atime);
    }
    if st.stx_mask & libc::STATX_CTIME != 0 {
        r.flags |= F_CTIME;
        r.ctime_ns = ts_ns(&st.stx_ctime);
    }
    if st.stx_mask & libc::STATX_BTIME != 0 {
        r.flags |= F_BTIME;
        r.btime_ns = ts_ns(&st.stx_btime);
    }
    r
}

fn same_file(st: &libc::stat, rec: &Rec) -> bool {
    st.st_ino == rec.inode && st.st_dev == rec.dev
}

// ---------------------------------------------------------------- xattrs

enum XattrSrc<'a> {
    Fd(RawFd),
    /// Path that is not followed in its final component.
    LPath(&'a CStr),
}

fn xattr_list(src: &XattrSrc<'_>, buf: &mut [u8]) -> isize {
    // SAFETY: buf valid for writes of its length.
    unsafe {
        match src {
            XattrSrc::Fd(fd) => libc::flistxattr(*fd, buf.as_mut_ptr().cast(), buf.len()),
            XattrSrc::LPath(p) => libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()),
        }
    }
}

fn xattr_get(src: &XattrSrc<'_>, name: &CStr, buf: &mut [u8]) -> isize {
    // SAFETY: buf valid for writes of its length; name NUL-terminated.
    unsafe {
        match src {
            XattrSrc::Fd(fd) => {
                libc::fgetxattr(*fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            }
            XattrSrc::LPath(p) => libc::lgetxattr(
                p.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            ),
        }
    }
}

/// Read the forensic xattrs. Unsupported / absent xattrs are not errors;
/// other failures are ignored too (the entry itself is still recorded).
fn read_xattrs(src: XattrSrc<'_>) -> Vec<Xattr> {
    let mut out = Vec::new();
    let mut small = [0u8; 1024];
    let mut big: Vec<u8>;
    let n = xattr_list(&src, &mut small);
    let list: &[u8] = if n >= 0 {
        &small[..n as usize]
    } else if errno(&io::Error::last_os_error()) == libc::ERANGE {
        let mut size = xattr_list(&src, &mut []);
        loop {
            if size <= 0 {
                return out;
            }
            big = vec![0; size as usize];
            let n = xattr_list(&src, &mut big);
            if n >= 0 {
                big.truncate(n as usize);
                break;
            }
            if errno(&io::Error::last_os_error()) != libc::ERANGE {
                return out;
            }
            size = xattr_list(&src, &mut []);
        }
        &big
    } else {
        return out;
    };
    for name in list.split(|&b| b == 0) {
        if name.is_empty() || !wanted_xattr(name) {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut vbuf = [0u8; 1024];
        let n = xattr_get(&src, &cname, &mut vbuf);
        if n >= 0 {
            out.push((name.into(), vbuf[..n as usize].into()));
            continue;
        }
        if errno(&io::Error::last_os_error()) != libc::ERANGE {
            continue;
        }
        for _ in 0..4 {
            let size = xattr_get(&src, &cname, &mut []);
            if size < 0 {
                break;
            }
            let mut v = vec![0u8; size as usize];
            let n = xattr_get(&src, &cname, &mut v);
            if n >= 0 {
                v.truncate(n as usize);
                out.push((name.into(), v.into()));
                break;
            }
            if errno(&io::Error::last_os_error()) != libc::ERANGE {
                break;
            }
        }
    }
    out
}

fn proc_fd_path(dirfd: RawFd, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).expect("names contain no NUL")
}

// ---------------------------------------------------------------- buffers

pub(crate) struct Bufs {
    read: AlignedBuf,
    pub(crate) dents: AlignedBuf,
}

thread_local! {
    static BUFS: RefCell<Option<Box<Bufs>>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's buffers (taken out so re-entrancy is safe).
pub(crate) fn with_bufs<R>(f: impl FnOnce(&mut Bufs) -> R) -> R {
    let mut b = BUFS.with(|c| c.borrow_mut().take()).unwrap_or_else(|| {
        Box::new(Bufs {
            read: AlignedBuf::new(READ_BUF),
            dents: AlignedBuf::new(DENTS_BUF),
        })
    });
    let r = f(&mut b);
    BUFS.with(|c| *c.borrow_mut() = Some(b));
    r
}

// ---------------------------------------------------------------- walker

struct Ctx<'a> {
    rootfd: RawFd,
    /// `O_NOATIME`, or 0 when the walk goes through a noatime view (the
    /// mount keeps every atime, see [`crate::view`]).
    noatime: libc::c_int,
    /// `/proc/self/fd`: regular files are reopened through it.
    procfd: Option<RawFd>,
    root_dev: u64,
    opts: &'a WalkOptions,
    exclude: HashSet<Vec<u8>>,
    progress: &'a Progress,
    out: Mutex<Tree>,
    have_openat2: AtomicBool,
    root_error: Mutex<Option<io::Error>>,
}

impl<'a> Ctx<'a> {
    fn new(
        rootfd: RawFd,
        noatime: libc::c_int,
        root_dev: u64,
        opts: &'a WalkOptions,
        progress: &'a Progress,
        have_openat2: bool,
    ) -> Self {
        Ctx {
            rootfd,
            noatime,
            procfd: proc_fds(),
            root_dev,
            opts,
            exclude: opts.exclude.iter().map(|p| normalize_exclude(p)).collect(),
            progress,
            out: Mutex::new(Tree::new()),
            have_openat2: AtomicBool::new(have_openat2),
            root_error: Mutex::new(None),
        }
    }
}

struct DirJob {
    /// "/a/b"; empty for the root.
    path: Vec<u8>,
    /// Directory `path[rel..]` is opened from (None: the root), so that no
    /// open needs more than [`DEEP_REL`] bytes of path, however deep.
    base: Option<Arc<Fd>>,
    rel: usize,
    /// Stat seen while listing the parent (None for the root).
    rec: Option<Rec>,
}

/// Names of one directory: NUL-terminated names in one buffer.
pub(crate) struct Listing {
    names: Vec<u8>,
    /// (start offset, end offset excluding NUL)
    pub(crate) spans: Vec<(u32, u32)>,
    /// d_type hints (DT_UNKNOWN when the filesystem gives none)
    types: Vec<u8>,
}

impl Listing {
    pub(crate) fn name(&self, i: usize) -> &CStr {
        let (s, e) = self.spans[i];
        CStr::from_bytes_with_nul(&self.names[s as usize..e as usize + 1]).expect("nul-terminated")
    }
}

pub(crate) fn list_dir(fd: RawFd, dents: &mut AlignedBuf) -> (Listing, Option<io::Error>) {
    let mut l = Listing {
        names: Vec::new(),
        spans: Vec::new(),
        types: Vec::new(),
    };
    loop {
        let buf = dents.as_mut_slice();
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if errno(&e) == libc::EINTR {
                continue;
            }
            return (l, Some(e));
        }
        if n == 0 {
            return (l, None);
        }
        let n = n as usize;
        let mut pos = 0;
        while pos + 19 < n {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[pos + 16], buf[pos + 17]]) as usize;
            let dtype = buf[pos + 18];
            if reclen == 0 || pos + reclen > n {
                break;
            }
            let name_area = &buf[pos + 19..pos + reclen];
            let len = name_area
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_area.len());
            let name = &name_area[..len];
            pos += reclen;
            if name == b"." || name == b".." || name.is_empty() {
                continue;
            }
            let start = l.names.len() as u32;
            l.names.extend_from_slice(name);
            l.spans.push((start, start + len as u32));
            l.types.push(dtype);
            l.names.push(0);
        }
    }
}

impl Ctx<'_> {
    fn cancelled(&self) -> bool {
        self.progress.cancel.load(Ordering::Relaxed)
    }

    fn open_dir(&self, base: Option<&Fd>, rel: &[u8]) -> io::Result<Fd> {
        open_in_root(
            base.map_or(self.rootfd, |f| f.0),
            rel,
            libc::O_RDONLY | libc::O_DIRECTORY | self.noatime,
            &self.have_openat2,
        )
    }

    fn emit(&self, t: Tree, bytes: u64) {
        if t.is_empty() && bytes == 0 {
            return;
        }
        self.progress
            .entries
            .fetch_add(t.len() as u64, Ordering::Relaxed);
        self.progress
            .bytes_hashed
            .fetch_add(bytes, Ordering::Relaxed);
        self.out.lock().unwrap_or_else(|p| p.into_inner()).append(t);
    }

    fn process_dir<'s>(&'s self, scope: &rayon::Scope<'s>, job: DirJob) {
        if self.cancelled() {
            return;
        }
        let is_root = job.rec.is_none();
        let mut own = Tree::new();
        let mut extra = Extra::default();
        let dir = match self.open_dir(job.base.as_deref(), &job.path[job.rel..]) {
            Ok(fd) => fd,
            Err(e) => {
                if is_root {
                    *self.root_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
                extra.error = Some(match errno(&e) {
                    libc::ENOENT => "vanished".into(),
                    libc::ELOOP | libc::ENOTDIR | libc::EXDEV => "changed during walk".into(),
                    _ => format!("cannot list directory: {}", describe(&e)).into(),
                });
                own.push(&job.path, job.rec.unwrap_or_default(), Some(extra));
                self.emit(own, 0);
                return;
            }
        };
        if let Some(rec) = &job.rec {
            match fstat(dir.0) {
                Ok(st) if same_file(&st, rec) && st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                _ => {
                    extra.error = Some("changed during walk".into());
                    own.push(&job.path, *rec, Some(extra));
                    self.emit(own, 0);
                    return;
                }
            }
            extra.xattrs = read_xattrs(XattrSrc::Fd(dir.0));
        }
        let (listing, list_err) = with_bufs(|b| list_dir(dir.0, &mut b.dents));
        if let Some(e) = list_err {
            if is_root {
                *self.root_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
            extra.error = Some(format!("cannot list directory: {}", describe(&e)).into());
        }
        if let Some(rec) = job.rec {
            own.push(&job.path, rec, Some(extra));
            self.emit(own, 0);
        }
        let n = listing.spans.len();
        let dir = Arc::new(dir);
        let (base, rel) = if job.path.len() - job.rel > DEEP_REL {
            (Some(&dir), job.path.len() + 1)
        } else {
            (job.base.as_ref(), job.rel)
        };
        let run = |range: std::ops::Range<usize>| {
            let mut subdirs = Vec::new();
            let (t, bytes) = with_bufs(|b| {
                self.process_entries(dir.0, &job.path, &listing, range, &mut b.read, &mut subdirs)
            });
            for sub in &mut subdirs {
                sub.base = base.cloned();
                sub.rel = rel;
            }
            self.emit(t, bytes);
            subdirs
        };
        let subdirs: Vec<DirJob> = if n <= CHUNK {
            run(0..n)
        } else {
            let starts: Vec<usize> = (0..n).step_by(CHUNK).collect();
            starts
                .into_par_iter()
                .map(|s| run(s..(s + CHUNK).min(n)))
                .reduce(Vec::new, |mut a, mut b| {
                    a.append(&mut b);
                    a
                })
        };
        for sub in subdirs {
            scope.spawn(move |s| self.process_dir(s, sub));
        }
    }

    fn process_entries(
        &self,
        dirfd: RawFd,
        parent: &[u8],
        listing: &Listing,
        range: std::ops::Range<usize>,
        buf: &mut AlignedBuf,
        subdirs: &mut Vec<DirJob>,
    ) -> (Tree, u64) {
        let mut t = Tree::new();
        let mut bytes = 0u64;
        let mut path = Vec::with_capacity(parent.len() + 64);
        for i in range {
            if self.cancelled() {
                break;
            }
            let name = listing.name(i);
            path.clear();
            path.extend_from_slice(parent);
            path.push(b'/');
            path.extend_from_slice(name.to_bytes());
            if listing.types[i] == libc::DT_REG {
                // Fast path for what the listing says is a regular file:
                // open it (single component, O_NOFOLLOW, O_NONBLOCK) and
                // take every field from statx on the fd, which also proves
                // what was opened. Anything else falls back to the generic
                // path below.
                if let Some((rec, x, n)) = self.try_regular(dirfd, name, buf) {
                    bytes += n;
                    t.push(&path, rec, Some(x));
                    continue;
                }
            }
            let st = match statx_at(dirfd, name, libc::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    let x = Extra {
                        error: Some(describe(&e).into()),
                        ..Extra::default()
                    };
                    t.push(&path, Rec::default(), Some(x));
                    continue;
                }
            };
            let mut rec = rec_from_statx(&st);
            let mut x = Extra::default();
            match rec.kind {
                EntryKind::File => {
                    bytes += self.hash_file(dirfd, name, &mut rec, &mut x, buf);
                }
                EntryKind::Dir => {
                    if self.exclude.contains(&path) {
                        x.xattrs = read_xattrs(XattrSrc::LPath(&proc_fd_path(dirfd, name)));
                    } else if self.opts.one_filesystem && rec.dev != self.root_dev {
                        x.error = Some("other filesystem, not descended".into());
                    } else {
                        subdirs.push(DirJob {
                            path: path.clone(),
                            base: None,
                            rel: 0,
                            rec: Some(rec),
                        });
                        continue;
                    }
                }
                EntryKind::Symlink => {
                    match readlink(dirfd, name) {
                        Ok(target) => x.target = Some(target.into()),
                        Err(e) => {
                            x.error = Some(format!("cannot read link: {}", describe(&e)).into())
                        }
                    }
                    x.xattrs = read_xattrs(XattrSrc::LPath(&proc_fd_path(dirfd, name)));
                }
                EntryKind::Char => {
                    x.xattrs = read_xattrs(XattrSrc::LPath(&proc_fd_path(dirfd, name)));
                }
                _ => {}
            }
            t.push(&path, rec, Some(x));
        }
        (t, bytes)
    }

    /// Fast path for a DT_REG listing entry. Returns None when the entry must
    /// go through the generic statx-by-name path (not a regular file any
    /// more, or no handle on it for a reason other than vanishing).
    fn try_regular(
        &self,
        dirfd: RawFd,
        name: &CStr,
        buf: &mut AlignedBuf,
    ) -> Option<(Rec, Extra, u64)> {
        let handle = match path_handle(dirfd, name) {
            Ok(fd) => fd,
            Err(e) if errno(&e) == libc::ENOENT => {
                let x = Extra {
                    error: Some("vanished".into()),
                    ..Extra::default()
                };
                return Some((Rec::default(), x, 0));
            }
            Err(_) => return None,
        };
        // The lookup just brought fresh attributes; DONT_SYNC keeps a FUSE
        // mount (fuse-overlayfs's merged view) from asking its daemon again,
        // a round trip per file (no-op on local filesystems). A size that
        // moved meanwhile still shows as "changed during walk" after the read.
        let st = statx_at(
            handle.0,
            c"",
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
        )
        .ok()?;
        if st.stx_mode as u32 & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let mut rec = rec_from_statx(&st);
        let mut x = Extra::default();
        let n = self.read_handle(&handle, &mut rec, &mut x, buf);
        Some((rec, x, n))
    }

    /// Hash the regular file `name` whose statx gave `rec`: a handle is
    /// taken on the name, checked to be that very regular file, and only
    /// then read. Returns bytes hashed.
    fn hash_file(
        &self,
        dirfd: RawFd,
        name: &CStr,
        rec: &mut Rec,
        x: &mut Extra,
        buf: &mut AlignedBuf,
    ) -> u64 {
        let handle = match path_handle(dirfd, name) {
            Ok(fd) => fd,
            Err(e) => {
                x.error = Some(describe(&e).into());
                return 0;
            }
        };
        match fstat(handle.0) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG && same_file(&st, rec) => {}
            Ok(_) => {
                x.error = Some("changed during walk".into());
                return 0;
            }
            Err(e) => {
                x.error = Some(describe(&e).into());
                return 0;
            }
        }
        self.read_handle(&handle, rec, x, buf)
    }

    /// Reopen the checked regular file behind `handle` for reading (through
    /// `/proc/self/fd`: a device, FIFO or socket is never opened, whatever
    /// replaced the name) and hash it. Returns bytes hashed.
    fn read_handle(&self, handle: &Fd, rec: &mut Rec, x: &mut Extra, buf: &mut AlignedBuf) -> u64 {
        let Some(procfd) = self.procfd else {
            x.error =
                Some("not read: /proc is not mounted (files are opened only through it)".into());
            return 0;
        };
        match reopen_regular(procfd, handle, self.noatime) {
            Ok(fd) => self.hash_open_file(&fd, rec, x, buf),
            Err(e) => {
                x.error = Some(describe(&e).into());
                0
            }
        }
    }

    /// xattrs, size cap and hash of a verified regular file. Returns bytes hashed.
    fn hash_open_file(&self, fd: &Fd, rec: &mut Rec, x: &mut Extra, buf: &mut AlignedBuf) -> u64 {
        x.xattrs = read_xattrs(XattrSrc::Fd(fd.0));
        if let Some(cap) = self.opts.hash_max_size {
            if rec.size > cap {
                x.error = Some(format!("over hash size cap ({cap} bytes)").into());
                return 0;
            }
        }
        match hash_fd(fd.0, buf, Some(rec.size), self.opts.legacy_hashes) {
            Ok((digests, n)) => {
                rec.set_sha(digests.sha256);
                x.legacy = digests.legacy;
                if n != rec.size {
                    x.error = Some("changed during walk".into());
                }
                n
            }
            Err(e) => {
                x.error = Some(format!("read failed: {}", describe(&e)).into());
                0
            }
        }
    }
}

fn readlink(dirfd: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut size = 4096;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: buf valid for size bytes.
        let n = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), size) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < size {
            buf.truncate(n);
            return Ok(buf);
        }
        size *= 4;
    }
}

/// Normalise an exclude path to "/a/b" form.
pub fn normalize_exclude(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len() + 1);
    for comp in p
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    out
}

/// Snapshot the tree under `root`. Entries are sorted by path bytes.
pub fn walk(root: &Path, opts: &WalkOptions, progress: &Progress) -> Result<Walked, WalkError> {
    let croot = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let rootfd = openat(
        libc::AT_FDCWD,
        &croot,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    let have_openat2 = AtomicBool::new(!opts.force_no_openat2);
    let rootfd = match &opts.subpath {
        None => rootfd,
        Some(sub) => open_in_root(
            rootfd.0,
            sub,
            libc::O_PATH | libc::O_DIRECTORY,
            &have_openat2,
        )
        .map_err(WalkError::Subpath)?,
    };
    let root_st = statx_at(rootfd.0, c"", libc::AT_EMPTY_PATH)?;
    if root_st.stx_mode as u32 & libc::S_IFMT != libc::S_IFDIR {
        return Err(WalkError::Subpath(io::Error::from_raw_os_error(
            libc::ENOTDIR,
        )));
    }
    let (rootfd, atime) = if opts.force_no_view {
        (rootfd, AtimeGuard::NoAtimeFlag("disabled".into()))
    } else {
        match noatime_view(rootfd.0, croot.as_bytes()) {
            Ok(view) => (view, AtimeGuard::View),
            Err(e) => (rootfd, AtimeGuard::NoAtimeFlag(describe(&e))),
        }
    };
    let noatime = if atime == AtimeGuard::View {
        0
    } else {
        libc::O_NOATIME
    };
    let root_dev = libc::makedev(root_st.stx_dev_major, root_st.stx_dev_minor);
    let ctx = Ctx::new(
        rootfd.0,
        noatime,
        root_dev,
        opts,
        progress,
        have_openat2.into_inner(),
    );
    let mut builder = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("drift-walk-{i}"));
    if let Some(hook) = opts.thread_start {
        builder = builder.start_handler(move |_| hook());
    }
    let pool = builder.build().map_err(io::Error::other)?;
    pool.install(|| {
        rayon::scope(|s| {
            ctx.process_dir(
                s,
                DirJob {
                    path: Vec::new(),
                    base: None,
                    rel: 0,
                    rec: None,
                },
            )
        })
    });
    if let Some(e) = ctx
        .root_error
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(WalkError::Io(e));
    }
    if progress.cancel.load(Ordering::Relaxed) {
        return Err(WalkError::Cancelled);
    }
    let mut tree = ctx.out.into_inner().unwrap_or_else(|p| p.into_inner());
    pool.install(|| tree.par_sort_by_path());
    drop(pool);
    tree.shrink_to_fit();
    Ok(Walked { tree, atime })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryRef;
    use sha2::{Digest, Sha256};
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn run(root: &Path, opts: &WalkOptions) -> Tree {
        walk(root, opts, &Progress::default()).unwrap().tree
    }

    fn find<'a>(t: &'a Tree, p: &[u8]) -> EntryRef<'a> {
        t.iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("no entry {}", String::from_utf8_lossy(p)))
    }

    fn cpath(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn basic_tree() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f.txt"), b"hello").unwrap();
        fs::write(r.join("empty"), b"").unwrap();
        std::fs::write(r.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(r.join("big"), &big).unwrap();
        let t = run(r, &WalkOptions::default());
        let paths: Vec<&[u8]> = t.iter().map(|e| e.path).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert!(!paths.contains(&&b""[..]) && !paths.contains(&&b"/"[..]));
        let f = find(&t, b"/a/b/f.txt");
        assert_eq!(f.rec.kind, EntryKind::File);
        assert_eq!(f.rec.size, 5);
        assert_eq!(
            f.rec.sha().unwrap().as_slice(),
            Sha256::digest(b"hello").as_slice()
        );
        assert!(f.error().is_none());
        assert!(f.rec.walk_info().is_some());
        assert!(f.legacy().is_none());
        let legacy = run(
            r,
            &WalkOptions {
                legacy_hashes: true,
                ..Default::default()
            },
        );
        let l = find(&legacy, b"/a/b/f.txt").legacy().copied().unwrap();
        assert_eq!(hex::encode(l.md5), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            hex::encode(l.sha1),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
        assert!(find(&legacy, b"/a").legacy().is_none());
        assert_eq!(
            find(&t, b"/big").rec.sha().unwrap().as_slice(),
            Sha256::digest(&big).as_slice()
        );
        assert_eq!(
            find(&t, b"/empty").rec.sha().unwrap().as_slice(),
            Sha256::digest(b"").as_slice()
        );
        assert_eq!(find(&t, b"/a").rec.kind, EntryKind::Dir);
        assert_eq!(find(&t, b"/bad\xffname").rec.kind, EntryKind::File);
        assert_eq!(t.error_count(), 0);
    }

    #[test]
    fn many_files_parallel_and_fallback() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for i in 0..700 {
            fs::write(r.join(format!("f{i}")), format!("{i}")).unwrap();
        }
        fs::create_dir_all(r.join("x/y/z")).unwrap();
        fs::write(r.join("x/y/z/deep"), b"deep").unwrap();
        for opts in [
            WalkOptions {
                threads: 2,
                ..Default::default()
            },
            WalkOptions {
                threads: 1,
                force_no_openat2: true,
                ..Default::default()
            },
        ] {
            let t = run(r, &opts);
            assert_eq!(t.len(), 700 + 4);
            for i in [0, 350, 699] {
                let e = find(&t, format!("/f{i}").as_bytes());
                assert_eq!(
                    e.rec.sha().unwrap().as_slice(),
                    Sha256::digest(format!("{i}").as_bytes()).as_slice()
                );
            }
            assert!(find(&t, b"/x/y/z/deep").rec.sha().is_some());
        }
    }

    #[test]
    fn symlinks_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        symlink("/etc/passwd", r.join("passwd")).unwrap();
        symlink("../../../../../../", r.join("up")).unwrap();
        symlink("/", r.join("slash")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        fs::create_dir(r.join("d")).unwrap();
        symlink("/etc", r.join("d/etc")).unwrap();
        let t = run(r, &WalkOptions::default());
        assert_eq!(t.len(), 6);
        let p = find(&t, b"/passwd");
        assert_eq!(p.rec.kind, EntryKind::Symlink);
        assert_eq!(p.target(), Some(&b"/etc/passwd"[..]));
        assert!(p.rec.sha().is_none());
        assert_eq!(find(&t, b"/loop").target(), Some(&b"loop"[..]));
        assert!(t
            .iter()
            .all(|e| !e.path.starts_with(b"/up/") && !e.path.starts_with(b"/d/etc/")));
    }

    #[test]
    fn openat2_confines_swapped_dir() {
        // A directory job whose path now contains a symlink must not escape.
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        symlink("/etc", r.join("evil")).unwrap();
        let opts = WalkOptions::default();
        for no2 in [false, true] {
            let root = openat(libc::AT_FDCWD, &cpath(r), libc::O_PATH | libc::O_DIRECTORY).unwrap();
            let progress = Progress::default();
            let ctx = Ctx::new(root.0, libc::O_NOATIME, 0, &opts, &progress, !no2);
            assert!(ctx.open_dir(None, b"/evil").is_err());
            assert!(ctx.open_dir(None, b"/evil/ssl").is_err());
        }
    }

    #[test]
    fn subpath_is_resolved_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("real/dir")).unwrap();
        fs::write(r.join("real/dir/file"), b"in").unwrap();
        fs::write(r.join("real/top"), b"t").unwrap();
        fs::write(r.join("plain"), b"p").unwrap();
        symlink("/etc", r.join("sub")).unwrap();
        symlink("real", r.join("rel")).unwrap();
        fs::create_dir(r.join("d")).unwrap();
        symlink("/etc", r.join("d/etc")).unwrap();
        let sub_err = |sp: &[u8], no2: bool| -> i32 {
            let opts = WalkOptions {
                subpath: Some(sp.to_vec()),
                force_no_openat2: no2,
                ..Default::default()
            };
            match walk(r, &opts, &Progress::default()) {
                Err(WalkError::Subpath(e)) => errno(&e),
                Err(e) => panic!("{sp:?}: other error {e:?}"),
                Ok(w) => panic!("{sp:?}: walked {} entries", w.tree.len()),
            }
        };
        for no2 in [false, true] {
            assert_eq!(sub_err(b"/sub", no2), libc::ELOOP);
            assert_eq!(sub_err(b"sub/ssl", no2), libc::ELOOP);
            assert_eq!(sub_err(b"/rel", no2), libc::ELOOP);
            assert_eq!(sub_err(b"/d/etc", no2), libc::ELOOP);
            assert_eq!(sub_err(b"/plain", no2), libc::ENOTDIR);
            assert_eq!(sub_err(b"/nope", no2), libc::ENOENT);
            for sp in [&b"/real"[..], b"real/", b"/../../real", b"/d/../real"] {
                let opts = WalkOptions {
                    subpath: Some(sp.to_vec()),
                    force_no_openat2: no2,
                    ..Default::default()
                };
                let t = run(r, &opts);
                let paths: Vec<&[u8]> = t.iter().map(|e| e.path).collect();
                assert_eq!(paths, vec![&b"/dir"[..], b"/dir/file", b"/top"]);
                assert_eq!(
                    find(&t, b"/dir/file").rec.sha().unwrap().as_slice(),
                    Sha256::digest(b"in").as_slice()
                );
            }
            // the empty subpath / "/" is the root itself
            let opts = WalkOptions {
                subpath: Some(b"/".to_vec()),
                ..Default::default()
            };
            assert_eq!(run(r, &opts).len(), run(r, &WalkOptions::default()).len());
        }
    }

    #[test]
    fn fifo_socket_device_not_opened() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let fifo = cpath(&r.join("fifo"));
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let _sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        let dev = cpath(&r.join("null"));
        let have_dev =
            unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) } == 0;
        let t = run(r, &WalkOptions::default()); // would hang on the FIFO if opened
        assert_eq!(find(&t, b"/fifo").rec.kind, EntryKind::Fifo);
        assert_eq!(find(&t, b"/sock").rec.kind, EntryKind::Socket);
        if have_dev {
            let n = find(&t, b"/null");
            assert_eq!(n.rec.kind, EntryKind::Char);
            assert_eq!((n.rec.rdev_major, n.rec.rdev_minor), (1, 3));
        }
        assert_eq!(t.error_count(), 0);
    }

    fn atime_of(p: &Path) -> (i64, i64) {
        use std::os::unix::fs::MetadataExt;
        let m = fs::symlink_metadata(p).unwrap();
        (m.atime(), m.atime_nsec())
    }

    #[test]
    fn atime_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("sub")).unwrap();
        fs::write(r.join("sub/file"), b"content").unwrap();
        fs::write(r.join("top"), b"more content").unwrap();
        let old = [
            libc::timespec {
                tv_sec: 1_000_000,
                tv_nsec: 5,
            },
            libc::timespec {
                tv_sec: 2_000_000,
                tv_nsec: 0,
            },
        ];
        let paths = [
            r.join("sub/file"),
            r.join("top"),
            r.join("sub"),
            r.to_path_buf(),
        ];
        for p in &paths {
            assert_eq!(
                unsafe { libc::utimensat(libc::AT_FDCWD, cpath(p).as_ptr(), old.as_ptr(), 0) },
                0
            );
        }
        let before: Vec<_> = paths.iter().map(|p| atime_of(p)).collect();
        let t = run(r, &WalkOptions::default());
        assert!(find(&t, b"/top").rec.sha().is_some());
        let after: Vec<_> = paths.iter().map(|p| atime_of(p)).collect();
        assert_eq!(before, after);
        assert_eq!(find(&t, b"/top").rec.atime(), Some(1_000_000_000_000_005));
    }

    #[test]
    fn depth_is_unlimited() {
        // 2000 levels of "d": 4000 bytes of path, more than PATH_MAX below.
        let d = tempfile::tempdir().unwrap();
        let base = cpath(d.path());
        let mut fd = openat(libc::AT_FDCWD, &base, libc::O_DIRECTORY).unwrap();
        for _ in 0..2000 {
            assert_eq!(unsafe { libc::mkdirat(fd.0, c"d".as_ptr(), 0o755) }, 0);
            fd = openat(fd.0, c"d", libc::O_DIRECTORY).unwrap();
        }
        let w = unsafe {
            libc::openat(
                fd.0,
                c"leaf".as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        };
        assert!(w >= 0);
        assert_eq!(unsafe { libc::write(w, b"hidden".as_ptr().cast(), 6) }, 6);
        unsafe { libc::close(w) };
        let leaf: Vec<u8> = b"/d".repeat(2000).into_iter().chain(*b"/leaf").collect();
        for no2 in [false, true] {
            let t = run(
                d.path(),
                &WalkOptions {
                    force_no_openat2: no2,
                    ..Default::default()
                },
            );
            assert_eq!(t.len(), 2001);
            assert_eq!(t.error_count(), 0);
            assert_eq!(
                find(&t, &leaf).rec.sha().unwrap().as_slice(),
                Sha256::digest(b"hidden").as_slice()
            );
        }
        // rm -r of a tree deeper than PATH_MAX needs fds too
        let mut fd = openat(libc::AT_FDCWD, &base, libc::O_DIRECTORY).unwrap();
        let mut chain = Vec::new();
        for _ in 0..2000 {
            let next = openat(fd.0, c"d", libc::O_DIRECTORY).unwrap();
            chain.push(fd);
            fd = next;
        }
        unsafe { libc::unlinkat(fd.0, c"leaf".as_ptr(), 0) };
        while let Some(parent) = chain.pop() {
            assert_eq!(
                unsafe { libc::unlinkat(parent.0, c"d".as_ptr(), libc::AT_REMOVEDIR) },
                0
            );
        }
    }

    #[test]
    fn symlink_atimes_kept_by_the_view() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("sub")).unwrap();
        symlink("/etc/passwd", r.join("sub/lnk")).unwrap();
        let old = [
            libc::timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
        ];
        let lnk = cpath(&r.join("sub/lnk"));
        let age = || unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                lnk.as_ptr(),
                old.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(age(), 0);
        let w = walk(r, &WalkOptions::default(), &Progress::default()).unwrap();
        assert_eq!(w.atime, AtimeGuard::View);
        assert_eq!(
            find(&w.tree, b"/sub/lnk").target(),
            Some(&b"/etc/passwd"[..])
        );
        assert_eq!(atime_of(&r.join("sub/lnk")).0, 1_000_000);
        // without the view the kernel updates it: the exception is reported
        let opts = WalkOptions {
            force_no_view: true,
            ..Default::default()
        };
        let w = walk(r, &opts, &Progress::default()).unwrap();
        assert!(matches!(w.atime, AtimeGuard::NoAtimeFlag(_)));
        assert_ne!(atime_of(&r.join("sub/lnk")).0, 1_000_000);
    }

    #[test]
    fn noatime_refused_is_recorded_not_retried() {
        // Without the view, a file we may read but do not own cannot be
        // opened with O_NOATIME: it is reported, never read without it.
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::set_permissions(r, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(r.join("theirs"), b"t").unwrap();
        fs::set_permissions(r.join("theirs"), fs::Permissions::from_mode(0o644)).unwrap();
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let opts = WalkOptions {
            threads: 1,
            thread_start: Some(drop_privileges),
            force_no_view: true,
            ..Default::default()
        };
        // the root directory itself is not ours either: the walk says so
        match walk(r, &opts, &Progress::default()) {
            Err(WalkError::Io(e)) => assert_eq!(e.to_string(), crate::confine::NOATIME_REFUSED),
            other => panic!("{other:?}"),
        }
        let opts = WalkOptions {
            threads: 1,
            thread_start: Some(drop_privileges),
            ..Default::default()
        };
        let t = run(r, &opts);
        assert!(find(&t, b"/theirs").rec.sha().is_some());
    }

    #[test]
    fn vanished_entry() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let opts = WalkOptions::default();
        let root = openat(libc::AT_FDCWD, &cpath(r), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let progress = Progress::default();
        let ctx = Ctx::new(root.0, libc::O_NOATIME, 0, &opts, &progress, true);
        let listing = Listing {
            names: b"gone\0".to_vec(),
            spans: vec![(0, 4)],
            types: vec![libc::DT_UNKNOWN],
        };
        let dir = ctx.open_dir(None, b"").unwrap();
        let mut buf = AlignedBuf::new(4096);
        let mut subs = Vec::new();
        let (t, _) = ctx.process_entries(dir.0, b"", &listing, 0..1, &mut buf, &mut subs);
        let e = t.get(0).unwrap();
        assert_eq!(e.path, b"/gone");
        assert_eq!(e.rec.kind, EntryKind::Unknown);
        assert_eq!(e.error(), Some("vanished"));
        // a file replaced by something else between statx and open
        fs::write(r.join("f"), b"1").unwrap();
        let mut rec = rec_from_statx(&statx_at(dir.0, c"f", libc::AT_SYMLINK_NOFOLLOW).unwrap());
        fs::rename(r.join("f"), r.join("f.old")).unwrap(); // keeps the inode in use
        fs::write(r.join("f"), b"22").unwrap();
        let mut x = Extra::default();
        ctx.hash_file(dir.0, c"f", &mut rec, &mut x, &mut buf);
        assert_eq!(x.error.as_deref(), Some("changed during walk"));
        assert!(rec.sha().is_none());
        fs::remove_file(r.join("f")).unwrap();
        symlink("/etc/passwd", r.join("f")).unwrap();
        let mut x = Extra::default();
        ctx.hash_file(dir.0, c"f", &mut rec, &mut x, &mut buf);
        assert_eq!(x.error.as_deref(), Some("changed during walk"));
    }

    fn drop_privileges() {
        // Per-thread on Linux: clears CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH for this thread.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, 65534);
            libc::syscall(libc::SYS_setfsgid, 65534);
        }
    }

    #[test]
    fn unreadable_entries_recorded() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::set_permissions(r, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(r.join("secret"), b"s").unwrap();
        fs::set_permissions(r.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(r.join("locked")).unwrap();
        fs::write(r.join("locked/inner"), b"i").unwrap();
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::write(r.join("open"), b"o").unwrap();
        fs::set_permissions(r.join("open"), fs::Permissions::from_mode(0o644)).unwrap();
        let opts = WalkOptions {
            threads: 2,
            thread_start: Some(drop_privileges),
            ..Default::default()
        };
        let t = run(r, &opts);
        let s = find(&t, b"/secret");
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(s.error(), Some("permission denied"));
            assert!(s.rec.sha().is_none());
            assert_eq!(s.rec.kind, EntryKind::File);
            let l = find(&t, b"/locked");
            assert_eq!(l.error(), Some("cannot list directory: permission denied"));
            assert_eq!(t.error_count(), 2);
        }
        assert!(find(&t, b"/open").rec.sha().is_some());
        // as root (no hook) everything is readable
        let t = run(r, &WalkOptions::default());
        assert!(find(&t, b"/locked/inner").rec.sha().is_some());
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn exclude_one_fs_and_cap() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("proc/1")).unwrap();
        fs::write(r.join("proc/1/status"), b"x").unwrap();
        fs::write(r.join("large"), vec![1u8; 5000]).unwrap();
        let opts = WalkOptions {
            exclude: vec![b"/proc/".to_vec()],
            hash_max_size: Some(4096),
            ..Default::default()
        };
        let t = run(r, &opts);
        let p = find(&t, b"/proc");
        assert_eq!(p.rec.kind, EntryKind::Dir);
        assert!(p.error().is_none());
        assert!(t.iter().all(|e| !e.path.starts_with(b"/proc/")));
        let l = find(&t, b"/large");
        assert_eq!(l.error(), Some("over hash size cap (4096 bytes)"));
        assert!(l.rec.sha().is_none());
        // /dev/shm is tmpfs, a different filesystem from the temp dir's usually.
        assert_eq!(normalize_exclude(b"//a/./b/"), b"/a/b");
    }

    #[test]
    fn one_filesystem_stops_at_mounts() {
        // Walk "/" with one_filesystem and exclusions: /proc must not be descended.
        let opts = WalkOptions {
            one_filesystem: true,
            exclude: vec![
                b"/usr".to_vec(),
                b"/work".to_vec(),
                b"/root".to_vec(),
                b"/tmp".to_vec(),
                b"/var".to_vec(),
            ],
            hash_max_size: Some(0),
            ..Default::default()
        };
        let t = run(Path::new("/"), &opts);
        let p = find(&t, b"/proc");
        assert_eq!(p.error(), Some("other filesystem, not descended"));
        assert!(t.iter().all(|e| !e.path.starts_with(b"/proc/")));
    }

    #[test]
    fn root_errors() {
        assert!(
            matches!(walk(Path::new("/nonexistent/xyz"), &WalkOptions::default(), &Progress::default()), Err(WalkError::Io(e)) if e.kind() == io::ErrorKind::NotFound)
        );
        assert!(walk(
            Path::new("/etc/passwd"),
            &WalkOptions::default(),
            &Progress::default()
        )
        .is_err());
        let p = Progress::default();
        p.cancel.store(true, Ordering::Relaxed);
        assert!(matches!(
            walk(Path::new("/usr"), &WalkOptions::default(), &p),
            Err(WalkError::Cancelled)
        ));
    }

    #[test]
    fn xattrs_filtered() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("f"), b"x").unwrap();
        let f = cpath(&r.join("f"));
        let set = |name: &CStr, val: &[u8]| unsafe {
            libc::setxattr(f.as_ptr(), name.as_ptr(), val.as_ptr().cast(), val.len(), 0)
        };
        if set(c"user.overlay.opaque", b"y") != 0 {
            return; // filesystem without user xattrs
        }
        set(c"user.other", b"n");
        set(c"trusted.overlay.origin", b"o");
        let t = run(r, &WalkOptions::default());
        let names: Vec<&[u8]> = find(&t, b"/f")
            .xattrs()
            .iter()
            .map(|(k, _)| &k[..])
            .collect();
        assert!(names.contains(&&b"user.overlay.opaque"[..]));
        assert!(!names.contains(&&b"user.other"[..]));
    }
}
