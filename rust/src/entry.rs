//! Compact in-memory storage of filesystem / archive entries.
//!
//! A [`Tree`] keeps every path in one byte arena, the numeric fields of each
//! entry in a fixed-size packed record ([`Rec`]), and the rarely present parts
//! (symlink target, xattrs, error) in a sparse side table ([`Extra`]).

use crate::hash::LegacyDigests;
use sha2::{Digest, Sha256};
use std::io::{self, Write};

/// Kind of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum EntryKind {
    File = 0,
    Dir = 1,
    Symlink = 2,
    Hardlink = 3,
    Char = 4,
    Block = 5,
    Fifo = 6,
    Socket = 7,
    #[default]
    Unknown = 8,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Char => "char",
            EntryKind::Block => "block",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
            EntryKind::Unknown => "unknown",
        }
    }

    pub fn from_u8(v: u8) -> Option<EntryKind> {
        Some(match v {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            3 => EntryKind::Hardlink,
            4 => EntryKind::Char,
            5 => EntryKind::Block,
            6 => EntryKind::Fifo,
            7 => EntryKind::Socket,
            8 => EntryKind::Unknown,
            _ => return None,
        })
    }

    /// Kind from the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> EntryKind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => EntryKind::File,
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFCHR => EntryKind::Char,
            libc::S_IFBLK => EntryKind::Block,
            libc::S_IFIFO => EntryKind::Fifo,
            libc::S_IFSOCK => EntryKind::Socket,
            _ => EntryKind::Unknown,
        }
    }
}

/// `Rec::flags` bits.
pub const F_SHA: u8 = 1;
pub const F_ATIME: u8 = 2;
pub const F_CTIME: u8 = 4;
pub const F_BTIME: u8 = 8;
/// inode, nlink, dev and blocks are present (walk only).
pub const F_WALK: u8 = 16;
const F_ALL: u8 = F_SHA | F_ATIME | F_CTIME | F_BTIME | F_WALK;

/// No side-table entry.
pub const NO_EXTRA: u32 = u32::MAX;

/// Packed numeric part of an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    pub path_off: u64,
    pub path_len: u32,
    pub extra: u32,
    pub kind: EntryKind,
    pub flags: u8,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub nlink: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub atime_ns: i64,
    pub ctime_ns: i64,
    pub btime_ns: i64,
    pub inode: u64,
    pub dev: u64,
    pub blocks: u64,
    pub sha256: [u8; 32],
}

impl Rec {
    pub fn set_sha(&mut self, digest: [u8; 32]) {
        self.sha256 = digest;
        self.flags |= F_SHA;
    }
    pub fn sha(&self) -> Option<&[u8; 32]> {
        (self.flags & F_SHA != 0).then_some(&self.sha256)
    }
    fn opt(&self, flag: u8, v: i64) -> Option<i64> {
        (self.flags & flag != 0).then_some(v)
    }
    pub fn atime(&self) -> Option<i64> {
        self.opt(F_ATIME, self.atime_ns)
    }
    pub fn ctime(&self) -> Option<i64> {
        self.opt(F_CTIME, self.ctime_ns)
    }
    pub fn btime(&self) -> Option<i64> {
        self.opt(F_BTIME, self.btime_ns)
    }
    pub fn walk_info(&self) -> Option<(u64, u32, u64, u64)> {
        (self.flags & F_WALK != 0).then_some((self.inode, self.nlink, self.dev, self.blocks))
    }
}

/// One extended attribute: (name, value).
pub type Xattr = (Box<[u8]>, Box<[u8]>);

/// Optional, sparse part of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    pub target: Option<Box<[u8]>>,
    pub xattrs: Vec<Xattr>,
    pub error: Option<Box<str>>,
    /// MD5 and SHA-1 of a regular file, read with its SHA-256 when asked.
    pub legacy: Option<LegacyDigests>,
}

impl Extra {
    pub fn is_empty(&self) -> bool {
        self.target.is_none()
            && self.xattrs.is_empty()
            && self.error.is_none()
            && self.legacy.is_none()
    }
}

/// Borrowed view of one entry.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    pub path: &'a [u8],
    pub rec: &'a Rec,
    pub extra: Option<&'a Extra>,
}

