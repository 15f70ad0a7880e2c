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

use crate::confine::{components, errno, fstat, open_in_root, openat, Fd};
use crate::crc64::Crc64;
use crate::hash::read_fd;
use crate::layer::{run_pipeline, Chunk, ChunkSink, Compression, LayerIndex, LayerOptions};
use crate::tar::{LayerError, TarLimits};
use crate::walk::describe;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const FILE_TYPE: i64 = 1;
const SEGMENT_TYPE: i64 = 2;
/// Longest accepted JSON line (a segment of a few MiB at most in practice:
/// tar-split writes trailing padding in 1 MiB pieces).
const MAX_LINE: usize = 32 << 20;
const JSON_BUF: usize = 256 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name_raw: Option<Cow<'a, str>>,
    #[serde(default)]
    size: i64,
    #[serde(default, borrow)]
    payload: Option<Cow<'a, str>>,
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

/// A problem with one file of the layer directory, found at stream offset
/// `off` (where the file's content starts).
struct Problem {
    off: u64,
    msg: String,
    clear_sha: bool,
}

/// Writes the reassembled stream into chunks, hashing it.
struct Out {
    sink: ChunkSink,
    cur: Chunk,
    hasher: Sha256,
    total: u64,
    max_bytes: u64,
    /// The parser stopped (it failed); nothing more is sent.
    gone: bool,
}

impl Out {
    fn flush(&mut self) {
        if self.cur.len == 0 || self.gone {
            return;
        }
        self.hasher.update(&self.cur.buf.as_slice()[..self.cur.len]);
        let next = self.sink.fresh();
        let full = std::mem::replace(&mut self.cur, next);
        if !self.sink.send(full) {
            self.gone = true;
        }
    }

    /// Free space in the current chunk (never empty).
    fn space(&mut self) -> &mut [u8] {
        if self.cur.len == self.cur.buf.len() {
            self.flush();
            if self.gone {
                self.cur.len = 0; // keep consuming into a scratch chunk
            }
        }
        let len = self.cur.len;
        &mut self.cur.buf.as_mut_slice()[len..]
    }

    fn commit(&mut self, n: usize) -> Result<(), LayerError> {
        self.cur.len += n;
        self.total += n as u64;
        if self.total > self.max_bytes {
            return Err(LayerError::Cap(format!(
                "more than max_bytes {} bytes of reassembled data",
                self.max_bytes
            )));
        }
        Ok(())
    }

