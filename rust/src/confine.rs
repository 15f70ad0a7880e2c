//! Opening paths confined to a root directory fd.
//!
//! [`open_in_root`] resolves a path inside a directory fd and never leaves
//! it: `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
//! where the kernel has it, otherwise a component-by-component walk with
//! `O_PATH | O_NOFOLLOW` that checks every step is a real directory. In both
//! cases no symlink is ever followed, in any component: a symlink anywhere
//! in the path fails with `ELOOP`.

use sha2::{Digest, Sha256};
use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// An owned file descriptor closed on drop.
#[derive(Debug)]
pub struct Fd(pub RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.0) };
    }
}

pub fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// openat(2) retrying on EINTR.
pub fn openat(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<Fd> {
    loop {
        // SAFETY: name is NUL-terminated.
        let r = unsafe { libc::openat(dirfd, name.as_ptr(), flags, 0) };
        if r >= 0 {
            return Ok(Fd(r));
        }
        let e = io::Error::last_os_error();
        if errno(&e) == libc::EINTR {
            continue;
        }
        return Err(e);
    }
}

/// Text of the error for a file whose `O_NOATIME` open the kernel refused.
pub const NOATIME_REFUSED: &str =
    "not read: O_NOATIME refused (not the file's owner) and reading would change its atime";

/// The error an `O_NOATIME` open gives when the kernel refuses the flag
/// (`EPERM`: the file is not ours and we lack `CAP_FOWNER`). It is never
/// retried without the flag: the caller records it.
pub fn noatime_refused() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, NOATIME_REFUSED)
}

