//! Reassembly of an image layer from the engine's own store: the tar-split
//! metadata (`tar-split.json.gz`, JSON lines written by the vbatts/tar-split
//! library) plus the layer's unpacked directory.
//!
//! Each line is an entry: type 2 ("segment", `payload` = base64 of raw tar
//! bytes: headers, padding, end blocks) or type 1 ("file", `name` or
//! base64 `name_raw`, `size`, `payload` = base64 of the big-endian
//! CRC-64/GO-ISO of the content). Emitting every segment and, for each file
//! with size > 0, the content of `<layer_dir>/<name>` reproduces the exact
//! original layer tar. The stream goes through the same tar parser and
//! hashing as [`crate::layer::read_layer`].
//!
//! Files are opened confined to the layer directory (see
//! [`crate::confine::open_in_root`]), first as `O_PATH`, checked to be a
//! regular file, then reopened for reading through `/proc/self/fd`, so no
//! FIFO or device is ever opened. A file that is missing, not regular, of
//! another size, unreadable or whose CRC differs does not stop the read:
//! the missing bytes are zero-filled (the archive structure stays intact),
//! the stream digest then differs from the layer's diff_id, and the entry
//! gets an error starting `"stored layer: "`.
//!
//! Work is spread over threads: the assembler parses the lines into groups
//! of consecutive entries and writes them out in stream order; reader
//! threads open and read the groups' small files ahead of it (a large file
//! is streamed by the assembler in its turn); the tar parser hashes the
//! stream together with the members. Every cap and error is decided by
//! the assembler in line order, so the result does not depend on timing.

use crate::confine::{
    components, errno, fstat, open_in_root, openat, path_handle, proc_fds, reopen_regular, Fd,
    READ_FLAGS,
};
use crate::crc64::Crc64;
use crate::hash::read_fd;
use crate::layer::{run_pipeline, Chunk, ChunkSink, Compression, LayerIndex, LayerOptions};
use crate::tar::{LayerError, TarLimits};
use crate::walk::describe;
use base64::Engine as _;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::ops::Range;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;

const FILE_TYPE: i64 = 1;
const SEGMENT_TYPE: i64 = 2;
/// Longest accepted JSON line (a segment of a few MiB at most in practice:
/// tar-split writes trailing padding in 1 MiB pieces).
const MAX_LINE: usize = 32 << 20;
const JSON_BUF: usize = 256 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A JSON string, borrowed from the line unless it has escapes (serde
/// borrows a `Cow` only where it is a field's whole type, not inside an
/// `Option`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    name_raw: Option<Text<'a>>,
    #[serde(default)]
    size: i64,
    #[serde(default, borrow)]
    payload: Option<Text<'a>>,
    #[serde(default)]
    position: i64,
}

fn corrupt(what: impl std::fmt::Display) -> LayerError {
    LayerError::Corrupt(format!("tar-split: {what}"))
}

/// Open a tar-split file for reading: never following a symlink in the
/// last component, never opening a FIFO or device (ENXIO-free: O_NONBLOCK,
/// then checked to be a regular file; `EINVAL` otherwise).
pub fn open_tar_split(path: &Path) -> io::Result<File> {
    let open = |noatime: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                libc::O_NOFOLLOW
                    | libc::O_NONBLOCK
                    | libc::O_NOCTTY
                    | if noatime { libc::O_NOATIME } else { 0 },
            )
            .open(path)
    };
    let f = match open(true) {
        Err(e) if errno(&e) == libc::EPERM => open(false)?,
        r => r?,
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(f)
}

/// Open the layer directory that file names are resolved in.
pub fn open_layer_dir(path: &Path) -> io::Result<Fd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    openat(
        libc::AT_FDCWD,
        &c,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )
}
/// Files smaller than this are read ahead, in parallel, by the reader
/// threads; larger ones are streamed in order by the assembler.
const LARGE: u64 = 1 << 20;
/// A group of entries is handed to the readers once its data and file
/// names reach this many bytes, or its parts and small files this count.
/// One line adds at most [`MAX_LINE`] bytes, so a group holds less than
/// `GROUP_BYTES + MAX_LINE`.
const GROUP_BYTES: usize = 1 << 20;
const GROUP_PARTS: usize = 1024;
/// Groups ahead of the assembler at most, and their bytes (data and names)
/// at most: the window is only waited on once over, so it holds at most
/// `WINDOW_BYTES` plus one group. Memory stays bounded whatever the layer.
const WINDOW_GROUPS: usize = 4;
const WINDOW_BYTES: usize = 8 << 20;
/// Emptied groups kept for reuse at most, and their capacity at most.
const SPARE_GROUPS: usize = 4;
const SPARE_BYTES: usize = 4 * GROUP_BYTES;
const MAX_READERS: usize = 4;

/// A problem with one file of the layer directory, found at stream offset
/// `off` (where the file's content starts).
struct Problem {
    off: u64,
    msg: String,
    clear_sha: bool,
}

impl Problem {
    fn new(off: u64, msg: String, clear_sha: bool) -> Problem {
        Problem {
            off,
            msg: format!("stored layer: {msg}"),
            clear_sha,
        }
    }
}

/// Writes the reassembled stream into chunks for the parser, which hashes
/// it together with the members (see [`crate::sha256x2`]).
struct Out {
    sink: ChunkSink,
    cur: Chunk,
    /// The parser stopped (it failed): the current chunk is reused as scratch.
    gone: bool,
}

impl Out {
    fn flush(&mut self) {
        if self.cur.len == 0 || self.gone {
            self.cur.len = 0;
            return;
        }
        let next = self.sink.fresh();
        let full = std::mem::replace(&mut self.cur, next);
        self.gone = !self.sink.send(full);
    }

    /// Free space in the current chunk (never empty).
    fn space(&mut self) -> &mut [u8] {
        if self.cur.len == self.cur.buf.len() {
            self.flush();
        }
        let len = self.cur.len;
        &mut self.cur.buf.as_mut_slice()[len..]
    }

    fn commit(&mut self, n: usize) {
        self.cur.len += n;
    }

    fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let sp = self.space();
            let n = sp.len().min(data.len());
            sp[..n].copy_from_slice(&data[..n]);
            self.commit(n);
            data = &data[n..];
        }
    }
}

/// Read one line (without its newline) into `line`; false at end of input.
fn next_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> Result<bool, LayerError> {
    line.clear();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        if buf.is_empty() {
            return Ok(!line.is_empty());
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > MAX_LINE {
            return Err(LayerError::Cap(format!(
                "tar-split line longer than {MAX_LINE} bytes"
            )));
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take + done as usize);
        if done {
            return Ok(true);
        }
    }
}

/// Errors of the decompressor are corrupt data; others are I/O.
fn read_error(e: io::Error) -> LayerError {
    match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            corrupt(format!("gzip data: {e}"))
        }
        _ => LayerError::Io(e),
    }
}

