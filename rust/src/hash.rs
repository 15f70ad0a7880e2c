//! SHA-256 of file descriptors with page-aligned read buffers.

use sha2::{Digest, Sha256};
use std::alloc::{alloc, dealloc, Layout};
use std::io;
use std::os::fd::RawFd;

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

/// Hash the rest of `fd` into a SHA-256 digest. `expected` is the size the
/// caller saw in stat; when a short read lands exactly on it we take it as end
/// of file and save the final zero-length read (regular local files only
/// return short reads at end of file). Returns (digest, bytes read).
pub fn hash_fd(
    fd: RawFd,
    buf: &mut AlignedBuf,
    expected: Option<u64>,
) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    let mut total: u64 = 0;
    let cap = buf.len();
    let slice = buf.as_mut_slice();
    loop {
        let n = read_fd(fd, &mut slice[..cap])?;
        if n == 0 {
            break;
        }
        h.update(&slice[..n]);
        total += n as u64;
        if n < cap && Some(total) == expected {
            break;
        }
    }
    Ok((h.finalize().into(), total))
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
            let (d, n) = hash_fd(fd.as_raw_fd(), &mut buf, expected).unwrap();
            assert_eq!(n, data.len() as u64);
            assert_eq!(d.as_slice(), Sha256::digest(&data).as_slice());
        }
        assert_eq!(
            to_hex(&Sha256::digest(b"").into()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
