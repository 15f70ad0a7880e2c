//! The stat fingerprint of a directory tree (`drifttools.baseline.verification`), streamed:
//! no [`crate::entry::Tree`] is built and no entry other than a directory is opened.
//!
//! Each directory is listed through its own fd (opened as the walker opens directories:
//! confined to the root, never through a symlink, `O_NOATIME`, from an ancestor's fd past
//! [`DEEP_REL`] bytes of path, so depth is unlimited) and each of its entries is
//! `statx(dirfd, name, AT_SYMLINK_NOFOLLOW)`-ed: mode, inode, size, owner, nlink, device
//! numbers, mtime and ctime. No xattr is read: the ctime changes on every write, chmod,
//! chown, xattr change and rename. A directory's digest is SHA-256 over its path and its
//! entries sorted by name; the fingerprint is SHA-256 over the root's stat and every
//! directory's (path, digest) in path order. Directories are handled in parallel; memory is
//! one directory's names per worker plus one path and digest per directory.
//!
//! Anything that cannot be opened, listed or stat-ed, anywhere, makes the whole fingerprint an
//! error: a constant error text in its place would hide every later change below it.

use crate::confine::{errno, fstat, open_in_root, openat, Fd};
use crate::walk::{describe, list_dir, statx_at, with_bufs, DEEP_REL};
use sha2::{Digest, Sha256};
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

struct DirJob {
    /// "/a/b"; empty for the root.
    path: Vec<u8>,
    /// Directory `path[rel..]` is opened from (None: the root).
    base: Option<Arc<Fd>>,
    rel: usize,
    /// (device, inode) seen by the parent's statx (None for the root).
    id: Option<(u64, u64)>,
}

struct Ctx {
    rootfd: Fd,
    have_openat2: AtomicBool,
    digests: Mutex<Vec<(Vec<u8>, [u8; 32])>>,
    first_error: Mutex<Option<io::Error>>,
}

/// SHA-256 of the stat facts of every entry under `root` (see the module doc), or the first
/// error met below it (naming the entry).
pub fn stat_fingerprint(root: &Path) -> io::Result<[u8; 32]> {
    let croot = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let rootfd = openat(
        libc::AT_FDCWD,
        &croot,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    let root_st = statx_at(rootfd.0, c"", libc::AT_EMPTY_PATH)?;
    let ctx = Ctx {
        rootfd,
        have_openat2: AtomicBool::new(true),
        digests: Mutex::new(Vec::new()),
        first_error: Mutex::new(None),
    };
    rayon::scope(|s| {
        ctx.process_dir(
            s,
            DirJob {
                path: Vec::new(),
                base: None,
                rel: 0,
                id: None,
            },
        )
    });
    if let Some(e) = ctx
        .first_error
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(e);
    }
    let mut digests = ctx.digests.into_inner().unwrap_or_else(|p| p.into_inner());
    digests.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut total = Sha256::new();
    stat_record(&mut total, &root_st);
    for (path, digest) in &digests {
        bytes(&mut total, path);
        total.update(digest);
    }
    Ok(total.finalize().into())
}

