//! The merged baseline of an image on disk, looked up in place instead of loaded.
//!
//! One file per image: fixed-size records sorted by path bytes (binary search for one
//! path, a contiguous range for a subtree), a string area with the paths and each
//! entry's encoding ([`entry::encode_entry`]), and an opaque metadata blob (the
//! caller's: which layers, how they were verified, hardlink groups, merge errors).
//!
//! Integrity: the data after the header is cut into [`BLOCK`]-byte blocks, each with
//! its SHA-256 in a table at the end of the file; the header carries a SHA-256 over
//! itself and that table. Opening checks magic, version, the layout against the file
//! size and the header digest (cost: the table, 32 bytes per block). A data block is
//! hashed and compared the first time any byte of it is read, so no byte is used
//! unchecked while a lookup pays only for the blocks it touches. A mismatch is an
//! error ([`Corrupt`]); the caller rebuilds the file, it never reads around it.
//!
//! Layout (little endian): header ([`HEADER_LEN`] bytes) | paths | entries | records |
//! meta | block digests.

use crate::entry::{self, EntryRef, Extra, Reader, Rec, Tree};
use memmap2::Mmap;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub const MAGIC: &[u8; 8] = b"DTBIDX\r\n";
pub const VERSION: u32 = 1;
/// Bytes per checked block.
pub const BLOCK: usize = 64 * 1024;
pub const HEADER_LEN: usize = 128;
const REC_LEN: usize = 32;
/// Record flag: a directory no layer named (made up by the merge), no entry encoding.
pub const IMPLICIT: u32 = 1;
const DIGEST_AT: usize = 96;

/// A corrupt or inconsistent index file: never used, rebuilt by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path of the merged view to write: its layer and its entry (None: implicit dir).
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub path: &'a [u8],
    pub layer: u32,
    pub entry: Option<EntryRef<'a>>,
}

/// Writes the data area, hashing it block by block as it goes.
struct BlockWriter {
    out: BufWriter<File>,
    pos: usize, // bytes of data written (after the header)
    block: Sha256,
    digests: Vec<[u8; 32]>,
}

impl BlockWriter {
    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = BLOCK - self.pos % BLOCK;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.out.write_all(now)?;
            self.block.update(now);
            self.pos += now.len();
            if self.pos.is_multiple_of(BLOCK) {
                self.digests.push(self.block.finalize_reset().into());
            }
            data = rest;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<(BufWriter<File>, Vec<[u8; 32]>)> {
        if !self.pos.is_multiple_of(BLOCK) {
            self.digests.push(self.block.finalize_reset().into());
        }
        Ok((self.out, self.digests))
    }
}