impl<'a> EntryRef<'a> {
    pub fn target(&self) -> Option<&'a [u8]> {
        self.extra.and_then(|e| e.target.as_deref())
    }
    pub fn error(&self) -> Option<&'a str> {
        self.extra.and_then(|e| e.error.as_deref())
    }
    pub fn xattrs(&self) -> &'a [Xattr] {
        self.extra.map(|e| e.xattrs.as_slice()).unwrap_or(&[])
    }
    pub fn legacy(&self) -> Option<&'a LegacyDigests> {
        self.extra.and_then(|e| e.legacy.as_ref())
    }
}

/// A list of entries in compact form.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    recs: Vec<Rec>,
    arena: Vec<u8>,
    extras: Vec<Extra>,
    error_count: usize,
}

impl PartialEq for Tree {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.iter().zip(other.iter()).all(|(a, b)| {
                let (mut ra, mut rb) = (*a.rec, *b.rec);
                ra.path_off = 0;
                rb.path_off = 0;
                ra.extra = 0;
                rb.extra = 0;
                a.path == b.path && ra == rb && a.extra == b.extra
            })
    }
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    pub fn error_count(&self) -> usize {
        self.error_count
    }

    /// Append one entry. `rec.path_off`, `rec.path_len` and `rec.extra` are
    /// overwritten.
    pub fn push(&mut self, path: &[u8], mut rec: Rec, extra: Option<Extra>) {
        rec.path_off = self.arena.len() as u64;
        rec.path_len = u32::try_from(path.len()).expect("path longer than 4 GiB");
        self.arena.extend_from_slice(path);
        rec.extra = NO_EXTRA;
        if let Some(x) = extra {
            if !x.is_empty() {
                if x.error.is_some() {
                    self.error_count += 1;
                }
                rec.extra = u32::try_from(self.extras.len()).expect("too many extras");
                self.extras.push(x);
            }
        }
        self.recs.push(rec);
    }

    /// Move all entries of `other` to the end of `self`.
    pub fn append(&mut self, other: Tree) {
        let arena_base = self.arena.len() as u64;
        let extra_base = self.extras.len() as u32;
        self.arena.extend_from_slice(&other.arena);
        self.recs.reserve(other.recs.len());
        for mut r in other.recs {
            r.path_off += arena_base;
            if r.extra != NO_EXTRA {
                r.extra += extra_base;
            }
            self.recs.push(r);
        }
        self.extras.extend(other.extras);
        self.error_count += other.error_count;
    }

    pub fn get(&self, i: usize) -> Option<EntryRef<'_>> {
        let rec = self.recs.get(i)?;
        Some(self.view(rec))
    }

    fn view<'a>(&'a self, rec: &'a Rec) -> EntryRef<'a> {
        let start = rec.path_off as usize;
        let path = &self.arena[start..start + rec.path_len as usize];
        let extra = (rec.extra != NO_EXTRA).then(|| &self.extras[rec.extra as usize]);
        EntryRef { path, rec, extra }
    }

    pub fn iter(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.recs.iter().map(move |r| self.view(r))
    }

    /// Add `msg` to the error of entry `i` (joined with "; " to one already
    /// there); with `clear_sha` its digest is dropped as well. Out of range:
    /// nothing happens.
    pub fn add_error(&mut self, i: usize, msg: &str, clear_sha: bool) {
        let Some(rec) = self.recs.get_mut(i) else {
            return;
        };
        if clear_sha {
            rec.flags &= !F_SHA;
            rec.sha256 = [0; 32];
        }
        if rec.extra == NO_EXTRA {
            rec.extra = u32::try_from(self.extras.len()).expect("too many extras");
            self.extras.push(Extra::default());
        }
        let x = &mut self.extras[rec.extra as usize];
        if clear_sha {
            x.legacy = None;
        }
        x.error = Some(match x.error.take() {
            Some(old) => format!("{old}; {msg}").into(),
            None => {
                self.error_count += 1;
                msg.into()
            }
        });
    }

    /// Sort entries by path bytes (stable, in place on the records only).
    pub fn sort_by_path(&mut self) {
        let arena = &self.arena;
        let key = |r: &Rec| {
            let s = r.path_off as usize;
            &arena[s..s + r.path_len as usize]
        };
        self.recs
            .sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.path_off.cmp(&b.path_off)));
    }

    /// Like [`Tree::sort_by_path`], in parallel on the current rayon pool.
    pub fn par_sort_by_path(&mut self) {
        use rayon::slice::ParallelSliceMut;
        let arena = &self.arena;
        let key = |r: &Rec| {
            let s = r.path_off as usize;
            &arena[s..s + r.path_len as usize]
        };
        self.recs
            .par_sort_unstable_by(|a, b| key(a).cmp(key(b)).then(a.path_off.cmp(&b.path_off)));
    }

    pub fn shrink_to_fit(&mut self) {
        self.recs.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.extras.shrink_to_fit();
    }

    /// Approximate heap bytes used.
    pub fn heap_bytes(&self) -> usize {
        self.recs.capacity() * std::mem::size_of::<Rec>()
            + self.arena.capacity()
            + self.extras.capacity() * std::mem::size_of::<Extra>()
            + self
                .extras
                .iter()
                .map(|e| {
                    e.target.as_ref().map_or(0, |t| t.len())
                        + e.error.as_ref().map_or(0, |t| t.len())
                        + e.xattrs
                            .iter()
                            .map(|(a, b)| a.len() + b.len() + 32)
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    // ---- serialisation -------------------------------------------------

    /// Write the payload encoding of the entries (no header, no checksum).
    pub fn write_payload(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&(self.recs.len() as u64).to_le_bytes())?;
        let mut scratch = Vec::with_capacity(256);
        for e in self.iter() {
            scratch.clear();
            put_bytes(&mut scratch, e.path);
            encode_entry(&mut scratch, &e);
            out.write_all(&scratch)?;
        }
        Ok(())
    }

    /// Decode a payload written by [`Tree::write_payload`].
    pub fn decode_payload(r: &mut Reader<'_>) -> Result<Tree, String> {
        let n = r.u64()?;
        // every entry needs at least 40 bytes: bound the reservation by the input.
        if n > (r.remaining() / 40) as u64 {
            return Err(format!("entry count {n} larger than the data"));
        }
        let mut t = Tree::new();
        t.recs.reserve(n as usize);
        for _ in 0..n {
            let path = r.bytes()?;
            let (rec, extra) = decode_entry(r)?;
            t.push(path, rec, extra);
        }
        Ok(t)
    }

    /// Versioned, checksummed binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let out = Vec::with_capacity(self.arena.len() + self.recs.len() * 120);
        sealed(out, |out| {
            out.write_all(TREE_MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            self.write_payload(out)
        })
        .expect("a Vec takes every write")
    }

    pub fn from_bytes(data: &[u8]) -> Result<Tree, String> {
        let body = unseal(data, TREE_MAGIC)?;
        let mut r = Reader::new(body);
        let t = Tree::decode_payload(&mut r)?;
        r.finish()?;
        Ok(t)
    }
}

/// Append the encoding of one entry without its path (the part of [`Tree::write_payload`]
/// after each path).
pub fn encode_entry(out: &mut Vec<u8>, e: &EntryRef<'_>) {
    let r = e.rec;
    out.push(r.kind as u8);
    out.push(r.flags);
    out.extend_from_slice(&r.mode.to_le_bytes());
    for v in [r.uid, r.gid, r.rdev_major, r.rdev_minor] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    put_u64(out, r.size);
    out.extend_from_slice(&r.mtime_ns.to_le_bytes());
    if r.flags & F_ATIME != 0 {
        out.extend_from_slice(&r.atime_ns.to_le_bytes());
    }
    if r.flags & F_CTIME != 0 {
        out.extend_from_slice(&r.ctime_ns.to_le_bytes());
    }
    if r.flags & F_BTIME != 0 {
        out.extend_from_slice(&r.btime_ns.to_le_bytes());
    }
    if r.flags & F_WALK != 0 {
        put_u64(out, r.inode);
        out.extend_from_slice(&r.nlink.to_le_bytes());
        put_u64(out, r.dev);
        put_u64(out, r.blocks);
    }
    if r.flags & F_SHA != 0 {
        out.extend_from_slice(&r.sha256);
    }
    match e.extra {
        None => out.push(0),
        Some(x) => {
            let mut f = 0u8;
            if x.target.is_some() {
                f |= 1;
            }
            if x.error.is_some() {
                f |= 2;
            }
            if !x.xattrs.is_empty() {
                f |= 4;
            }
            if x.legacy.is_some() {
                f |= 8;
            }
            out.push(f);
            if let Some(t) = &x.target {
                put_bytes(out, t);
            }
            if let Some(er) = &x.error {
                put_bytes(out, er.as_bytes());
            }
            if !x.xattrs.is_empty() {
                out.extend_from_slice(&(x.xattrs.len() as u32).to_le_bytes());
                for (k, v) in &x.xattrs {
                    put_bytes(out, k);
                    put_bytes(out, v);
                }
            }
            if let Some(l) = &x.legacy {
                out.extend_from_slice(&l.md5);
                out.extend_from_slice(&l.sha1);
            }
        }
    }
}

/// Decode one entry written by [`encode_entry`].
pub fn decode_entry(r: &mut Reader<'_>) -> Result<(Rec, Option<Extra>), String> {
    let kind_b = r.u8()?;
    let kind = EntryKind::from_u8(kind_b).ok_or_else(|| format!("bad entry kind {kind_b}"))?;
    let flags = r.u8()?;
    if flags & !F_ALL != 0 {
        return Err(format!("bad entry flags {flags:#x}"));
    }
    let mut rec = Rec {
        kind,
        flags,
        mode: r.u16()?,
        uid: r.u32()?,
        gid: r.u32()?,
        rdev_major: r.u32()?,
        rdev_minor: r.u32()?,
        size: r.u64()?,
        mtime_ns: r.u64()? as i64,
        ..Rec::default()
    };
    if flags & F_ATIME != 0 {
        rec.atime_ns = r.u64()? as i64;
    }
    if flags & F_CTIME != 0 {
        rec.ctime_ns = r.u64()? as i64;
    }
    if flags & F_BTIME != 0 {
        rec.btime_ns = r.u64()? as i64;
    }
    if flags & F_WALK != 0 {
        rec.inode = r.u64()?;
        rec.nlink = r.u32()?;
        rec.dev = r.u64()?;
        rec.blocks = r.u64()?;
    }
    if flags & F_SHA != 0 {
        rec.sha256.copy_from_slice(r.take(32)?);
    }
    let xf = r.u8()?;
    if xf & !15 != 0 {
        return Err(format!("bad extra flags {xf:#x}"));
    }
    let extra = if xf == 0 {
        None
    } else {
        let mut x = Extra::default();
        if xf & 1 != 0 {
            x.target = Some(r.bytes()?.into());
        }
        if xf & 2 != 0 {
            let s = std::str::from_utf8(r.bytes()?).map_err(|_| "error text is not UTF-8")?;
            x.error = Some(s.into());
        }
        if xf & 4 != 0 {
            let k = r.u32()?;
            if k as usize > r.remaining() / 8 {
                return Err(format!("xattr count {k} larger than the data"));
            }
            for _ in 0..k {
                let name: Box<[u8]> = r.bytes()?.into();
                let value: Box<[u8]> = r.bytes()?.into();
                x.xattrs.push((name, value));
            }
        }
        if xf & 8 != 0 {
            let mut l = LegacyDigests::default();
            l.md5.copy_from_slice(r.take(16)?);
            l.sha1.copy_from_slice(r.take(20)?);
            x.legacy = Some(l);
        }
        Some(x)
    };
    Ok((rec, extra))
}

pub const TREE_MAGIC: &[u8; 8] = b"DTTREE\r\n";
pub const LAYER_MAGIC: &[u8; 8] = b"DTLAYR\r\n";
pub const FORMAT_VERSION: u32 = 1;

/// Write what `body` writes to `out`, then the SHA-256 of it all (the checksum [`unseal`]
/// checks); the writer back.
pub fn sealed<W: Write>(
    out: W,
    body: impl FnOnce(&mut Sealed<W>) -> io::Result<()>,
) -> io::Result<W> {
    let mut s = Sealed {
        out,
        hash: Sha256::new(),
    };
    body(&mut s)?;
    let digest = s.hash.finalize();
    s.out.write_all(&digest)?;
    Ok(s.out)
}

/// A writer that hashes what goes through it (see [`sealed`]).
pub struct Sealed<W: Write> {
    out: W,
    hash: Sha256,
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.out.write(data)?;
        self.hash.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Check magic, version and the trailing checksum; return the payload.
pub fn unseal<'a>(data: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8], String> {
    if data.len() < 8 || &data[..8] != magic {
        return Err("bad magic".into());
    }
    if data.len() < 12 + 32 {
        return Err("truncated".into());
    }
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let (body, sum) = data.split_at(data.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch (data truncated or altered)".into());
    }
    Ok(&body[12..])
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Bounds-checked little-endian reader.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.remaining() < n {
            return Err(format!("truncated at byte {}", self.pos));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn finish(&self) -> Result<(), String> {
        if self.remaining() != 0 {
            return Err(format!("{} unexpected trailing bytes", self.remaining()));
        }
        Ok(())
    }
}

/// The one extended attribute whose change counts as drift (SELinux labels
/// are assigned by the host policy; overlay xattrs are the engine's).
pub const DRIFT_XATTR: &[u8] = b"security.capability";

/// The facts of an entry that decide whether it drifted, as one comparable
/// byte string: two entries with equal keys are the same for a diff (kind,
/// mode, owner, content digest or, without one, size, link target, device
/// numbers, file capabilities). None for what must be compared in full: a
/// hardlink (its facts are its target's) or an entry read with an error.
pub fn drift_key(e: &EntryRef<'_>) -> Option<Vec<u8>> {
    let r = e.rec;
    if r.kind == EntryKind::Hardlink || e.error().is_some() {
        return None;
    }
    let mut k = Vec::with_capacity(48);
    k.push(r.kind as u8);
    k.extend_from_slice(&r.mode.to_le_bytes());
    k.extend_from_slice(&r.uid.to_le_bytes());
    k.extend_from_slice(&r.gid.to_le_bytes());
    match r.kind {
        EntryKind::File => match r.sha() {
            Some(sha) => {
                k.push(b'h');
                k.extend_from_slice(sha);
            }
            None => {
                k.push(b's');
                k.extend_from_slice(&r.size.to_le_bytes());
            }
        },
        EntryKind::Char | EntryKind::Block => {
            k.extend_from_slice(&r.rdev_major.to_le_bytes());
            k.extend_from_slice(&r.rdev_minor.to_le_bytes());
        }
        _ => {}
    }
    // length-prefixed, so that no two different (target, capability) pairs
    // give the same bytes
    let target = e.target();
    k.push(target.is_some() as u8);
    if let Some(t) = target {
        k.extend_from_slice(&(t.len() as u64).to_le_bytes());
        k.extend_from_slice(t);
    }
    if let Some((_, v)) = e.xattrs().iter().find(|(n, _)| &n[..] == DRIFT_XATTR) {
        k.push(1);
        k.extend_from_slice(v);
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_keys_equal_only_for_the_same_drift_facts() {
        let file = |sha: Option<u8>, size: u64, mode: u16| {
            let mut r = Rec {
                kind: EntryKind::File,
                mode,
                size,
                mtime_ns: 1,
                ..Rec::default()
            };
            if let Some(b) = sha {
                r.set_sha([b; 32]);
            }
            r
        };
        let key = |rec: Rec, extra: Option<Extra>| {
            let mut t = Tree::new();
            t.push(b"/p", rec, extra);
            drift_key(&t.get(0).unwrap())
        };
        let base = key(file(Some(1), 5, 0o644), None);
        assert!(base.is_some());
        // mtime, times and inode do not count
        let mut later = file(Some(1), 5, 0o644);
        later.mtime_ns = 99;
        later.inode = 7;
        assert_eq!(key(later, None), base);
        for other in [
            file(Some(2), 5, 0o644),
            file(Some(1), 5, 0o755),
            file(None, 5, 0o644),
            Rec {
                uid: 1,
                ..file(Some(1), 5, 0o644)
            },
            Rec {
                kind: EntryKind::Dir,
                ..file(None, 0, 0o644)
            },
        ] {
            assert_ne!(key(other, None), base);
        }
        let cap = |v: &[u8]| Extra {
            xattrs: vec![(DRIFT_XATTR.into(), v.into())],
            ..Extra::default()
        };
        assert_ne!(key(file(Some(1), 5, 0o644), Some(cap(b"x"))), base);
        assert_ne!(
            key(file(Some(1), 5, 0o644), Some(cap(b"x"))),
            key(file(Some(1), 5, 0o644), Some(cap(b"y")))
        );
        let label = Extra {
            xattrs: vec![(b"security.selinux"[..].into(), b"l"[..].into())],
            ..Extra::default()
        };
        assert_eq!(key(file(Some(1), 5, 0o644), Some(label)), base);
        let link = |t: &[u8]| {
            let extra = Extra {
                target: Some(t.into()),
                ..Extra::default()
            };
            let rec = Rec {
                kind: EntryKind::Symlink,
                ..Rec::default()
            };
            key(rec, Some(extra))
        };
        assert_eq!(link(b"/a"), link(b"/a"));
        assert_ne!(link(b"/a"), link(b"/b"));
        let broken = Extra {
            error: Some("vanished".into()),
            ..Extra::default()
        };
        assert_eq!(key(file(Some(1), 5, 0o644), Some(broken)), None);
        let hard = Rec {
            kind: EntryKind::Hardlink,
            ..Rec::default()
        };
        assert_eq!(key(hard, None), None);
    }

    pub(crate) fn sample_tree() -> Tree {
        let mut t = Tree::new();
        let mut r = Rec {
            kind: EntryKind::File,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            size: 12,
            mtime_ns: -5,
            ..Rec::default()
        };
        r.set_sha([7; 32]);
        r.flags |= F_ATIME | F_WALK;
        r.atime_ns = 42;
        r.inode = 99;
        r.nlink = 2;
        r.dev = 2049;
        r.blocks = 8;
        let digests = Extra {
            legacy: Some(LegacyDigests {
                md5: [3; 16],
                sha1: [4; 20],
            }),
            ..Extra::default()
        };
        t.push(b"/z/file", r, Some(digests));
        let link = Rec {
            kind: EntryKind::Symlink,
            ..Rec::default()
        };
        t.push(
            b"/a/link\xff",
            link,
            Some(Extra {
                target: Some((*b"../../etc/passwd").into()),
                xattrs: vec![((*b"security.selinux").into(), (*b"x\0").into())],
                ..Extra::default()
            }),
        );
        let d = Rec {
            kind: EntryKind::Dir,
            mode: 0o755,
            ..Rec::default()
        };
        t.push(
            b"/m",
            d,
            Some(Extra {
                error: Some("cannot list directory: permission denied".into()),
                ..Extra::default()
            }),
        );
        t
    }

    #[test]
    fn push_get_sort() {
        let mut t = sample_tree();
        assert_eq!(t.len(), 3);
        assert_eq!(t.error_count(), 1);
        t.sort_by_path();
        let paths: Vec<&[u8]> = t.iter().map(|e| e.path).collect();
        assert_eq!(paths, vec![&b"/a/link\xff"[..], b"/m", b"/z/file"]);
        let e = t.get(0).unwrap();
        assert_eq!(e.target(), Some(&b"../../etc/passwd"[..]));
        assert_eq!(e.xattrs().len(), 1);
        assert_eq!(t.get(2).unwrap().rec.sha(), Some(&[7; 32]));
        assert_eq!(t.get(2).unwrap().legacy().map(|l| l.sha1), Some([4; 20]));
        assert_eq!(
            t.get(1).unwrap().error(),
            Some("cannot list directory: permission denied")
        );
        assert!(t.get(3).is_none());
    }

    #[test]
    fn append_keeps_offsets() {
        let mut a = sample_tree();
        let b = sample_tree();
        a.append(b);
        assert_eq!(a.len(), 6);
        assert_eq!(a.error_count(), 2);
        assert_eq!(a.get(4).unwrap().path, b"/a/link\xff");
        assert_eq!(a.get(4).unwrap().target(), Some(&b"../../etc/passwd"[..]));
    }

    #[test]
    fn bytes_round_trip() {
        let t = sample_tree();
        let data = t.to_bytes();
        let back = Tree::from_bytes(&data).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.error_count(), 1);
        assert_eq!(Tree::from_bytes(&Tree::new().to_bytes()).unwrap().len(), 0);
    }

    fn seal(out: &mut Vec<u8>) {
        let d = Sha256::digest(&out[..]);
        out.extend_from_slice(&d);
    }

    #[test]
    fn corruption_detected() {
        let data = sample_tree().to_bytes();
        assert!(Tree::from_bytes(&data[..data.len() - 1]).is_err());
        assert!(Tree::from_bytes(&data[..20]).is_err());
        assert!(Tree::from_bytes(b"").is_err());
        for i in [0usize, 9, 15, 40, data.len() - 3] {
            let mut bad = data.clone();
            bad[i] ^= 0x40;
            assert!(Tree::from_bytes(&bad).is_err(), "flip at {i} not detected");
        }
        let mut v2 = data.clone();
        v2[8] = 2;
        let n = v2.len();
        v2.truncate(n - 32);
        seal(&mut v2);
        assert!(Tree::from_bytes(&v2).unwrap_err().contains("version"));
        // valid checksum but inconsistent payload
        let mut junk = Vec::from(&TREE_MAGIC[..]);
        junk.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        junk.extend_from_slice(&u64::MAX.to_le_bytes());
        seal(&mut junk);
        assert!(Tree::from_bytes(&junk).is_err());
    }
}