#[cfg(test)]
fn procfs_disabled() -> bool {
    tests::NO_PROCFS.load(Ordering::Relaxed)
}

#[cfg(not(test))]
fn procfs_disabled() -> bool {
    false
}

/// The problem text for a failed confined open.
fn open_problem(e: &io::Error) -> String {
    match errno(e) {
        libc::ENOENT => "file missing".to_string(),
        libc::ELOOP => {
            "symlink in place of the file or a parent directory (not followed)".to_string()
        }
        libc::ENOTDIR => "a parent of the file is not a directory".to_string(),
        _ => format!("cannot open: {}", describe(e)),
    }
}

fn kind_name(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "unknown kind",
    }
}

/// The layer directory, shared by the threads that open its files.
struct Root {
    fd: RawFd,
    use_openat2: AtomicBool,
    /// O_PATH fd of /proc/self/fd (None without procfs).
    proc_fds: Option<RawFd>,
}

/// Opens files of the layer directory, for one thread.
struct Opener<'a> {
    root: &'a Root,
    /// Confined O_PATH fd of the last parent directory, with its path.
    parent: Option<(Vec<u8>, Fd)>,
}

impl Opener<'_> {
    /// Open `name` for reading if it is a regular file; else the problem.
    ///
    /// The parent directory is resolved confined to the layer directory
    /// (and kept for the next file in the same directory), the last
    /// component opened `O_PATH | O_NOFOLLOW` from it and checked to be a
    /// regular file, and only then that very inode reopened for reading
    /// through `/proc/self/fd`: no FIFO or device is ever opened.
    fn open_regular(&mut self, name: &[u8]) -> Result<(Fd, libc::stat), String> {
        let root = self.root;
        let comps = components(name);
        let Some((last, dirs)) = comps.split_last() else {
            return Err("not a regular file (directory)".into());
        };
        let dir_path = dirs.join(&b'/');
        if !matches!(&self.parent, Some((p, _)) if *p == dir_path) {
            self.parent = None;
            let fd = open_in_root(
                root.fd,
                &dir_path,
                libc::O_PATH | libc::O_DIRECTORY,
                &root.use_openat2,
            )
            .map_err(|e| open_problem(&e))?;
            self.parent = Some((dir_path, fd));
        }
        let parent = self.parent.as_ref().map_or(root.fd, |(_, fd)| fd.0);
        let cname = CString::new(*last).map_err(|_| "cannot open: NUL in name".to_string())?;
        let p = path_handle(parent, &cname).map_err(|e| open_problem(&e))?;
        let st = fstat(p.0).map_err(|e| format!("cannot open: {}", describe(&e)))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFLNK => return Err(open_problem(&io::Error::from_raw_os_error(libc::ELOOP))),
            _ => return Err(format!("not a regular file ({})", kind_name(st.st_mode))),
        }
        let fd = match root.proc_fds {
            Some(procfd) => reopen_regular(procfd, &p, libc::O_NOATIME)
                .map_err(|e| format!("cannot open: {}", describe(&e)))?,
            None => {
                // no procfs: open the name again (still confined, O_NONBLOCK)
                // and check it is the same regular file
                let fd = open_in_root(
                    root.fd,
                    name,
                    READ_FLAGS | libc::O_NOATIME,
                    &root.use_openat2,
                )
                .map_err(|e| open_problem(&e))?;
                match fstat(fd.0) {
                    Ok(s) if s.st_ino == st.st_ino && s.st_dev == st.st_dev => fd,
                    Ok(_) => return Err("changed while read".into()),
                    Err(e) => return Err(format!("cannot open: {}", describe(&e))),
                }
            }
        };
        Ok((fd, st))
    }
}

/// The `size` bytes of content a file entry announces, as read from the
/// layer directory, and what went wrong with them (message, whether the
/// entry's digest is void).
struct Source {
    /// None once nothing more can be read.
    fd: Option<Fd>,
    size: u64,
    st_size: u64,
    /// Bytes still to read.
    left: u64,
    crc: Crc64,
    problems: Vec<(String, bool)>,
}