/// Write the index of `items` and `meta` to `path`. The items come sorted by path, each path
/// once (else `InvalidInput`); they are gone through three times (paths, entries, records),
/// so that nothing per item is held in memory but each entry's encoded length.
pub fn write<'a, I>(path: &Path, items: I, meta: &[u8]) -> io::Result<()>
where
    I: Iterator<Item = Item<'a>> + Clone,
{
    let mut file = File::create(path)?;
    file.write_all(&[0; HEADER_LEN])?;
    let mut w = BlockWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        pos: 0,
        block: Sha256::new(),
        digests: Vec::new(),
    };
    // all paths first, then the entries: a binary search reads only records and paths
    let mut count = 0usize;
    let mut last: Option<&[u8]> = None;
    for item in items.clone() {
        if let Some(before) = last.filter(|&before| before >= item.path) {
            let shown = String::from_utf8_lossy(item.path).into_owned();
            let why = if before == item.path {
                format!("path twice in a baseline index: {shown}")
            } else {
                format!("baseline index paths out of order at {shown}")
            };
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        last = Some(item.path);
        w.write(item.path)?;
        count += 1;
    }
    let entries_off = HEADER_LEN + w.pos;
    let mut entry_lens = Vec::with_capacity(count);
    let mut scratch = Vec::with_capacity(256);
    for item in items.clone() {
        scratch.clear();
        if let Some(e) = &item.entry {
            entry::encode_entry(&mut scratch, e);
        }
        w.write(&scratch)?;
        entry_lens.push(scratch.len() as u32);
    }
    let records_off = HEADER_LEN + w.pos;
    let (mut path_off, mut entry_off) = (HEADER_LEN as u64, entries_off as u64);
    let mut record = [0u8; REC_LEN];
    for (item, entry_len) in items.zip(entry_lens) {
        let (at, flags) = match item.entry {
            Some(_) => (entry_off, 0),
            None => (0, IMPLICIT),
        };
        record[..8].copy_from_slice(&path_off.to_le_bytes());
        record[8..12].copy_from_slice(&(item.path.len() as u32).to_le_bytes());
        record[12..16].copy_from_slice(&item.layer.to_le_bytes());
        record[16..24].copy_from_slice(&at.to_le_bytes());
        record[24..28].copy_from_slice(&entry_len.to_le_bytes());
        record[28..32].copy_from_slice(&flags.to_le_bytes());
        w.write(&record)?;
        path_off += item.path.len() as u64;
        entry_off += entry_len as u64;
    }
    let meta_off = HEADER_LEN + w.pos;
    w.write(meta)?;
    let digests_off = HEADER_LEN + w.pos;
    let (mut out, digests) = w.finish()?;
    for d in &digests {
        out.write_all(d)?;
    }
    let file_len = digests_off + digests.len() * 32;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    let fields = [
        count as u64,
        records_off as u64,
        meta_off as u64,
        meta.len() as u64,
        digests_off as u64,
        file_len as u64,
    ];
    for (i, v) in fields.iter().enumerate() {
        header[16 + i * 8..24 + i * 8].copy_from_slice(&v.to_le_bytes());
    }
    let sum = header_digest(&header, &digests.concat());
    header[DIGEST_AT..].copy_from_slice(&sum);
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header)?;
    file.sync_all()
}

fn header_digest(header: &[u8], table: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&header[..DIGEST_AT]);
    h.update(table);
    h.finalize().into()
}

const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

/// An index file opened for lookups (memory-mapped, checked per block on first touch).
pub struct BaselineIndex {
    map: Mmap,
    count: usize,
    records_off: usize,
    meta_off: usize,
    meta_len: usize,
    digests_off: usize,
    blocks: Vec<AtomicU8>,
    checked: AtomicU64,
}