    fn write(&mut self, mut data: &[u8]) -> Result<(), LayerError> {
        while !data.is_empty() {
            let sp = self.space();
            let n = sp.len().min(data.len());
            sp[..n].copy_from_slice(&data[..n]);
            self.commit(n)?;
            data = &data[n..];
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), LayerError> {
        while n > 0 {
            let sp = self.space();
            let k = (sp.len() as u64).min(n) as usize;
            sp[..k].fill(0);
            self.commit(k)?;
            n -= k as u64;
        }
        Ok(())
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

struct Reassembler<'a> {
    rootfd: RawFd,
    use_openat2: AtomicBool,
    /// Confined O_PATH fd of the last parent directory, with its path.
    parent: Option<(Vec<u8>, Fd)>,
    /// O_PATH fd of /proc/self/fd (None without procfs).
    proc_fds: Option<Fd>,
    out: Out,
    problems: Vec<Problem>,
    scratch: Vec<u8>,
    cancel: &'a AtomicBool,
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

/// Decimal text of `fd` as a C string in `buf`.
fn fd_name(fd: RawFd, buf: &mut [u8; 16]) -> &std::ffi::CStr {
    let mut digits = [0u8; 12];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
    std::ffi::CStr::from_bytes_with_nul(&buf[..=len]).expect("one NUL")
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

impl Reassembler<'_> {
    fn problem(&mut self, off: u64, msg: String, clear_sha: bool) {
        self.problems.push(Problem {
            off,
            msg: format!("stored layer: {msg}"),
            clear_sha,
        });
    }

    /// Open `name` for reading if it is a regular file; else the problem.
    ///
    /// The parent directory is resolved confined to the layer directory
    /// (and kept for the next file in the same directory), the last
    /// component opened `O_PATH | O_NOFOLLOW` from it and checked to be a
    /// regular file, and only then that very inode reopened for reading
    /// through `/proc/self/fd`: no FIFO or device is ever opened.
    fn open_regular(&mut self, name: &[u8]) -> Result<(Fd, libc::stat), String> {
        let comps = components(name);
        let Some((last, dirs)) = comps.split_last() else {
            return Err("not a regular file (directory)".into());
        };
        let dir_path = dirs.join(&b'/');
        if !matches!(&self.parent, Some((p, _)) if *p == dir_path) {
            self.parent = None;
            let fd = open_in_root(
                self.rootfd,
                &dir_path,
                libc::O_PATH | libc::O_DIRECTORY,
                &self.use_openat2,
            )
            .map_err(|e| open_problem(&e))?;
            self.parent = Some((dir_path, fd));
        }
        let parent = self.parent.as_ref().map_or(self.rootfd, |(_, fd)| fd.0);
        let cname = CString::new(*last).map_err(|_| "cannot open: NUL in name".to_string())?;
        let p = openat(
            parent,
            &cname,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
        .map_err(|e| open_problem(&e))?;
        let st = fstat(p.0).map_err(|e| format!("cannot open: {}", describe(&e)))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {}
            libc::S_IFLNK => return Err(open_problem(&io::Error::from_raw_os_error(libc::ELOOP))),
            _ => return Err(format!("not a regular file ({})", kind_name(st.st_mode))),
        }
        let read_flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let fd = match &self.proc_fds {
            Some(procfd) => {
                let mut buf = [0u8; 16];
                let via = fd_name(p.0, &mut buf);
                match openat(procfd.0, via, read_flags | libc::O_NOATIME) {
                    Err(e) if errno(&e) == libc::EPERM => openat(procfd.0, via, read_flags),
                    r => r,
                }
                .map_err(|e| format!("cannot open: {}", describe(&e)))?
            }
            None => {
                // no procfs: open the name again (still confined, O_NONBLOCK)
                // and check it is the same regular file
                let fd = open_in_root(
                    self.rootfd,
                    name,
                    read_flags | libc::O_NOATIME,
                    &self.use_openat2,
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

    /// Emit `size` bytes of file `name`, zero-filling what cannot be read.
    fn file(&mut self, name: &[u8], size: u64, crc: Option<[u8; 8]>) -> Result<(), LayerError> {
        let off = self.out.total;
        let (fd, st) = match self.open_regular(name) {
            Ok(v) => v,
            Err(msg) => {
                self.problem(off, msg, true);
                return self.out.zeros(size);
            }
        };
        if st.st_size as u64 != size {
            self.problem(
                off,
                format!("size {} bytes, expected {size}", st.st_size),
                true,
            );
        }
        if size >= 1 << 20 {
            // SAFETY: plain syscall on an fd we own; advice only.
            unsafe { libc::posix_fadvise(fd.0, 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        }
        let mut want = size;
        let mut c = Crc64::new();
        while want > 0 {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(LayerError::Cancelled);
            }
            let sp = self.out.space();
            let k = (sp.len() as u64).min(want) as usize;
            match read_fd(fd.0, &mut sp[..k]) {
                Ok(0) => {
                    if st.st_size as u64 == size {
                        self.problem(off, "changed while read".into(), true);
                    }
                    break;
                }
                Ok(n) => {
                    c.update(&sp[..n]);
                    self.out.commit(n)?;
                    want -= n as u64;
                }
                Err(e) => {
                    self.problem(off, format!("read failed: {}", describe(&e)), true);
                    break;
                }
            }
        }
        drop(fd);
        if want > 0 {
            return self.out.zeros(want);
        }
        if let Some(expected) = crc {
            let clean = self.problems.last().is_none_or(|p| p.off != off);
            if clean && c.sum() != expected {
                self.problem(
                    off,
                    "content differs from the checksum recorded in tar-split (crc64)".into(),
                    false,
                );
            }
        }
        Ok(())
    }

    fn run(&mut self, json: &mut impl BufRead, max_lines: u64) -> Result<(), LayerError> {
        let mut line = Vec::with_capacity(4096);
        let mut name_buf = Vec::new();
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
                        self.scratch.clear();
                        B64.decode_vec(p.as_bytes(), &mut self.scratch)
                            .map_err(|err| corrupt(format!("entry {index}: payload: {err}")))?;
                        let data = std::mem::take(&mut self.scratch);
                        let r = self.out.write(&data);
                        self.scratch = data;
                        r?;
                    }
                }
                FILE_TYPE => {
                    if e.size < 0 {
                        return Err(corrupt(format!("entry {index} has size {}", e.size)));
                    }
                    if e.size > 0 {
                        name_buf.clear();
                        match (&e.name_raw, &e.name) {
                            (Some(raw), _) if !raw.is_empty() => B64
                                .decode_vec(raw.as_bytes(), &mut name_buf)
                                .map_err(|err| {
                                    corrupt(format!("entry {index}: name_raw: {err}"))
                                })?,
                            (_, Some(n)) => name_buf.extend_from_slice(n.as_bytes()),
                            _ => {}
                        }
                        let crc = match &e.payload {
                            Some(p) => {
                                let v = B64.decode(p.as_bytes()).map_err(|err| {
                                    corrupt(format!("entry {index}: payload: {err}"))
                                })?;
                                <[u8; 8]>::try_from(v.as_slice()).ok()
                            }
                            None => None,
                        };
                        let name = std::mem::take(&mut name_buf);
                        let r = self.file(&name, e.size as u64, crc);
                        name_buf = name;
                        r?;
                    }
                }
                k => return Err(corrupt(format!("entry {index} has unknown type {k}"))),
            }
            index += 1;
        }
        self.out.flush();
        Ok(())
    }
}

struct Produced {
    sha: [u8; 32],
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
    let rootfd = layer_dir.0;
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
        let cur = sink.fresh();
        let mut r = Reassembler {
            rootfd,
            use_openat2: AtomicBool::new(true),
            parent: None,
            proc_fds: if procfs_disabled() {
                None
            } else {
                openat(
                    libc::AT_FDCWD,
                    c"/proc/self/fd",
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
                .ok()
            },
            out: Out {
                sink,
                cur,
                hasher: Sha256::new(),
                total: 0,
                max_bytes: opts.max_bytes,
                gone: false,
            },
            problems: Vec::new(),
            scratch: Vec::new(),
            cancel,
        };
        r.run(&mut json, max_lines)?;
        Ok(Produced {
            sha: r.out.hasher.finalize().into(),
            size: r.out.total,
            problems: r.problems,
        })
    };
    let mut offsets = Vec::new();
    let (p, mut tree, _) = run_pipeline(produce, &limits, cancel, &|| false, Some(&mut offsets))?;
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
        compressed_sha256: p.sha,
        compressed_size: p.size,
        uncompressed_sha256: p.sha,
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

    /// Test hook: pretend /proc is not mounted (the other path is correct
    /// too, so tests running meanwhile are not disturbed).
    pub(super) static NO_PROCFS: AtomicBool = AtomicBool::new(false);
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
}