impl Source {
    fn open(opener: &mut Opener<'_>, name: &[u8], size: u64) -> Source {
        let mut s = Source {
            fd: None,
            size,
            st_size: size,
            left: size,
            crc: Crc64::new(),
            problems: Vec::new(),
        };
        match opener.open_regular(name) {
            Err(msg) => s.problems.push((msg, true)),
            Ok((fd, st)) => {
                s.st_size = st.st_size as u64;
                if s.st_size != size {
                    let msg = format!("size {} bytes, expected {size}", st.st_size);
                    s.problems.push((msg, true));
                }
                if size >= LARGE {
                    // SAFETY: plain syscall on an fd we own; advice only.
                    unsafe { libc::posix_fadvise(fd.0, 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
                }
                s.fd = Some(fd);
            }
        }
        s
    }

    /// Read the next bytes of the content into `buf` (not empty); 0 once
    /// it is complete or cannot be read further (the rest is zero-filled).
    fn read(&mut self, buf: &mut [u8]) -> usize {
        debug_assert!(!buf.is_empty());
        let Some(fd) = &self.fd else { return 0 };
        let k = (buf.len() as u64).min(self.left) as usize;
        match read_fd(fd.0, &mut buf[..k]) {
            Ok(0) => {
                if self.st_size == self.size {
                    self.problems.push(("changed while read".into(), true));
                }
                self.fd = None;
                0
            }
            Ok(n) => {
                self.crc.update(&buf[..n]);
                self.left -= n as u64;
                if self.left == 0 {
                    self.fd = None;
                }
                n
            }
            Err(e) => {
                let msg = format!("read failed: {}", describe(&e));
                self.problems.push((msg, true));
                self.fd = None;
                0
            }
        }
    }

    /// The problems, adding a CRC mismatch when all was read cleanly.
    fn finish(mut self, expected: Option<[u8; 8]>, off: u64, to: &mut Vec<Problem>) {
        if self.left == 0
            && self.problems.is_empty()
            && expected.is_some_and(|c| c != self.crc.sum())
        {
            let msg = "content differs from the checksum recorded in tar-split (crc64)";
            self.problems.push((msg.into(), false));
        }
        to.extend(
            self.problems
                .into_iter()
                .map(|(msg, clear)| Problem::new(off, msg, clear)),
        );
    }
}

/// A file entry with content: its name (in [`Group::names`]), size, the
/// CRC tar-split recorded and the stream offset of its content.
struct FileRef {
    name: Range<usize>,
    size: u64,
    crc: Option<[u8; 8]>,
    off: u64,
}

enum Part {
    /// Bytes of [`Group::data`].
    Data(Range<usize>),
    /// A large file, streamed by the assembler.
    Large(FileRef),
}

/// A run of consecutive tar-split entries, as stream bytes: segments and
/// the room for each small file's content, which a reader thread fills
/// in (it stays zero where the file cannot be read).
#[derive(Default)]
struct Group {
    seq: u64,
    data: Vec<u8>,
    parts: Vec<Part>,
    /// Small files and where their content goes in `data`.
    jobs: Vec<(usize, FileRef)>,
    names: Vec<u8>,
    problems: Vec<Problem>,
    cancelled: bool,
    /// The reader panicked while filling it in.
    failed: bool,
}

impl Group {
    /// Extend the data parts up to the end of `data`.
    fn grow(&mut self, start: usize) {
        let end = self.data.len();
        match self.parts.last_mut() {
            Some(Part::Data(r)) => r.end = end,
            _ => self.parts.push(Part::Data(start..end)),
        }
    }

    /// The bytes it holds, as counted against the limits.
    fn bytes(&self) -> usize {
        self.data.len() + self.names.len()
    }

    fn full(&self) -> bool {
        self.bytes() >= GROUP_BYTES || self.parts.len() + self.jobs.len() >= GROUP_PARTS
    }

    /// Read the small files' contents (on a reader thread).
    fn fill(&mut self, opener: &mut Opener<'_>, cancel: &AtomicBool) {
        for (at, f) in &self.jobs {
            if cancel.load(Ordering::Relaxed) {
                self.cancelled = true;
                return;
            }
            #[cfg(test)]
            if &self.names[f.name.clone()] == tests::PANIC_NAME {
                panic!("test hook: reader panics");
            }
            let dst = &mut self.data[*at..*at + f.size as usize];
            let mut src = Source::open(opener, &self.names[f.name.clone()], f.size);
            let mut filled = 0;
            while filled < dst.len() {
                let n = src.read(&mut dst[filled..]);
                if n == 0 {
                    break;
                }
                filled += n;
            }
            src.finish(f.crc, f.off, &mut self.problems);
        }
    }

    /// Empty it for reuse, unless it holds too much memory (only groups
    /// written out come here, never a cancelled or failed one).
    fn recycle(mut self, spare: &mut Vec<Group>) {
        if spare.len() < SPARE_GROUPS && self.data.capacity() + self.names.capacity() <= SPARE_BYTES
        {
            self.data.clear();
            self.parts.clear();
            self.jobs.clear();
            self.names.clear();
            self.problems.clear();
            spare.push(self);
        }
    }
}

/// A reader thread: fill in groups until there are no more. A group whose
/// filling panicked comes back marked failed (the panic message is on
/// stderr), so the assembler never waits for it in vain.
fn reader(root: &Root, work: &Mutex<Receiver<Group>>, done: Sender<Group>, cancel: &AtomicBool) {
    let mut opener = Opener { root, parent: None };
    loop {
        // the lock is held only across recv, which does not panic
        let next = work.lock().expect("never poisoned").recv();
        let Ok(mut g) = next else { return };
        let filled = std::panic::catch_unwind(AssertUnwindSafe(|| g.fill(&mut opener, cancel)));
        g.failed = filled.is_err();
        if done.send(g).is_err() {
            return;
        }
    }
}

/// Parses the tar-split lines into groups, hands them to the reader
/// threads and writes them out in order as they come back.
struct Assembler<'a> {
    opener: Opener<'a>,
    out: Out,
    cancel: &'a AtomicBool,
    max_bytes: u64,
    /// Length of the stream so far, including the groups not yet written.
    total: u64,
    problems: Vec<Problem>,
    /// The group being parsed.
    group: Group,
    next_seq: u64,
    /// Groups handed out and not yet written, oldest first (None while a
    /// reader has it), and their [`Group::bytes`].
    window: VecDeque<Option<Group>>,
    window_bytes: usize,
    spare: Vec<Group>,
    work: SyncSender<Group>,
    done: Receiver<Group>,
}

impl Assembler<'_> {
    /// Account for `n` more bytes of stream; returns where they start.
    fn plan(&mut self, n: u64) -> Result<u64, LayerError> {
        let off = self.total;
        match off.checked_add(n) {
            Some(total) if total <= self.max_bytes => self.total = total,
            _ => {
                return Err(LayerError::Cap(format!(
                    "more than max_bytes {} bytes of reassembled data",
                    self.max_bytes
                )))
            }
        }
        Ok(off)
    }

    fn segment(&mut self, payload: &Text<'_>, index: u64) -> Result<(), LayerError> {
        let start = self.group.data.len();
        B64.decode_vec(payload.as_bytes(), &mut self.group.data)
            .map_err(|err| corrupt(format!("entry {index}: payload: {err}")))?;
        self.plan((self.group.data.len() - start) as u64)?;
        self.group.grow(start);
        Ok(())
    }

    fn file(&mut self, e: &Line<'_>, index: u64) -> Result<(), LayerError> {
        let g = &mut self.group;
        let name_start = g.names.len();
        match (&e.name_raw, &e.name) {
            (Some(raw), _) if !raw.0.is_empty() => B64
                .decode_vec(raw.as_bytes(), &mut g.names)
                .map_err(|err| corrupt(format!("entry {index}: name_raw: {err}")))?,
            (_, Some(n)) => g.names.extend_from_slice(n.as_bytes()),
            _ => {}
        }
        let name = name_start..g.names.len();
        let crc = match &e.payload {
            Some(p) => recorded_crc(p.as_bytes())
                .map_err(|err| corrupt(format!("entry {index}: payload: {err}")))?,
            None => None,
        };
        let size = e.size as u64;
        let off = self.plan(size)?;
        let f = FileRef {
            name,
            size,
            crc,
            off,
        };
        let g = &mut self.group;
        if size < LARGE {
            let at = g.data.len();
            g.data.resize(at + size as usize, 0);
            g.jobs.push((at, f));
            g.grow(at);
        } else {
            g.parts.push(Part::Large(f));
        }
        Ok(())
    }

    /// Hand the current group to the readers (or straight to the window
    /// when it has no small file), then write what is ready.
    fn submit(&mut self) -> Result<(), LayerError> {
        if self.group.parts.is_empty() {
            return Ok(());
        }
        let fresh = self.spare.pop().unwrap_or_default();
        let mut g = std::mem::replace(&mut self.group, fresh);
        g.seq = self.next_seq;
        self.next_seq += 1;
        self.window_bytes += g.bytes();
        if g.jobs.is_empty() {
            self.window.push_back(Some(g));
        } else {
            self.window.push_back(None);
            self.work.send(g).map_err(|_| readers_failed())?;
        }
        self.drain(false)
    }

    /// Write the groups at the front of the window that are ready; wait
    /// for them while the window is over its limits or, with `all`, until
    /// it is empty.
    fn drain(&mut self, all: bool) -> Result<(), LayerError> {
        loop {
            while let Ok(g) = self.done.try_recv() {
                self.store(g);
            }
            let over =
                all || self.window.len() >= WINDOW_GROUPS || self.window_bytes > WINDOW_BYTES;
            match self.window.front() {
                Some(Some(_)) => {
                    let g = self.window.pop_front().flatten().expect("ready");
                    self.window_bytes -= g.bytes();
                    self.emit(g)?;
                }
                Some(None) if over => {
                    let g = self.done.recv().map_err(|_| readers_failed())?;
                    self.store(g);
                }
                _ => return Ok(()),
            }
        }
    }