/// One record of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub path_off: usize,
    pub path_len: usize,
    pub layer: u32,
    pub entry_off: usize,
    pub entry_len: usize,
    pub flags: u32,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl BaselineIndex {
    /// Open `path`: layout and header digest checked, data blocks left for first use.
    pub fn open(path: &Path) -> Result<BaselineIndex, OpenError> {
        let file = File::open(path).map_err(OpenError::Io)?;
        // SAFETY: the file is our cache's, replaced only by rename (never written in
        // place); every byte read from the map is checked against its block digest.
        let map = unsafe { Mmap::map(&file) }.map_err(OpenError::Io)?;
        Self::from_map(map).map_err(OpenError::Corrupt)
    }

    fn from_map(map: Mmap) -> Result<BaselineIndex, Corrupt> {
        let bad = |m: &str| Err(Corrupt(m.to_string()));
        if map.len() < HEADER_LEN || &map[..8] != MAGIC {
            return bad("not a baseline index (bad magic or truncated)");
        }
        let version = le32(&map, 8);
        if version != VERSION {
            return Err(Corrupt(format!("unsupported index version {version}")));
        }
        if le32(&map, 12) as usize != BLOCK {
            return bad("unexpected block size");
        }
        let f: Vec<u64> = (0..6).map(|i| le64(&map, 16 + i * 8)).collect();
        let [count, records_off, meta_off, meta_len, digests_off, file_len] =
            <[u64; 6]>::try_from(f).expect("six fields");
        if file_len != map.len() as u64 {
            return Err(Corrupt(format!(
                "index truncated or extended: {} bytes, header says {file_len}",
                map.len()
            )));
        }
        let data_len = digests_off.checked_sub(HEADER_LEN as u64);
        let nblocks = data_len.map(|n| n.div_ceil(BLOCK as u64));
        let consistent = nblocks.is_some_and(|nb| digests_off + nb * 32 == file_len)
            && records_off >= HEADER_LEN as u64
            && count
                .checked_mul(REC_LEN as u64)
                .and_then(|n| n.checked_add(records_off))
                == Some(meta_off)
            && meta_off.checked_add(meta_len) == Some(digests_off);
        if !consistent {
            return bad("inconsistent index header");
        }
        let nblocks = nblocks.expect("checked") as usize;
        let table = &map[digests_off as usize..];
        if header_digest(&map[..HEADER_LEN], table)[..] != map[DIGEST_AT..HEADER_LEN] {
            return bad("index header digest mismatch");
        }
        Ok(BaselineIndex {
            count: count as usize,
            records_off: records_off as usize,
            meta_off: meta_off as usize,
            meta_len: meta_len as usize,
            digests_off: digests_off as usize,
            blocks: (0..nblocks).map(|_| AtomicU8::new(UNCHECKED)).collect(),
            checked: AtomicU64::new(0),
            map,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// (blocks checked so far, blocks in the file).
    pub fn blocks_checked(&self) -> (u64, usize) {
        (self.checked.load(Ordering::Relaxed), self.blocks.len())
    }

    /// `len` bytes at file offset `off`, every block they touch checked first.
    fn bytes(&self, off: usize, len: usize) -> Result<&[u8], Corrupt> {
        let end = off
            .checked_add(len)
            .filter(|&e| off >= HEADER_LEN && e <= self.digests_off)
            .ok_or_else(|| Corrupt(format!("index reference out of range at {off}")))?;
        if len > 0 {
            let first = (off - HEADER_LEN) / BLOCK;
            let last = (end - 1 - HEADER_LEN) / BLOCK;
            for b in first..=last {
                self.check_block(b)?;
            }
        }
        Ok(&self.map[off..end])
    }

    fn check_block(&self, b: usize) -> Result<(), Corrupt> {
        match self.blocks[b].load(Ordering::Acquire) {
            GOOD => return Ok(()),
            BAD => return Err(Corrupt(format!("index block {b} digest mismatch"))),
            _ => {}
        }
        let start = HEADER_LEN + b * BLOCK;
        let end = (start + BLOCK).min(self.digests_off);
        let want = &self.map[self.digests_off + b * 32..self.digests_off + b * 32 + 32];
        let good = Sha256::digest(&self.map[start..end])[..] == *want;
        self.blocks[b].store(if good { GOOD } else { BAD }, Ordering::Release);
        if !good {
            return Err(Corrupt(format!("index block {b} digest mismatch")));
        }
        self.checked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The caller's metadata blob.
    pub fn meta(&self) -> Result<&[u8], Corrupt> {
        self.bytes(self.meta_off, self.meta_len)
    }

    pub fn record(&self, i: usize) -> Result<Record, Corrupt> {
        let b = self.bytes(self.records_off + i * REC_LEN, REC_LEN)?;
        Ok(Record {
            path_off: le64(b, 0) as usize,
            path_len: le32(b, 8) as usize,
            layer: le32(b, 12),
            entry_off: le64(b, 16) as usize,
            entry_len: le32(b, 24) as usize,
            flags: le32(b, 28),
        })
    }

    pub fn path(&self, i: usize) -> Result<&[u8], Corrupt> {
        let r = self.record(i)?;
        self.bytes(r.path_off, r.path_len)
    }

    /// The first position whose path is not less than `key`.
    pub fn lower_bound(&self, key: &[u8]) -> Result<usize, Corrupt> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.path(mid)? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The position of `path`, if the index holds it.
    pub fn find(&self, path: &[u8]) -> Result<Option<usize>, Corrupt> {
        let i = self.lower_bound(path)?;
        Ok((i < self.count && self.path(i)? == path).then_some(i))
    }

    /// Positions `lo..hi` of every path that starts with `prefix`.
    pub fn prefix_range(&self, prefix: &[u8]) -> Result<(usize, usize), Corrupt> {
        let lo = self.lower_bound(prefix)?;
        let mut upper = prefix.to_vec();
        // the smallest key above every key with this prefix: drop trailing 0xff, add one
        while upper.last() == Some(&0xff) {
            upper.pop();
        }
        let hi = match upper.last_mut() {
            Some(last) => {
                *last += 1;
                self.lower_bound(&upper)?
            }
            None => self.count,
        };
        Ok((lo, hi))
    }

    /// Layer and entry (None: an implicit directory) of position `i`.
    pub fn entry(&self, i: usize) -> Result<(u32, Option<Decoded>), Corrupt> {
        let r = self.record(i)?;
        if r.flags & IMPLICIT != 0 {
            return Ok((r.layer, None));
        }
        let data = self.bytes(r.entry_off, r.entry_len)?;
        let mut reader = Reader::new(data);
        let decoded = entry::decode_entry(&mut reader)
            .and_then(|e| reader.finish().map(|()| e))
            .map_err(|e| Corrupt(format!("index entry {i}: {e}")))?;
        Ok((r.layer, Some(decoded)))
    }
}

impl BaselineIndex {
    /// Merge-join of `live` (its paths under `mount`, as `join_mount` makes them) with the
    /// index: the positions of `live` whose drift key ([`entry::drift_key`]) is not the
    /// image's (or that the image lacks), and the index positions no live path has.
    pub fn drift_join(
        &self,
        live: &Tree,
        mount: &[u8],
    ) -> Result<(Vec<usize>, Vec<usize>), Corrupt> {
        let base = if mount == b"/" {
            &b""[..]
        } else {
            mount.strip_suffix(b"/").unwrap_or(mount)
        };
        let mut order: Vec<(Vec<u8>, usize)> = live
            .iter()
            .enumerate()
            .map(|(i, e)| ([base, e.path].concat(), i))
            .collect();
        order.sort_unstable();
        let (mut unsettled, mut unseen) = (Vec::new(), Vec::new());
        let mut pos = 0;
        for (path, i) in &order {
            while pos < self.count && self.path(pos)? < &path[..] {
                unseen.push(pos);
                pos += 1;
            }
            let live_key = entry::drift_key(&live.get(*i).expect("in range"));
            let same = pos < self.count && self.path(pos)? == &path[..] && {
                let image_key = match self.entry(pos)? {
                    (_, Some((rec, extra))) => entry::drift_key(&EntryRef {
                        path,
                        rec: &rec,
                        extra: extra.as_ref(),
                    }),
                    (_, None) => None,
                };
                pos += 1;
                live_key.is_some() && live_key == image_key
            };
            if !same {
                unsettled.push(*i);
            }
        }
        unseen.extend(pos..self.count);
        unsettled.sort_unstable(); // in the tree's order, as a scan of it would give them
        Ok((unsettled, unseen))
    }
}

/// A decoded entry: its packed record and optional side data.
pub type Decoded = (Rec, Option<Extra>);

/// Why an index could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    Corrupt(Corrupt),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryKind;

    fn tree(paths: &[&[u8]]) -> Tree {
        let mut t = Tree::new();
        for (n, p) in paths.iter().enumerate() {
            let mut rec = Rec {
                kind: EntryKind::File,
                mode: 0o644,
                size: n as u64,
                ..Rec::default()
            };
            rec.set_sha([n as u8; 32]);
            t.push(p, rec, None);
        }
        t
    }

    fn written(t: &Tree, implicit: &[&[u8]], meta: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let mut items: Vec<Item<'_>> = t
            .iter()
            .map(|e| Item {
                path: e.path,
                layer: 1,
                entry: Some(e),
            })
            .collect();
        items.extend(implicit.iter().map(|p| Item {
            path: p,
            layer: 0,
            entry: None,
        }));
        items.sort_unstable_by(|a, b| a.path.cmp(b.path));
        write(&path, items.into_iter(), meta).unwrap();
        (dir, path)
    }

    use std::path::PathBuf;

    #[test]
    fn lookups_ranges_and_entries() {
        let t = tree(&[b"/b/x", b"/a", b"/b/\xff", b"/b", b"/ba", b"/c\xff\xff"]);
        let (_d, path) = written(&t, &[b"/d"], b"{\"m\":1}");
        let idx = BaselineIndex::open(&path).unwrap();
        assert_eq!(idx.len(), 7);
        assert_eq!(idx.meta().unwrap(), b"{\"m\":1}");
        assert_eq!(idx.find(b"/b").unwrap(), Some(1));
        assert_eq!(idx.find(b"/nope").unwrap(), None);
        let (lo, hi) = idx.prefix_range(b"/b/").unwrap();
        let below: Vec<&[u8]> = (lo..hi).map(|i| idx.path(i).unwrap()).collect();
        assert_eq!(below, vec![&b"/b/x"[..], b"/b/\xff"]);
        assert_eq!(idx.prefix_range(b"/c\xff").unwrap(), (5, 6));
        let (layer, e) = idx.entry(idx.find(b"/b/x").unwrap().unwrap()).unwrap();
        let (rec, _) = e.unwrap();
        assert_eq!((layer, rec.size, rec.sha()), (1, 0, Some(&[0; 32])));
        assert_eq!(idx.entry(6).unwrap(), (0, None));
    }

    #[test]
    fn drift_join_finds_changed_added_and_missing_paths() {
        let image = tree(&[b"/a", b"/b", b"/c"]);
        let (_d, path) = written(&image, &[b"/dir"], b"");
        let idx = BaselineIndex::open(&path).unwrap();
        // the same /a, another digest at /b, /c gone, /new added, the implicit /dir walked
        let mut live = Tree::new();
        for (p, e) in [(&b"/new"[..], 0usize), (b"/b", 0), (b"/a", 0), (b"/dir", 2)] {
            let mut rec = *image.get(e).unwrap().rec;
            if p == b"/b" {
                rec.set_sha([9; 32]);
            }
            live.push(p, rec, None);
        }
        let (unsettled, unseen) = idx.drift_join(&live, b"/").unwrap();
        assert_eq!(unsettled, vec![0, 1, 3]);
        let missing: Vec<&[u8]> = unseen.iter().map(|&p| idx.path(p).unwrap()).collect();
        assert_eq!(missing, vec![&b"/c"[..]]);
        // under a mount point every path is prefixed
        let (unsettled, unseen) = idx.drift_join(&live, b"/mnt/").unwrap();
        assert_eq!((unsettled.len(), unseen.len()), (4, 4));
    }

    #[test]
    fn duplicate_and_unsorted_paths_refused() {
        let dir = tempfile::tempdir().unwrap();
        for paths in [[&b"/a"[..], b"/a"], [b"/b", b"/a"]] {
            let t = tree(&paths);
            let items: Vec<Item<'_>> = t
                .iter()
                .map(|e| Item {
                    path: e.path,
                    layer: 0,
                    entry: Some(e),
                })
                .collect();
            let err = write(&dir.path().join("i"), items.into_iter(), b"").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn corruption_found_at_open_or_first_touch() {
        let names: Vec<Vec<u8>> = (0..20_000).map(|i| format!("/d/f{i:06}").into()).collect();
        let refs: Vec<&[u8]> = names.iter().map(|n| &n[..]).collect();
        let t = tree(&refs);
        let (_d, path) = written(&t, &[], b"meta");
        let good = std::fs::read(&path).unwrap();
        assert!(good.len() > 4 * BLOCK);
        let idx = BaselineIndex::open(&path).unwrap();
        assert!(idx.find(b"/d/f000123").unwrap().is_some());
        let (checked, total) = idx.blocks_checked();
        assert!(checked < total as u64 / 2, "{checked} of {total} blocks");
        let reopen = |data: &[u8]| {
            std::fs::write(&path, data).unwrap();
            BaselineIndex::open(&path)
        };
        // truncated, header flipped, digest table flipped: refused at open
        assert!(matches!(
            reopen(&good[..good.len() - 1]),
            Err(OpenError::Corrupt(_))
        ));
        for at in [3, 20, DIGEST_AT + 1, good.len() - 5] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(matches!(reopen(&bad), Err(OpenError::Corrupt(_))), "{at}");
        }
        // a data byte: found when its block is first read
        let mut bad = good.clone();
        bad[HEADER_LEN + 5] ^= 1; // the first path
        let idx = reopen(&bad).unwrap();
        assert!(idx.path(0).is_err());
        assert!(idx.path(0).is_err(), "a bad block stays bad");
        assert!(idx.find(b"/d/f019999").unwrap().is_some());
    }
}
