//! SHA-256 of file descriptors with page-aligned read buffers, and on request MD5 and
//! SHA-1 of the same bytes in the same read (many DFIR tools and threat-intel feeds still
//! key on them).

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::alloc::{alloc, dealloc, Layout};
use std::io;
use std::os::fd::RawFd;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Page alignment for read buffers (unaligned destinations make read() much
/// slower on some kernels/CPUs).
pub const ALIGN: usize = 4096;

/// A heap buffer aligned to 4 KiB.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// The buffer is plain owned memory.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let len = len.max(ALIGN).next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(len, ALIGN).expect("bad layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes; the memory may be uninitialised
        // only until written, and callers only read what was written.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, exclusive access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this exact layout.
        unsafe { dealloc(self.ptr, Layout::from_size_align_unchecked(self.len, ALIGN)) }
    }
}

/// MD5 and SHA-1 of a file, beside its SHA-256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegacyDigests {
    pub md5: [u8; 16],
    pub sha1: [u8; 20],
}

/// What [`hash_fd`] computes: always the SHA-256, the legacy digests when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digests {
    pub sha256: [u8; 32],
    pub legacy: Option<LegacyDigests>,
}

/// The hashers of one read: SHA-256, and MD5 + SHA-1 when asked.
struct Hashers {
    sha256: Sha256,
    legacy: Option<(Md5, Sha1)>,
}

impl Hashers {
    fn new(legacy: bool) -> Hashers {
        Hashers {
            sha256: Sha256::new(),
            legacy: legacy.then(|| (Md5::new(), Sha1::new())),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some((md5, sha1)) = &mut self.legacy {
            md5.update(data);
            sha1.update(data);
        }
    }

    fn finalize(self) -> Digests {
        Digests {
            sha256: self.sha256.finalize().into(),
            legacy: self.legacy.map(|(md5, sha1)| LegacyDigests {
                md5: md5.finalize().into(),
                sha1: sha1.finalize().into(),
            }),
        }
    }
}

/// read(2) retrying on EINTR.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable slice.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Hash the rest of `fd`: its SHA-256, and with `legacy` its MD5 and SHA-1 in
/// the same read. `expected` is the size the caller saw in stat; when a short
/// read lands exactly on it we take it as end of file and save the final
/// zero-length read (regular local files only return short reads at end of
/// file). Returns (digests, bytes read).
///
/// From [`OVERLAP_MIN`] expected bytes on, read(2) runs on a helper thread so
/// that its copy overlaps the hashing; the results are the same either way.
pub fn hash_fd(
    fd: RawFd,
    buf: &mut AlignedBuf,
    expected: Option<u64>,
    legacy: bool,
) -> io::Result<(Digests, u64)> {
    if expected.is_some_and(|e| e >= OVERLAP_MIN) {
        if let Some(r) = hash_fd_overlapped(fd, expected, legacy) {
            return r;
        }
    }
    let mut one = OneBuf {
        buf: buf.as_mut_slice(),
        hasher: Hashers::new(legacy),
    };
    let total = read_loop(fd, expected, &mut one)?;
    Ok((one.hasher.finalize(), total))
}

/// Files of at least this many bytes are read on a helper thread.
pub const OVERLAP_MIN: u64 = 16 << 20;
/// Size of each buffer of the helper's ring.
const RING_BUF: usize = 1 << 20;
/// Buffers in the ring (one being filled, one being hashed, slack).
const RING: usize = 4;

/// Where [`read_loop`] reads to and what it does with what it read.
trait Pieces {
    /// The buffer for the next read; None stops the loop.
    fn next_buf(&mut self) -> Option<&mut [u8]>;
    /// The last buffer received `n` > 0 bytes; false stops the loop.
    fn got(&mut self, n: usize) -> bool;
}

/// The read loop of [`hash_fd`]. Returns the bytes read.
fn read_loop(fd: RawFd, expected: Option<u64>, p: &mut impl Pieces) -> io::Result<u64> {
    let mut total: u64 = 0;
    while let Some(buf) = p.next_buf() {
        let cap = buf.len();
        let n = read_fd(fd, buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if !p.got(n) || (n < cap && Some(total) == expected) {
            break;
        }
    }
    Ok(total)
}

/// Serial hashing: every read lands in the caller's buffer and is hashed.
struct OneBuf<'a> {
    buf: &'a mut [u8],
    hasher: Hashers,
}

impl Pieces for OneBuf<'_> {
    fn next_buf(&mut self) -> Option<&mut [u8]> {
        Some(self.buf)
    }

    fn got(&mut self, n: usize) -> bool {
        self.hasher.update(&self.buf[..n]);
        true
    }
}

/// A filled ring buffer and its length, or the read error that ended the file.
type Filled = io::Result<(AlignedBuf, usize)>;

/// Helper side of the ring: reads into free buffers and queues them full.
struct RingFiller {
    cur: Option<AlignedBuf>,
    free: Receiver<AlignedBuf>,
    full: SyncSender<Filled>,
}