/// openat() with `O_NOATIME`; an `EPERM` becomes [`noatime_refused`], never a
/// retry without the flag.
pub fn openat_noatime(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<Fd> {
    openat(dirfd, name, flags | libc::O_NOATIME).map_err(|e| {
        if errno(&e) == libc::EPERM {
            noatime_refused()
        } else {
            e
        }
    })
}

/// Decimal text of `fd` as a C string in `buf`.
pub fn fd_name(fd: RawFd, buf: &mut [u8; 16]) -> &CStr {
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
    CStr::from_bytes_with_nul(&buf[..=len]).expect("one NUL")
}

/// `O_PATH | O_NOFOLLOW` handle on the entry `name` of `dirfd`: it names the
/// inode without opening it (no driver's open runs for a device, a FIFO
/// never blocks, a symlink is the link itself).
pub fn path_handle(dirfd: RawFd, name: &CStr) -> io::Result<Fd> {
    openat(
        dirfd,
        name,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
}

static PROC_FDS: std::sync::OnceLock<Option<Fd>> = std::sync::OnceLock::new();

/// `O_PATH` fd of `/proc/self/fd`, opened once (None without procfs).
pub fn proc_fds() -> Option<RawFd> {
    PROC_FDS
        .get_or_init(|| {
            openat(
                libc::AT_FDCWD,
                c"/proc/self/fd",
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
            .ok()
        })
        .as_ref()
        .map(|f| f.0)
}

/// Flags of a read-only reopen of a checked regular file.
pub const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;

/// Reopen the inode of the `O_PATH` `handle` (already checked to be a regular
/// file) for reading through `procfd` (see [`proc_fds`]), with
/// [`READ_FLAGS`] and `noatime` (`O_NOATIME`, or 0 when the mount itself
/// keeps atimes, see [`crate::view`]). The same inode is opened whatever
/// happened to its name meanwhile. `O_NOATIME` refused gives
/// [`noatime_refused`].
pub fn reopen_regular(procfd: RawFd, handle: &Fd, noatime: libc::c_int) -> io::Result<Fd> {
    let mut buf = [0u8; 16];
    let via = fd_name(handle.0, &mut buf);
    if noatime & libc::O_NOATIME != 0 {
        openat_noatime(procfd, via, READ_FLAGS)
    } else {
        openat(procfd, via, READ_FLAGS)
    }
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid pointer.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: initialised by the successful call.
    Ok(unsafe { st.assume_init() })
}

/// Components of `path` after lexical normalisation: empty and "."
/// components dropped, ".." removes the previous component and is clamped
/// at the root (as RESOLVE_IN_ROOT does).
pub fn components(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    out
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| err(libc::EINVAL))
}

/// Raw openat2(2); `Err(ENOSYS)` when the kernel lacks it.
fn openat2(dirfd: RawFd, rel: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<Fd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    // SAFETY: valid pointers and size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r >= 0 {
        Ok(Fd(r as RawFd))
    } else {
        Err(io::Error::last_os_error())
    }
}

const RESOLVE: u64 =
    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// Open `path` (any "/a/b" or "a/b" form; it is normalised with
/// [`components`]) inside `rootfd` with `flags`, never leaving the root and
/// never following a symlink in any component (`ELOOP`). `O_NOATIME` in
/// `flags` refused by the kernel gives [`noatime_refused`] (never dropped).
/// An empty path opens the root itself.
///
/// `use_openat2` is cleared (and the fallback used) when the kernel has no
/// openat2; pass a fresh `AtomicBool::new(true)` when no state is shared.
pub fn open_in_root(
    rootfd: RawFd,
    path: &[u8],
    flags: libc::c_int,
    use_openat2: &AtomicBool,
) -> io::Result<Fd> {
    let comps = components(path);
    let flags = flags | libc::O_CLOEXEC;
    if comps.is_empty() {
        return open_final(rootfd, c".", flags & !libc::O_NOFOLLOW);
    }
    let rel = comps.join(&b'/');
    // openat2 takes at most PATH_MAX bytes; a deeper path is walked component by component
    if use_openat2.load(Ordering::Relaxed) && rel.len() < libc::PATH_MAX as usize {
        let rel = cstring(&rel)?;
        // With O_PATH|O_NOFOLLOW openat2 would return a trailing symlink
        // itself; without O_NOFOLLOW RESOLVE_NO_SYMLINKS refuses it (ELOOP).
        let f = if flags & libc::O_PATH != 0 {
            flags & !libc::O_NOFOLLOW
        } else {
            flags | libc::O_NOFOLLOW
        };
        let mut tries = 0;
        loop {
            match openat2(rootfd, &rel, f, RESOLVE) {
                Ok(fd) => return Ok(fd),
                Err(e) => match errno(&e) {
                    libc::EINTR => {}
                    libc::EAGAIN if tries < 16 => tries += 1,
                    libc::EPERM if f & libc::O_NOATIME != 0 => return Err(noatime_refused()),
                    libc::ENOSYS => {
                        use_openat2.store(false, Ordering::Relaxed);
                        break;
                    }
                    _ => return Err(e),
                },
            }
        }
    }
    component_walk(rootfd, &comps, flags)
}

/// Final open (`O_NOATIME` as [`openat_noatime`]); O_PATH opens are checked
/// not to be a symlink.
fn open_final(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<Fd> {
    let fd = if flags & libc::O_NOATIME != 0 {
        openat_noatime(dirfd, name, flags & !libc::O_NOATIME)?
    } else {
        openat(dirfd, name, flags)?
    };
    if flags & libc::O_PATH != 0 {
        let st = fstat(fd.0)?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFLNK {
            return Err(err(libc::ELOOP));
        }
        if flags & libc::O_DIRECTORY != 0 && fmt != libc::S_IFDIR {
            return Err(err(libc::ENOTDIR));
        }
    }
    Ok(fd)
}

/// Fallback without openat2: every intermediate component is opened with
/// O_PATH|O_NOFOLLOW relative to the previous one and must be a directory
/// (a symlink gives ELOOP, anything else ENOTDIR).
fn component_walk(rootfd: RawFd, comps: &[&[u8]], flags: libc::c_int) -> io::Result<Fd> {
    let mut cur: Option<Fd> = None;
    let (last, dirs) = comps.split_last().expect("non-empty");
    for comp in dirs {
        let c = cstring(comp)?;
        let base = cur.as_ref().map_or(rootfd, |f| f.0);
        let fd = openat(base, &c, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)?;
        let st = fstat(fd.0)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {}
            libc::S_IFLNK => return Err(err(libc::ELOOP)),
            _ => return Err(err(libc::ENOTDIR)),
        }
        cur = Some(fd);
    }
    let base = cur.as_ref().map_or(rootfd, |f| f.0);
    let name = cstring(last)?;
    match open_final(base, &name, flags | libc::O_NOFOLLOW) {
        // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; report it as
        // openat2 does (only the error code depends on this lstat).
        Err(e) if errno(&e) == libc::ENOTDIR => {
            let mut st = MaybeUninit::<libc::stat>::uninit();
            // SAFETY: valid pointers.
            let r = unsafe {
                libc::fstatat(
                    base,
                    name.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            // SAFETY: initialised when r == 0.
            if r == 0 && unsafe { st.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFLNK {
                Err(err(libc::ELOOP))
            } else {
                Err(e)
            }
        }
        r => r,
    }
}

/// Read at most `limit` bytes of the regular file `path` inside `root`, never
/// leaving the root: the path is opened `O_PATH` confined to the root (no
/// symlink followed in any component), checked to be a regular file, and only
/// that inode is reopened for reading through `/proc/self/fd` (`O_NOATIME`,
/// `O_NONBLOCK`): a FIFO or a device is never opened. Returns the bytes read,
/// the file's size and, with `digest`, the SHA-256 of every byte this open read
/// to the end of the file (the bytes past `limit` hashed, not kept): what a
/// caller classifies may then be checked against a digest taken earlier.
pub fn read_regular(
    root: &[u8],
    path: &[u8],
    limit: usize,
    digest: bool,
) -> io::Result<(Vec<u8>, u64, Option<[u8; 32]>)> {
    let root = cstring(root)?;
    let rootfd = openat(
        libc::AT_FDCWD,
        &root,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    let handle = open_in_root(rootfd.0, path, libc::O_PATH, &AtomicBool::new(true))?;
    let st = fstat(handle.0)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (never opened for reading)",
        ));
    }
    let procfd = proc_fds().ok_or_else(|| err(libc::ENOENT))?;
    let fd = reopen_regular(procfd, &handle, libc::O_NOATIME)?;
    let size = st.st_size as u64;
    let wanted = limit.min(size as usize);
    let mut data = vec![0u8; wanted];
    let mut filled = 0;
    while filled < wanted {
        let n = crate::hash::read_fd(fd.0, &mut data[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    data.truncate(filled);
    let sha256 = if digest {
        Some(digest_rest(fd.0, &data)?)
    } else {
        None
    };
    Ok((data, size, sha256))
}

/// SHA-256 of `head` followed by the rest of `fd` to its end (read, hashed, not kept).
fn digest_rest(fd: RawFd, head: &[u8]) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    hasher.update(head);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = crate::hash::read_fd(fd, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    fn root(p: &std::path::Path) -> Fd {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(components(b"/a//./b/"), vec![&b"a"[..], b"b"]);
        assert_eq!(components(b"../../x/../y"), vec![&b"y"[..]]);
        assert!(components(b"/").is_empty());
    }

    #[test]
    fn confined_both_ways() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f"), b"x").unwrap();
        symlink("/etc", r.join("a/etc")).unwrap();
        symlink("b", r.join("a/rel")).unwrap();
        symlink("/etc/passwd", r.join("pw")).unwrap();
        let rf = root(r);
        for use2 in [true, false] {
            let flag = AtomicBool::new(use2);
            let dir = libc::O_PATH | libc::O_DIRECTORY;
            let reg = libc::O_RDONLY | libc::O_NOATIME | libc::O_NONBLOCK;
            assert!(open_in_root(rf.0, b"/a/b", dir, &flag).is_ok());
            assert!(open_in_root(rf.0, b"../../a/b/f", reg, &flag).is_ok());
            assert!(open_in_root(rf.0, b"", dir, &flag).is_ok());
            for (p, fl) in [
                (&b"/a/etc"[..], dir),
                (b"/a/etc/passwd", reg),
                (b"/a/rel", dir),
                (b"/a/rel/f", reg),
                (b"/pw", reg),
                (b"/pw", libc::O_PATH),
            ] {
                let e = open_in_root(rf.0, p, fl, &flag).unwrap_err();
                assert_eq!(
                    errno(&e),
                    libc::ELOOP,
                    "{use2} {:?}",
                    std::str::from_utf8(p)
                );
            }
            let e = open_in_root(rf.0, b"/a/b/f", dir, &flag).unwrap_err();
            assert_eq!(errno(&e), libc::ENOTDIR);
            let e = open_in_root(rf.0, b"/a/b/f/g", reg, &flag).unwrap_err();
            assert_eq!(errno(&e), libc::ENOTDIR);
            let e = open_in_root(rf.0, b"/nope", reg, &flag).unwrap_err();
            assert_eq!(errno(&e), libc::ENOENT);
        }
    }

    #[test]
    fn paths_longer_than_path_max() {
        let d = tempfile::tempdir().unwrap();
        let mut fd = root(d.path());
        let name = [b'n'; 200];
        let cname = CString::new(&name[..]).unwrap();
        let mut path = Vec::new();
        for _ in 0..30 {
            assert_eq!(unsafe { libc::mkdirat(fd.0, cname.as_ptr(), 0o755) }, 0);
            fd = openat(fd.0, &cname, libc::O_PATH | libc::O_DIRECTORY).unwrap();
            path.push(b'/');
            path.extend_from_slice(&name);
        }
        assert!(path.len() > libc::PATH_MAX as usize);
        let rf = root(d.path());
        let got = open_in_root(
            rf.0,
            &path,
            libc::O_PATH | libc::O_DIRECTORY,
            &AtomicBool::new(true),
        )
        .unwrap();
        let (a, b) = (fstat(got.0).unwrap(), fstat(fd.0).unwrap());
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    }
}