    fn store(&mut self, g: Group) {
        let front = self.next_seq - self.window.len() as u64;
        let i = (g.seq - front) as usize;
        self.window[i] = Some(g);
    }

    fn emit(&mut self, mut g: Group) -> Result<(), LayerError> {
        if g.failed {
            return Err(readers_failed());
        }
        if g.cancelled {
            return Err(LayerError::Cancelled);
        }
        for part in &g.parts {
            match part {
                Part::Data(r) => self.out.write(&g.data[r.clone()]),
                Part::Large(f) => self.stream(&g.names[f.name.clone()], f)?,
            }
        }
        self.problems.append(&mut g.problems);
        g.recycle(&mut self.spare);
        Ok(())
    }

    /// Emit a large file's content, zero-filling what cannot be read;
    /// checks for cancellation once per chunk at least.
    fn stream(&mut self, name: &[u8], f: &FileRef) -> Result<(), LayerError> {
        let mut src = Source::open(&mut self.opener, name, f.size);
        let mut left = f.size;
        while left > 0 {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(LayerError::Cancelled);
            }
            let sp = self.out.space();
            let k = (sp.len() as u64).min(left) as usize;
            let mut n = src.read(&mut sp[..k]);
            if n == 0 {
                sp[..k].fill(0);
                n = k;
            }
            self.out.commit(n);
            left -= n as u64;
        }
        src.finish(f.crc, f.off, &mut self.problems);
        Ok(())
    }

    fn run(&mut self, json: &mut impl BufRead, max_lines: u64) -> Result<(), LayerError> {
        let mut line = Vec::with_capacity(4096);
        let mut index: u64 = 0;
        while next_line(json, &mut line)? {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(LayerError::Cancelled);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if index >= max_lines {
                return Err(LayerError::Cap(format!(
                    "more than {max_lines} tar-split entries"
                )));
            }
            let e: Line<'_> = serde_json::from_slice(&line)
                .map_err(|err| corrupt(format!("entry {index}: {err}")))?;
            if e.position != index as i64 {
                return Err(corrupt(format!(
                    "entry {index} has position {}",
                    e.position
                )));
            }
            match e.kind {
                SEGMENT_TYPE => {
                    if let Some(p) = &e.payload {
                        self.segment(p, index)?;
                    }
                }
                FILE_TYPE => {
                    if e.size < 0 {
                        return Err(corrupt(format!("entry {index} has size {}", e.size)));
                    }
                    if e.size > 0 {
                        self.file(&e, index)?;
                    }
                }
                k => return Err(corrupt(format!("entry {index} has unknown type {k}"))),
            }
            if self.group.full() {
                self.submit()?;
            }
            index += 1;
        }
        self.submit()?;
        self.drain(true)?;
        self.out.flush();
        Ok(())
    }
}

/// The CRC-64 a file entry records (None unless it is 8 bytes long),
/// without allocating in the usual case.
fn recorded_crc(b64: &[u8]) -> Result<Option<[u8; 8]>, base64::DecodeError> {
    // up to 16 characters decode to at most 12 bytes
    if b64.len() > 16 {
        return Ok(<[u8; 8]>::try_from(B64.decode(b64)?.as_slice()).ok());
    }
    let mut buf = [0u8; 12];
    let n = B64.decode_slice(b64, &mut buf).map_err(|e| match e {
        base64::DecodeSliceError::DecodeError(e) => e,
        base64::DecodeSliceError::OutputSliceTooSmall => unreachable!("room for 12 bytes"),
    })?;
    Ok(<[u8; 8]>::try_from(&buf[..n]).ok())
}

fn readers_failed() -> LayerError {
    LayerError::Io(io::Error::other("tar-split: file reader thread failed"))
}

fn reader_count() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(MAX_READERS)
}

struct Produced {
    size: u64,
    problems: Vec<Problem>,
}

/// Reassemble and index a stored layer. `tar_split` is the (gzip'd or
/// plain) JSON-lines file, `layer_dir` an fd of the layer's directory.
pub fn read_tar_split(
    tar_split: File,
    layer_dir: &Fd,
    opts: &LayerOptions,
    cancel: &AtomicBool,
) -> Result<LayerIndex, LayerError> {
    let limits = TarLimits {
        max_entries: opts.max_entries,
        max_path_len: opts.max_path_len,
    };
    let max_lines = opts
        .max_entries
        .saturating_mul(3)
        .saturating_add(opts.max_bytes >> 20)
        .saturating_add(1024);
    let root = Root {
        fd: layer_dir.0,
        use_openat2: AtomicBool::new(true),
        proc_fds: if procfs_disabled() { None } else { proc_fds() },
    };
    let (work, work_rx) = sync_channel::<Group>(WINDOW_GROUPS);
    let work_rx = Mutex::new(work_rx);
    let produce = |sink: ChunkSink| -> Result<Produced, LayerError> {
        let mut raw = BufReader::with_capacity(JSON_BUF, tar_split);
        let gz = raw
            .fill_buf()
            .map_err(LayerError::Io)?
            .starts_with(&[0x1f, 0x8b]);
        let mut json: Box<dyn BufRead> = if gz {
            Box::new(BufReader::with_capacity(
                JSON_BUF,
                flate2::bufread::MultiGzDecoder::new(raw),
            ))
        } else {
            Box::new(raw)
        };
        let (done_tx, done) = channel();
        let cur = sink.fresh();
        std::thread::scope(|s| {
            // Owns the sender of work, the receiver of filled groups and the
            // sender of chunks: dropping it (on any return) stops the
            // readers, each once it has filled the group it holds or takes
            // next; the scope then joins them.
            let mut a = Assembler {
                opener: Opener {
                    root: &root,
                    parent: None,
                },
                out: Out {
                    sink,
                    cur,
                    gone: false,
                },
                cancel,
                max_bytes: opts.max_bytes,
                total: 0,
                problems: Vec::new(),
                group: Group::default(),
                next_seq: 0,
                window: VecDeque::new(),
                window_bytes: 0,
                spare: Vec::new(),
                work,
                done,
            };
            for _ in 0..reader_count() {
                let (root, work_rx, done_tx) = (&root, &work_rx, done_tx.clone());
                std::thread::Builder::new()
                    .name("drift-layer-file".into())
                    .spawn_scoped(s, move || reader(root, work_rx, done_tx, cancel))
                    .map_err(LayerError::Io)?;
            }
            drop(done_tx);
            a.run(&mut json, max_lines)?;
            let (size, mut problems) = (a.total, std::mem::take(&mut a.problems));
            drop(a);
            // same order as the stream (problems of one file keep theirs)
            problems.sort_by_key(|p| p.off);
            Ok(Produced { size, problems })
        })
    };
    let mut offsets = Vec::new();
    let (p, mut tree, sha) = run_pipeline(produce, &limits, cancel, &|| true, Some(&mut offsets))?;
    let sha = sha.expect("the parser hashes the stream");
    for pr in &p.problems {
        // the entry whose data starts there (or the last one before it)
        let i = offsets.partition_point(|&o| o <= pr.off);
        if i > 0 {
            tree.add_error(i - 1, &pr.msg, pr.clear_sha);
        }
    }
    Ok(LayerIndex {
        entries: tree,
        compression: Compression::None,
        compressed_sha256: sha,
        compressed_size: p.size,
        uncompressed_sha256: sha,
        uncompressed_size: p.size,
    })
}