impl Pieces for RingFiller {
    fn next_buf(&mut self) -> Option<&mut [u8]> {
        if self.cur.is_none() {
            // Err: the hasher has stopped.
            self.cur = Some(self.free.recv().ok()?);
        }
        self.cur.as_mut().map(AlignedBuf::as_mut_slice)
    }

    fn got(&mut self, n: usize) -> bool {
        let buf = self.cur.take().expect("a buffer was just read into");
        self.full.send(Ok((buf, n))).is_ok()
    }
}

/// [`hash_fd`] with the reads on a scoped helper thread that fills a ring of
/// [`RING`] buffers; memory stays bounded by the ring. None when the thread
/// cannot be started.
fn hash_fd_overlapped(
    fd: RawFd,
    expected: Option<u64>,
    legacy: bool,
) -> Option<io::Result<(Digests, u64)>> {
    let (full_tx, full_rx) = sync_channel::<Filled>(RING);
    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(RING);
    for _ in 0..RING {
        free_tx
            .send(AlignedBuf::new(RING_BUF))
            .expect("room for the ring");
    }
    let mut filler = RingFiller {
        cur: None,
        free: free_rx,
        full: full_tx,
    };
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("drift-hash-read".into())
            .spawn_scoped(s, move || {
                if let Err(e) = read_loop(fd, expected, &mut filler) {
                    let _ = filler.full.send(Err(e));
                }
            })
            .ok()?;
        Some(hash_ring(full_rx, free_tx, Hashers::new(legacy)))
    })
}

/// Hashing side of the ring, until the helper is done or reports an error.
/// Returning (or unwinding) drops both channel ends, which stops a helper
/// still waiting on either.
fn hash_ring(
    full: Receiver<Filled>,
    free: SyncSender<AlignedBuf>,
    mut hasher: Hashers,
) -> io::Result<(Digests, u64)> {
    let mut total: u64 = 0;
    for filled in full {
        let (buf, n) = filled?;
        hasher.update(&buf.as_slice()[..n]);
        total += n as u64;
        // Never blocks (the channel holds the whole ring); fails only when
        // the helper has finished.
        let _ = free.send(buf);
    }
    Ok((hasher.finalize(), total))
}

/// Lowercase hex of a digest.
pub fn to_hex(d: &[u8; 32]) -> String {
    hex::encode(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn aligned() {
        let mut b = AlignedBuf::new(10_000);
        assert_eq!(b.as_mut_ptr() as usize % ALIGN, 0);
        assert_eq!(b.len(), 12288);
    }

    #[test]
    fn hashes_file() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7) as u8).collect();
        f.write_all(&data).unwrap();
        let mut buf = AlignedBuf::new(64 * 1024);
        for expected in [None, Some(data.len() as u64), Some(3)] {
            let fd = std::fs::File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            let (d, n) = hash_fd(fd.as_raw_fd(), &mut buf, expected, false).unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(d.sha256.as_slice(), Sha256::digest(&data).as_slice());
            assert_eq!(d.legacy, None);
        }
        assert_eq!(
            to_hex(&Sha256::digest(b"").into()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn reopen(f: &std::fs::File) -> std::fs::File {
        std::fs::File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap()
    }

    #[test]
    fn large_file_overlapped() {
        let mut f = tempfile::tempfile().unwrap();
        let len = OVERLAP_MIN as usize + 3 * RING_BUF + 12345;
        let data: Vec<u8> = (0..len as u64).map(|i| ((i * 131) >> 3) as u8).collect();
        f.write_all(&data).unwrap();
        let want = Digests {
            sha256: Sha256::digest(&data).into(),
            legacy: Some(LegacyDigests {
                md5: Md5::digest(&data).into(),
                sha1: Sha1::digest(&data).into(),
            }),
        };
        let mut buf = AlignedBuf::new(64 * 1024);
        // exact, larger than the file (shrunk since stat), smaller than the
        // file (grown since stat), and at the threshold
        for expected in [len as u64, len as u64 + 4096, OVERLAP_MIN] {
            let r = hash_fd(reopen(&f).as_raw_fd(), &mut buf, Some(expected), true).unwrap();
            assert_eq!(r, (want, len as u64), "expected {expected}");
        }
        // the overlapped path itself, not a fallback to the serial one
        let r = hash_fd_overlapped(reopen(&f).as_raw_fd(), Some(len as u64), true);
        assert_eq!(r.unwrap().unwrap(), (want, len as u64));
        // and the serial one, with the legacy digests of the same read
        let r = hash_fd(reopen(&f).as_raw_fd(), &mut buf, None, true).unwrap();
        assert_eq!(r, (want, len as u64));
    }

    #[test]
    fn read_errors_are_the_same_on_both_paths() {
        let dir = std::fs::File::open("/").unwrap(); // read(2) gives EISDIR
        let mut buf = AlignedBuf::new(4096);
        for expected in [Some(10), Some(OVERLAP_MIN)] {
            let e = hash_fd(dir.as_raw_fd(), &mut buf, expected, true).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        }
        let e = hash_fd_overlapped(-1, Some(OVERLAP_MIN), false)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
