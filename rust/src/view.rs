//! A private read-only, `noatime` view of the directory a walk reads.
//!
//! `O_NOATIME` keeps the atimes of files and directories, but nothing keeps
//! a symlink's: `readlinkat` updates the link's atime whatever the flags
//! (an `O_PATH` handle on the link and `readlinkat(fd, "")` update it too).
//! What the kernel does honour is the mount: no atime is ever written
//! through a `noatime` or read-only mount. So the walk goes through a
//! detached clone of the directory's mount tree (`open_tree(OPEN_TREE_CLONE
//! | AT_RECURSIVE)`) made read-only, `noatime`, `nodev`, `nosuid` and
//! `noexec` with `mount_setattr`: it belongs to no mount namespace, nothing
//! else sees it, and it goes away with its fd. Through it no atime changes,
//! nothing can be written and a device node cannot be opened even by
//! mistake.
//!
//! A mount of another mount namespace (`/proc/<pid>/root` of a container)
//! can only be cloned from inside that namespace: a short-lived thread
//! leaves the process's shared filesystem context (`unshare(CLONE_FS)`),
//! joins `/proc/<pid>/ns/mnt` (`setns`) and clones there; the fd it gets is
//! the process's. Cloning needs `CAP_SYS_ADMIN`; without it (or on a kernel
//! before 5.12) [`noatime_view`] fails and the caller records the exception.

use crate::confine::{errno, openat, Fd};
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn open_tree_clone(dirfd: RawFd) -> io::Result<Fd> {
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: the empty path is NUL-terminated; the flags ask for a new fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            c"".as_ptr(),
            flags | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Fd(r as RawFd))
}

fn seal(view: &Fd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY
            | MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | MOUNT_ATTR_NOEXEC
            | MOUNT_ATTR_NOATIME,
        attr_clr: MOUNT_ATTR_ATIME,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid pointers and size; the call only changes the detached clone.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            view.0,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pid of a `/proc/<pid>/root` path (with or without more after it).
fn proc_root_pid(root: &[u8]) -> Option<u32> {
    let rest = root.strip_prefix(b"/proc/")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = rest[digits..].strip_prefix(b"/root")?;
    if digits == 0 || !(after.is_empty() || after.starts_with(b"/")) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Clone `dirfd`'s mount from inside the mount namespace of `pid`.
fn clone_in_namespace(dirfd: RawFd, pid: u32) -> io::Result<Fd> {
    let ns = CString::new(format!("/proc/{pid}/ns/mnt")).expect("no NUL");
    let nsfd = openat(libc::AT_FDCWD, &ns, libc::O_RDONLY | libc::O_CLOEXEC)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscalls on this thread's own context; the thread
            // ends right after, taking its namespace with it.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            if unsafe { libc::setns(nsfd.0, libc::CLONE_NEWNS) } != 0 {
                return Err(io::Error::last_os_error());
            }
            open_tree_clone(dirfd)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// A detached read-only, `noatime`, `nodev` clone of the mount tree at
/// `dirfd` (the directory `root` names), rooted at `dirfd`'s directory.
/// Paths opened from the returned fd see the same inodes, devices and
/// submounts, and no access through it changes an atime.
pub fn noatime_view(dirfd: RawFd, root: &[u8]) -> io::Result<Fd> {
    let view = match open_tree_clone(dirfd) {
        Err(e) if errno(&e) == libc::EINVAL => match proc_root_pid(root) {
            Some(pid) => clone_in_namespace(dirfd, pid)?,
            None => return Err(e),
        },
        r => r?,
    };
    seal(&view)?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, MetadataExt};
    use std::path::Path;

    fn dir_fd(p: &Path) -> Fd {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY).unwrap()
    }

    fn set_old_atime(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        let t = [
            libc::timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
        ];
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                t.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(r, 0);
    }

    fn readlink_at(fd: RawFd, name: &std::ffi::CStr) -> isize {
        let mut buf = [0u8; 64];
        unsafe { libc::readlinkat(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    }

    #[test]
    fn pid_of_proc_root() {
        assert_eq!(proc_root_pid(b"/proc/42/root"), Some(42));
        assert_eq!(proc_root_pid(b"/proc/42/root/"), Some(42));
        assert_eq!(proc_root_pid(b"/proc/42/rootx"), None);
        assert_eq!(proc_root_pid(b"/proc//root"), None);
        assert_eq!(proc_root_pid(b"/var/lib/x"), None);
    }

    /// The kernel facts the walk relies on: readlinkat through the plain
    /// path updates a symlink's atime (so O_NOATIME alone cannot keep it),
    /// through the view it does not; the view is read-only and nodev.
    #[test]
    fn view_keeps_symlink_atimes_and_is_read_only() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        symlink("/etc/passwd", r.join("lnk")).unwrap();
        let plain = dir_fd(r);
        set_old_atime(&r.join("lnk"));
        assert!(readlink_at(plain.0, c"lnk") > 0);
        let atime = || fs::symlink_metadata(r.join("lnk")).unwrap().atime();
        assert_ne!(
            atime(),
            1_000_000,
            "this kernel keeps symlink atimes anyway"
        );
        set_old_atime(&r.join("lnk"));
        let root = CString::new(r.as_os_str().as_bytes()).unwrap();
        let view = noatime_view(plain.0, root.as_bytes()).unwrap();
        assert!(readlink_at(view.0, c"lnk") > 0);
        assert_eq!(atime(), 1_000_000);
        let w = unsafe {
            libc::openat(
                view.0,
                c"new".as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            )
        };
        assert_eq!(w, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EROFS));
    }
}