impl Ctx {
    fn process_dir<'s>(&'s self, scope: &rayon::Scope<'s>, job: DirJob) {
        let mut digest = Sha256::new();
        bytes(&mut digest, &job.path);
        let dir = match self.open_checked(&job) {
            Ok(fd) => fd,
            Err(e) => {
                let why = match errno(&e) {
                    libc::ELOOP | libc::ENOTDIR | libc::EXDEV => "changed during walk".into(),
                    _ => format!("cannot open directory: {}", describe(&e)),
                };
                return self.fail(&job.path, &why, &e);
            }
        };
        let (listing, list_err) = with_bufs(|b| list_dir(dir.0, &mut b.dents));
        if let Some(e) = list_err {
            let why = format!("cannot list directory: {}", describe(&e));
            return self.fail(&job.path, &why, &e);
        }
        let mut order: Vec<usize> = (0..listing.spans.len()).collect();
        order.sort_unstable_by(|&a, &b| listing.name(a).cmp(listing.name(b)));
        let dir = Arc::new(dir);
        let (base, rel) = if job.path.len() - job.rel > DEEP_REL {
            (Some(&dir), job.path.len() + 1)
        } else {
            (job.base.as_ref(), job.rel)
        };
        let mut subdirs = Vec::new();
        for i in order {
            let name = listing.name(i);
            digest.update(b"N");
            bytes(&mut digest, name.to_bytes());
            match statx_at(dir.0, name, libc::AT_SYMLINK_NOFOLLOW) {
                Err(e) => return self.fail(&child_path(&job.path, name), &describe(&e), &e),
                Ok(st) => {
                    stat_record(&mut digest, &st);
                    if u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFDIR {
                        subdirs.push(DirJob {
                            path: child_path(&job.path, name),
                            base: base.cloned(),
                            rel,
                            id: Some(file_id(&st)),
                        });
                    }
                }
            }
        }
        drop(dir);
        self.finish(job.path, digest);
        for sub in subdirs {
            scope.spawn(move |s| self.process_dir(s, sub));
        }
    }

    /// The directory of `job`, proven to be the one its parent's statx saw.
    fn open_checked(&self, job: &DirJob) -> io::Result<Fd> {
        let fd = open_in_root(
            job.base.as_ref().map_or(self.rootfd.0, |f| f.0),
            &job.path[job.rel..],
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME,
            &self.have_openat2,
        )?;
        if let Some((dev, ino)) = job.id {
            let st = fstat(fd.0)?;
            if (st.st_dev, st.st_ino) != (dev, ino) {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
        }
        Ok(fd)
    }

    fn finish(&self, path: Vec<u8>, digest: Sha256) {
        let d = digest.finalize().into();
        self.digests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path, d));
    }

    /// Keeps the first error (its kind, and the entry's path in its text); the walk goes on
    /// but its digest will not be returned.
    fn fail(&self, path: &[u8], why: &str, e: &io::Error) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            let shown = if path.is_empty() { b"/" } else { path };
            let text = format!("{}: {why}", String::from_utf8_lossy(shown).escape_debug());
            *first = Some(io::Error::new(e.kind(), text));
        }
    }
}

fn child_path(parent: &[u8], name: &CStr) -> Vec<u8> {
    let name = name.to_bytes();
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

fn file_id(st: &libc::statx) -> (u64, u64) {
    (
        libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        st.stx_ino,
    )
}

/// Length-prefixed bytes, so that no two sequences of fields hash alike.
fn bytes(digest: &mut Sha256, b: &[u8]) {
    digest.update((b.len() as u64).to_le_bytes());
    digest.update(b);
}

fn stat_record(digest: &mut Sha256, st: &libc::statx) {
    digest.update(b"S");
    digest.update(st.stx_mask.to_le_bytes());
    digest.update(st.stx_mode.to_le_bytes());
    digest.update(st.stx_ino.to_le_bytes());
    digest.update(st.stx_size.to_le_bytes());
    digest.update(st.stx_uid.to_le_bytes());
    digest.update(st.stx_gid.to_le_bytes());
    digest.update(st.stx_nlink.to_le_bytes());
    digest.update(st.stx_rdev_major.to_le_bytes());
    digest.update(st.stx_rdev_minor.to_le_bytes());
    for t in [&st.stx_mtime, &st.stx_ctime] {
        digest.update(t.tv_sec.to_le_bytes());
        digest.update(t.tv_nsec.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::stat_fingerprint;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    fn fp(p: &Path) -> [u8; 32] {
        stat_fingerprint(p).unwrap()
    }

    #[test]
    fn deep_changes_are_seen_and_nothing_else_is() {
        let d = tempfile::tempdir().unwrap();
        let mut deep = d.path().to_path_buf();
        for _ in 0..1500 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("leaf"), b"x").unwrap();
        symlink("/etc/passwd", d.path().join("link")).unwrap();
        let before = fp(d.path());
        assert_eq!(fp(d.path()), before);
        fs::set_permissions(deep.join("leaf"), fs::Permissions::from_mode(0o600)).unwrap();
        let chmod = fp(d.path());
        assert_ne!(chmod, before);
        fs::rename(deep.join("leaf"), deep.join("leaf2")).unwrap();
        assert_ne!(fp(d.path()), chmod);
    }

    #[test]
    fn a_fifo_is_seen_never_opened_and_a_missing_root_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("a")).unwrap();
        let empty = fp(d.path());
        // a FIFO opened for reading would block the test
        nix_mkfifo(&d.path().join("a").join("fifo"));
        assert_ne!(fp(d.path()), empty);
        assert!(stat_fingerprint(&d.path().join("missing")).is_err());
    }

    fn nix_mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }
}