/// Convenience for tests and tools: open both paths and read.
pub fn read_tar_split_paths(
    tar_split: &Path,
    layer_dir: &Path,
    opts: &LayerOptions,
    cancel: &AtomicBool,
) -> Result<LayerIndex, LayerError> {
    let f = open_tar_split(tar_split)?;
    let d = open_layer_dir(layer_dir)?;
    read_tar_split(f, &d, opts, cancel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Test hook: pretend /proc is not mounted (the other path is correct
    /// too, so tests running meanwhile are not disturbed).
    pub(super) static NO_PROCFS: AtomicBool = AtomicBool::new(false);
    /// Test hook: a reader thread panics on a small file of this name.
    pub(super) const PANIC_NAME: &[u8] = b"PANIC";
    use crate::layer::read_layer;
    use std::fs;
    use std::io::{Cursor, Write};
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{:0w$o}\0", v, w = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }

    fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; 512] {
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn pad(n: usize) -> Vec<u8> {
        vec![0u8; (512 - n % 512) % 512]
    }

    /// A layer tar, its tar-split JSON lines and the files of its directory.
    #[derive(Default)]
    struct Layer {
        tar: Vec<u8>,
        lines: Vec<String>,
        seg: Vec<u8>,
        files: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl Layer {
        fn flush_seg(&mut self) {
            if !self.seg.is_empty() {
                let seg = std::mem::take(&mut self.seg);
                let n = self.lines.len();
                self.lines.push(format!(
                    r#"{{"type":2,"payload":"{}","position":{n}}}"#,
                    B64.encode(&seg)
                ));
            }
        }
        fn raw(&mut self, b: &[u8]) {
            self.tar.extend_from_slice(b);
            self.seg.extend_from_slice(b);
        }
        fn file_line(&mut self, name: &[u8], content: &[u8]) {
            self.flush_seg();
            let n = self.lines.len();
            let name_field = match std::str::from_utf8(name) {
                Ok(s) => format!(r#""name":{}"#, serde_json::to_string(s).unwrap()),
                Err(_) => format!(r#""name_raw":"{}""#, B64.encode(name)),
            };
            let (size, payload) = if content.is_empty() {
                (String::new(), "null".to_string())
            } else {
                let mut c = Crc64::new();
                c.update(content);
                (
                    format!(r#","size":{}"#, content.len()),
                    format!(r#""{}""#, B64.encode(c.sum())),
                )
            };
            self.lines.push(format!(
                r#"{{"type":1,{name_field}{size},"payload":{payload},"position":{n}}}"#
            ));
        }
        fn file(&mut self, name: &[u8], content: &[u8]) {
            if name.len() > 100 {
                let rec = format!(" path={}\n", String::from_utf8_lossy(name));
                let body = format!(
                    "{} {}",
                    rec.len() + 1 + (rec.len() + 4).to_string().len() - 1,
                    &rec[1..]
                );
                self.raw(&header(b"././@PaxHeader", b'x', body.len() as u64, b""));
                self.raw(body.as_bytes());
                self.raw(&pad(body.len()));
            }
            self.raw(&header(name, b'0', content.len() as u64, b""));
            self.file_line(name, content);
            self.tar.extend_from_slice(content);
            self.raw(&pad(content.len()));
            self.files.push((name.to_vec(), content.to_vec()));
        }
        fn other(&mut self, name: &[u8], typeflag: u8, link: &[u8]) {
            self.raw(&header(name, typeflag, 0, link));
            self.file_line(name, b"");
        }
        fn finish(mut self, trailing: usize) -> Self {
            self.raw(&vec![0u8; 1024 + trailing]);
            self.flush_seg();
            self
        }
        fn write(&self, dir: &Path, gz: bool) -> (PathBuf, PathBuf) {
            let root = dir.join("diff");
            fs::create_dir_all(&root).unwrap();
            for (name, content) in &self.files {
                // normalised, so a "../x" or "/x" name lands inside `root`
                let mut p = root.clone();
                for c in crate::confine::components(name) {
                    p.push(std::ffi::OsStr::from_bytes(c));
                }
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, content).unwrap();
            }
            let mut text = self.lines.join("\n");
            text.push('\n');
            let ts = dir.join("tar-split.json.gz");
            if gz {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(text.as_bytes()).unwrap();
                fs::write(&ts, enc.finish().unwrap()).unwrap();
            } else {
                fs::write(&ts, text).unwrap();
            }
            (ts, root)
        }
    }

    fn sample() -> Layer {
        let mut l = Layer::default();
        l.other(b"./", b'5', b"");
        l.other(b"etc/", b'5', b"");
        l.file(b"etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
        l.file(b"etc/empty", b"");
        l.other(b"bin/", b'5', b"");
        let big: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
        l.file(b"bin/busybox", &big);
        l.other(b"bin/sh", b'2', b"busybox");
        l.other(b"bin/hard", b'1', b"bin/busybox");
        l.file(b"odd\xffname", b"not utf-8 \"name\"");
        let long = format!("deep/{}/file", "d".repeat(150));
        l.file(long.as_bytes(), b"long name");
        l.file(b"etc/.wh.gone", b"");
        l.finish(10 * 512)
    }

    fn read(ts: &Path, dir: &Path) -> Result<LayerIndex, LayerError> {
        read_tar_split_paths(ts, dir, &LayerOptions::default(), &AtomicBool::new(false))
    }

    fn reference(tar: &[u8]) -> LayerIndex {
        read_layer(
            Cursor::new(tar.to_vec()),
            &LayerOptions::default(),
            &AtomicBool::new(false),
        )
        .unwrap()
    }

    fn sha(d: &[u8]) -> [u8; 32] {
        Sha256::digest(d).into()
    }

    fn index_of(li: &LayerIndex, path: &[u8]) -> usize {
        li.entries.iter().position(|e| e.path == path).unwrap()
    }

    #[test]
    fn reassembles_the_exact_layer() {
        let l = sample();
        for gz in [true, false] {
            let d = tempfile::tempdir().unwrap();
            let (ts, root) = l.write(d.path(), gz);
            let li = read(&ts, &root).unwrap();
            let want = reference(&l.tar);
            assert_eq!(li.uncompressed_sha256, sha(&l.tar));
            assert_eq!(li.uncompressed_size, l.tar.len() as u64);
            assert_eq!(li.compressed_sha256, li.uncompressed_sha256);
            assert_eq!(li.compression, Compression::None);
            assert_eq!(li.entries, want.entries);
            assert_eq!(li.entries.error_count(), 0);
            assert_eq!(li.entries.len(), 10);
        }
    }

    fn tampered(change: impl Fn(&Path)) -> (Layer, LayerIndex) {
        let l = sample();
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), true);
        change(&root);
        let li = read(&ts, &root).unwrap();
        assert_ne!(li.uncompressed_sha256, sha(&l.tar));
        assert_eq!(li.uncompressed_size, l.tar.len() as u64);
        assert_eq!(li.entries.len(), 10);
        (l, li)
    }

    #[test]
    fn same_size_change_is_pinned_to_its_entry() {
        let (l, li) = tampered(|root| {
            fs::write(root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/zz\n").unwrap()
        });
        let want = reference(&l.tar);
        let i = index_of(&li, b"/etc/passwd");
        let e = li.entries.get(i).unwrap();
        assert_eq!(
            e.error(),
            Some("stored layer: content differs from the checksum recorded in tar-split (crc64)")
        );
        assert_eq!(e.rec.sha(), Some(&sha(b"root:x:0:0:root:/root:/bin/zz\n")));
        assert_ne!(e.rec.sha(), want.entries.get(i).unwrap().rec.sha());
        assert_eq!(li.entries.error_count(), 1);
        // every other entry is intact
        for (a, b) in li.entries.iter().zip(want.entries.iter()) {
            if a.path != b"/etc/passwd" {
                assert_eq!(a.rec.sha(), b.rec.sha());
            }
        }
    }

    #[test]
    fn missing_short_long_and_special_files() {
        type Change = Box<dyn Fn(&Path)>;
        let cases: Vec<(&[u8], Change, &str)> =
            vec![
            (
                b"/bin/busybox",
                Box::new(|r: &Path| fs::remove_file(r.join("bin/busybox")).unwrap()),
                "stored layer: file missing",
            ),
            (
                b"/bin/busybox",
                Box::new(|r: &Path| {
                    let f = fs::OpenOptions::new().write(true).open(r.join("bin/busybox")).unwrap();
                    f.set_len(1000).unwrap();
                }),
                "stored layer: size 1000 bytes, expected 3000001",
            ),
            (
                b"/etc/passwd",
                Box::new(|r: &Path| {
                    fs::write(r.join("etc/passwd"), vec![b'x'; 5000]).unwrap();
                }),
                "stored layer: size 5000 bytes, expected 30",
            ),
            (
                b"/etc/passwd",
                Box::new(|r: &Path| {
                    fs::remove_file(r.join("etc/passwd")).unwrap();
                    symlink("/etc/passwd", r.join("etc/passwd")).unwrap();
                }),
                "stored layer: symlink in place of the file or a parent directory (not followed)",
            ),
            (
                b"/etc/passwd",
                Box::new(|r: &Path| {
                    fs::rename(r.join("etc"), r.join("etc2")).unwrap();
                    symlink("/etc", r.join("etc")).unwrap();
                }),
                "stored layer: symlink in place of the file or a parent directory (not followed)",
            ),
            (
                b"/etc/passwd",
                Box::new(|r: &Path| {
                    fs::remove_file(r.join("etc/passwd")).unwrap();
                    let p = CString::new(r.join("etc/passwd").as_os_str().as_bytes()).unwrap();
                    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
                }),
                "stored layer: not a regular file (fifo)",
            ),
        ];
        for ((path, change, msg), no_proc) in cases.iter().flat_map(|c| [(c, false), (c, true)]) {
            let path = *path;
            let msg = *msg;
            NO_PROCFS.store(no_proc, Ordering::Relaxed);
            let (l, li) = tampered(change);
            let want = reference(&l.tar);
            let i = index_of(&li, path);
            let e = li.entries.get(i).unwrap();
            assert_eq!(e.error(), Some(msg));
            assert!(e.rec.sha().is_none(), "{msg}");
            assert_eq!(li.entries.error_count(), 1, "{msg}");
            for (a, b) in li.entries.iter().zip(want.entries.iter()) {
                assert_eq!(a.path, b.path);
                if a.path != path {
                    assert_eq!(a.rec.sha(), b.rec.sha(), "{msg}");
                }
            }
        }
        NO_PROCFS.store(false, Ordering::Relaxed);
    }

    #[test]
    fn names_never_leave_the_layer_dir() {
        let mut l = Layer::default();
        l.file(b"../../../../../../etc/hostname", b"x");
        l.file(b"/etc/hostname", b"y");
        let l = l.finish(0);
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(&d.path().join("a/b"), true);
        // both names resolve to <root>/etc/hostname, which is then removed:
        // the host's /etc/hostname must not be read instead.
        fs::remove_file(root.join("etc/hostname")).unwrap();
        let li = read(&ts, &root).unwrap();
        for e in li.entries.iter() {
            assert!(e.error().unwrap().ends_with("stored layer: file missing"));
            assert!(e.rec.sha().is_none());
        }
    }

    #[test]
    fn corrupt_tar_split() {
        let l = sample();
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), false);
        let text = fs::read_to_string(&ts).unwrap();
        let bad = |t: &str| {
            fs::write(&ts, t).unwrap();
            match read(&ts, &root) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("accepted"),
            }
        };
        assert!(bad("{not json\n").starts_with("corrupt layer: tar-split: entry 0"));
        let e = bad(&text.replacen(r#""position":1}"#, r#""position":7}"#, 1));
        assert!(e.contains("entry 1 has position 7"), "{e}");
        assert!(bad(&text.replacen(r#""type":2"#, r#""type":9"#, 1)).contains("unknown type 9"));
        let e = bad(&text.replacen(r#""payload":""#, r#""payload":"!"#, 1));
        assert!(e.contains("payload"), "{e}");
        // a truncated stream: the tar parser reports it
        let lines: Vec<&str> = text.lines().collect();
        let e = bad(&lines[..4].join("\n"));
        assert!(e.starts_with("corrupt layer: truncated"), "{e}");
        // gzip garbage
        fs::write(&ts, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        assert!(matches!(
            read(&ts, &root),
            Err(LayerError::Corrupt(_) | LayerError::Io(_))
        ));
        // a tar-split that is a FIFO or a symlink is refused, never opened
        fs::remove_file(&ts).unwrap();
        let p = CString::new(ts.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
        assert_eq!(errno(&open_tar_split(&ts).unwrap_err()), libc::EINVAL);
        fs::remove_file(&ts).unwrap();
        symlink("/etc/passwd", &ts).unwrap();
        assert_eq!(errno(&open_tar_split(&ts).unwrap_err()), libc::ELOOP);
    }

    #[test]
    fn caps() {
        let l = sample();
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), true);
        let opts = LayerOptions {
            max_bytes: 100_000,
            ..Default::default()
        };
        let r = read_tar_split_paths(&ts, &root, &opts, &AtomicBool::new(false));
        assert!(matches!(r, Err(LayerError::Cap(_))));
        let opts = LayerOptions {
            max_entries: 2,
            ..Default::default()
        };
        let r = read_tar_split_paths(&ts, &root, &opts, &AtomicBool::new(false));
        assert!(matches!(r, Err(LayerError::Cap(_))));
        let r = read_tar_split_paths(&ts, &root, &LayerOptions::default(), &AtomicBool::new(true));
        assert!(matches!(r, Err(LayerError::Cancelled)));
    }

    /// Content of file `i` of [`many`], `size` bytes long.
    fn data(i: usize, size: usize) -> Vec<u8> {
        (0..size).map(|k| (k * 31 + i * 7) as u8).collect()
    }

    /// How [`many`] sizes file `i`: small ones of 0 to 9 KB, and large ones
    /// around the threshold for reading ahead.
    fn size_of(i: usize) -> usize {
        match i {
            100 => LARGE as usize - 1,
            200 => LARGE as usize,
            300 => LARGE as usize + 1,
            400 => 5 << 19,
            _ if i.is_multiple_of(500) => 0,
            _ => i * 7919 % 9000,
        }
    }

    /// A layer of many small files switching between a few directories,
    /// with large ones among them: more groups and more data than the
    /// read-ahead window holds. `content` gives each file's content from
    /// its original one.
    fn many(content: &dyn Fn(usize, Vec<u8>) -> Vec<u8>) -> Layer {
        let mut l = Layer::default();
        l.other(b"./", b'5', b"");
        for d in 0..8 {
            l.other(format!("d{d}/").as_bytes(), b'5', b"");
        }
        for i in 0..6000 {
            let name = format!("d{}/f{i}", (i / 7) % 8);
            l.file(name.as_bytes(), &content(i, data(i, size_of(i))));
        }
        l.finish(512)
    }

    fn name_of(i: usize) -> String {
        format!("d{}/f{i}", (i / 7) % 8)
    }

    #[test]
    fn many_files_with_problems_small_and_large() {
        let l = many(&|_, c| c);
        assert!(l.tar.len() > WINDOW_BYTES);
        let modified = |c: &[u8]| {
            let mut c = c.to_vec();
            c[0] ^= 1;
            c
        };
        // file index, change on disk, expected error, content reassembled
        type Change = Box<dyn Fn(&Path, &[u8])>;
        type Effect = Box<dyn Fn(&[u8]) -> Vec<u8>>;
        let zeros: fn(&[u8]) -> Vec<u8> = |c| vec![0; c.len()];
        let cases: Vec<(usize, Change, String, Effect)> = vec![
            (
                10,
                Box::new(|p, _| fs::remove_file(p).unwrap()),
                "file missing".into(),
                Box::new(zeros),
            ),
            (
                11,
                Box::new(move |p, c| fs::write(p, modified(c)).unwrap()),
                "content differs from the checksum recorded in tar-split (crc64)".into(),
                Box::new(move |c| modified(c)),
            ),
            (
                12,
                Box::new(|p, c| fs::write(p, &c[..c.len() / 2]).unwrap()),
                format!("size {} bytes, expected {}", size_of(12) / 2, size_of(12)),
                Box::new(|c| [&c[..c.len() / 2], &vec![0; c.len() - c.len() / 2]].concat()),
            ),
            (
                13,
                Box::new(|p, _| {
                    fs::remove_file(p).unwrap();
                    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
                    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
                }),
                "not a regular file (fifo)".into(),
                Box::new(zeros),
            ),
            (
                14,
                Box::new(|p, c| fs::write(p, [c, b"more"].concat()).unwrap()),
                format!("size {} bytes, expected {}", size_of(14) + 4, size_of(14)),
                Box::new(|c| c.to_vec()),
            ),
            (
                15,
                Box::new(|p, _| {
                    fs::remove_file(p).unwrap();
                    symlink("/etc/passwd", p).unwrap();
                }),
                "symlink in place of the file or a parent directory (not followed)".into(),
                Box::new(zeros),
            ),
            (
                100,
                Box::new(move |p, c| fs::write(p, modified(c)).unwrap()),
                "content differs from the checksum recorded in tar-split (crc64)".into(),
                Box::new(move |c| modified(c)),
            ),
            (
                200,
                Box::new(|p, c| fs::write(p, &c[..1000]).unwrap()),
                format!("size 1000 bytes, expected {LARGE}"),
                Box::new(|c| [&c[..1000], &vec![0; c.len() - 1000]].concat()),
            ),
            (
                300,
                Box::new(move |p, c| fs::write(p, modified(c)).unwrap()),
                "content differs from the checksum recorded in tar-split (crc64)".into(),
                Box::new(move |c| modified(c)),
            ),
            (
                400,
                Box::new(|p, _| fs::remove_file(p).unwrap()),
                "file missing".into(),
                Box::new(zeros),
            ),
            (
                5999,
                Box::new(|p, _| fs::remove_file(p).unwrap()),
                "file missing".into(),
                Box::new(zeros),
            ),
        ];
        let want = many(&|i, c| match cases.iter().find(|k| k.0 == i) {
            Some((_, _, _, effect)) => effect(&c),
            None => c,
        });
        let reference = reference(&want.tar);
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), true);
        for (i, change, _, _) in &cases {
            change(&root.join(name_of(*i)), &data(*i, size_of(*i)));
        }
        for no_proc in [false, true] {
            NO_PROCFS.store(no_proc, Ordering::Relaxed);
            let li = read(&ts, &root).unwrap();
            assert_eq!(li.uncompressed_sha256, sha(&want.tar));
            assert_eq!(li.uncompressed_size, want.tar.len() as u64);
            assert_eq!(li.entries.len(), reference.entries.len());
            assert_eq!(li.entries.error_count(), cases.len());
            for (a, b) in li.entries.iter().zip(reference.entries.iter()) {
                assert_eq!(a.path, b.path);
                let case = cases
                    .iter()
                    .find(|k| a.path == format!("/{}", name_of(k.0)).as_bytes());
                match case {
                    None => {
                        assert_eq!(a.error(), None);
                        assert_eq!(a.rec.sha(), b.rec.sha());
                    }
                    Some((i, _, msg, _)) => {
                        assert_eq!(a.error(), Some(format!("stored layer: {msg}").as_str()));
                        if msg.starts_with("content differs") {
                            assert_eq!(a.rec.sha(), b.rec.sha(), "{i}");
                        } else {
                            assert!(a.rec.sha().is_none(), "{i}");
                        }
                    }
                }
            }
        }
        NO_PROCFS.store(false, Ordering::Relaxed);
    }

    #[test]
    fn errors_come_in_stream_order_across_groups() {
        let l = many(&|_, c| c);
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), false);
        let lines: Vec<String> = fs::read_to_string(&ts)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let with_bad_line = |at: usize| {
            let mut v = lines.clone();
            v[at] = "{broken".into();
            fs::write(&ts, v.join("\n")).unwrap();
        };
        let half = LayerOptions {
            max_bytes: l.tar.len() as u64 / 2,
            ..Default::default()
        };
        let read_half = || read_tar_split_paths(&ts, &root, &half, &AtomicBool::new(false));
        // the cap is reached before a late corrupt line, after an early one
        with_bad_line(lines.len() - 2);
        assert!(matches!(read_half(), Err(LayerError::Cap(_))));
        with_bad_line(100);
        let e = read_half().unwrap_err().to_string();
        assert!(
            e.starts_with("corrupt layer: tar-split: entry 100: "),
            "{e}"
        );
        // and without a cap, the late corrupt line is reported
        with_bad_line(lines.len() - 2);
        let e = read(&ts, &root).unwrap_err().to_string();
        let at = lines.len() - 2;
        assert!(
            e.starts_with(&format!("corrupt layer: tar-split: entry {at}: ")),
            "{e}"
        );
    }

    #[test]
    fn recorded_crc_decodes_like_a_vec() {
        for p in [
            "",
            "AAAAAAAAAAA=",
            "AAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAA",
            "AAAA",
            "!!",
            "AAAAAAAAAAA",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["A".repeat(40), format!("{}!", "A".repeat(40))])
        {
            let want = B64
                .decode(p.as_bytes())
                .map(|v| <[u8; 8]>::try_from(v.as_slice()).ok());
            assert_eq!(recorded_crc(p.as_bytes()), want, "{p}");
        }
    }

    #[test]
    fn escaped_strings_are_read() {
        let line = br#"{"type":1,"name":"a\/b\u00e9","payload":"A\u0041AA","position":0}"#;
        let e: Line<'_> = serde_json::from_slice(line).unwrap();
        assert_eq!(e.name.unwrap().as_bytes(), "a/b\u{e9}".as_bytes());
        assert_eq!(e.payload.unwrap().as_bytes(), b"AAAA");
        let Err(err) = serde_json::from_slice::<Line<'_>>(br#"{"type":1,"payload":5}"#) else {
            panic!("accepted");
        };
        assert_eq!(
            err.to_string(),
            "invalid type: integer `5`, expected a string at line 1 column 21"
        );
    }

    /// Run `f` on a thread of its own; None if it takes over `secs`.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs)).ok()
    }

    #[test]
    fn a_panicking_reader_fails_the_read() {
        let mut l = Layer::default();
        l.other(b"./", b'5', b"");
        l.file(PANIC_NAME, b"boom");
        for i in 0..3000 {
            l.file(format!("f{i}").as_bytes(), &[b'x'; 2000]);
        }
        let l = l.finish(0);
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), true);
        let r = within(60, move || {
            read(&ts, &root).map(|_| ()).map_err(|e| e.to_string())
        });
        let e = r.expect("hung after a reader panicked").unwrap_err();
        assert!(e.contains("file reader thread failed"), "{e}");
    }

    /// Peak resident memory of this process, in KiB.
    fn max_rss_kib() -> i64 {
        // SAFETY: getrusage fills in the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
        u.ru_maxrss
    }

    const CHILD_ENV: &str = "DRIFT_TARSPLIT_MEMORY_CHILD";

    /// Peak memory is measured in a process of its own, as other tests
    /// running meanwhile raise this one's.
    #[test]
    fn long_names_keep_memory_bounded() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tarsplit::tests::long_names_memory_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// Many entries with 1 MiB names: the names count against the group
    /// and window limits, so few are held at a time.
    #[test]
    #[ignore = "run by long_names_keep_memory_bounded in a process of its own"]
    fn long_names_memory_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let entries = 400;
        let name = "n".repeat(1 << 20);
        let d = tempfile::tempdir().unwrap();
        let ts = d.path().join("tar-split.json.gz");
        let root = d.path().join("diff");
        fs::create_dir_all(&root).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            fs::File::create(&ts).unwrap(),
            flate2::Compression::fast(),
        );
        for i in 0..entries {
            let line = format!(r#"{{"type":1,"name":"{name}","size":1,"position":{i}}}"#);
            writeln!(gz, "{line}").unwrap();
        }
        gz.finish().unwrap();
        drop(name);
        let before = max_rss_kib();
        // the stream is no tar (the parser stops at once), but every line
        // is still read and every file looked for
        let e = read(&ts, &root).unwrap_err().to_string();
        assert!(e.starts_with("corrupt layer: truncated"), "{e}");
        let grown_mib = (max_rss_kib() - before) >> 10;
        eprintln!("peak grew by {grown_mib} MiB");
        assert!(
            grown_mib < 64,
            "peak grew by {grown_mib} MiB for {entries} MiB of names"
        );
    }

    /// A huge missing file is zero-filled chunk by chunk, looking at the
    /// cancel flag for each, while the parser has stopped (the chunk is
    /// then reused as scratch).
    #[test]
    fn cancel_stops_a_zero_fill() {
        let mut l = Layer::default();
        let mut h = header(b"big", b'0', 0, b"");
        h[148] = b'9'; // a bad checksum: the parser stops at once
        l.raw(&h);
        l.flush_seg();
        l.lines
            .push(r#"{"type":1,"name":"big","size":17179869184,"position":1}"#.into());
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), false);
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            c.store(true, Ordering::Relaxed);
        });
        let t = std::time::Instant::now();
        let r = read_tar_split_paths(&ts, &root, &LayerOptions::default(), &cancel);
        assert!(matches!(r, Err(LayerError::Cancelled)));
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    }

    /// Sizes near i64::MAX with max_bytes above 2^63: the running total
    /// must not wrap past the cap (it would then zero-fill for ever).
    #[test]
    fn huge_sizes_hit_the_cap() {
        let mut l = Layer::default();
        l.raw(&header(b"a", b'0', 0, b""));
        l.flush_seg();
        for (i, name) in ["a", "b"].iter().enumerate() {
            let at = i + 1;
            l.lines.push(format!(
                r#"{{"type":1,"name":"{name}","size":{},"position":{at}}}"#,
                i64::MAX
            ));
        }
        let d = tempfile::tempdir().unwrap();
        let (ts, root) = l.write(d.path(), false);
        let opts = LayerOptions {
            max_bytes: u64::MAX,
            ..Default::default()
        };
        let r = within(30, move || {
            read_tar_split_paths(&ts, &root, &opts, &AtomicBool::new(false))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let e = r.expect("hung").unwrap_err();
        assert!(e.contains("more than max_bytes"), "{e}");
    }
}
