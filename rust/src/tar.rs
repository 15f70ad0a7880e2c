//! Streaming tar parser (ustar / GNU / PAX) with bounded memory.
//!
//! The parser reads headers and hashes member contents from a [`TarInput`];
//! nothing is extracted. Supported: 512-byte headers with checksum check
//! (signed and unsigned sums), ustar prefix, octal and GNU base-256 numbers,
//! PAX 'x' / 'g' records, GNU 'L' / 'K' long names, and the usual types.

use crate::entry::{EntryKind, Extra, Rec, Tree};
use crate::sha256x2::Hasher;
use crate::text::escape_path;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors of layer reading.
#[derive(Debug)]
pub enum LayerError {
    /// Reading the source failed.
    Io(io::Error),
    /// The data is not a valid archive / compressed stream.
    Corrupt(String),
    /// A cap was exceeded.
    Cap(String),
    /// Cancelled through the cancel flag.
    Cancelled,
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerError::Io(e) => write!(f, "{e}"),
            LayerError::Corrupt(m) => write!(f, "corrupt layer: {m}"),
            LayerError::Cap(m) => write!(f, "layer exceeds cap: {m}"),
            LayerError::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl From<io::Error> for LayerError {
    fn from(e: io::Error) -> Self {
        LayerError::Io(e)
    }
}

fn corrupt(what: impl std::fmt::Display, off: u64) -> LayerError {
    LayerError::Corrupt(format!("{what} at offset {off}"))
}

/// A source of uncompressed archive bytes.
pub trait TarInput {
    /// Fill `buf`; returns fewer bytes only at end of stream.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, LayerError>;
    /// Pass the next `n` bytes to `f` (in pieces); returns how many were
    /// passed (fewer only at end of stream).
    fn feed(&mut self, n: u64, f: &mut dyn FnMut(&[u8])) -> Result<u64, LayerError>;
    /// Hash the next `n` bytes (a member's content) into `member`; returns
    /// how many were hashed (fewer only at end of stream).
    fn hash_member(&mut self, n: u64, member: &mut Hasher) -> Result<u64, LayerError>;
    /// Bytes consumed so far.
    fn offset(&self) -> u64;
}

/// Limits of the parser.
#[derive(Clone, Copy, Debug)]
pub struct TarLimits {
    pub max_entries: u64,
    pub max_path_len: usize,
}

impl Default for TarLimits {
    fn default() -> Self {
        TarLimits {
            max_entries: 10_000_000,
            max_path_len: 4096,
        }
    }
}

#[derive(Default, Clone)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<i64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

impl Pax {
    fn set_xattr(&mut self, k: Vec<u8>, v: Vec<u8>) {
        if let Some(slot) = self.xattrs.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            self.xattrs.push((k, v));
        }
    }
}

/// How the error of a member named outside the layer's root begins (the merge keeps it out).
pub const UNSAFE_PATH: &str = "unsafe path in archive: ";
/// How the error of a hardlink whose target is outside the layer's root begins.
pub const UNSAFE_LINK: &str = "unsafe hardlink target in archive: ";

/// Normalise an archive path to "/a/b". Returns (path, had "..").
/// An empty result ("/") is the root.
pub fn normalize(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut comps: Vec<&[u8]> = Vec::new();
    let mut dotdot = false;
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                dotdot = true;
                comps.pop();
            }
            _ => comps.push(c),
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    for c in comps {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    (out, dotdot)
}

fn cstr_field(f: &[u8]) -> &[u8] {
    match f.iter().position(|&b| b == 0) {
        Some(i) => &f[..i],
        None => f,
    }
}

/// Parse a numeric header field: octal (space/NUL padded) or GNU base-256.
fn parse_num(field: &[u8], what: &str, off: u64) -> Result<i64, LayerError> {
    if field.is_empty() {
        return Ok(0);
    }
    if field[0] & 0x80 != 0 {
        // GNU base-256: big-endian two's complement, the top marker bit
        // replaced by a copy of the sign bit.
        let first = if field[0] & 0x40 != 0 {
            field[0]
        } else {
            field[0] & 0x7f
        };
        let mut v: i128 = first as i8 as i128;
        for &b in &field[1..] {
            v = v * 256 + b as i128;
            if v > i64::MAX as i128 || v < i64::MIN as i128 {
                return Err(corrupt(format!("bad numeric field {what} (overflow)"), off));
            }
        }
        return Ok(v as i64);
    }
    let mut i = 0;
    while i < field.len() && (field[i] == b' ' || field[i] == 0) {
        i += 1;
    }
    let mut v: i64 = 0;
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        v = v
            .checked_mul(8)
            .map(|x| x + (field[i] - b'0') as i64)
            .ok_or_else(|| corrupt(format!("bad numeric field {what} (overflow)"), off))?;
        i += 1;
    }
    if field[i..].iter().any(|&b| b != b' ' && b != 0) {
        return Err(corrupt(format!("bad numeric field {what}"), off));
    }
    Ok(v)
}

fn parse_unsigned(field: &[u8], what: &str, off: u64) -> Result<u64, LayerError> {
    let v = parse_num(field, what, off)?;
    u64::try_from(v).map_err(|_| corrupt(format!("bad numeric field {what} (negative)"), off))
}

fn parse_id(field: &[u8], what: &str, off: u64) -> Result<u32, LayerError> {
    let v = parse_num(field, what, off)?;
    u32::try_from(v).map_err(|_| corrupt(format!("bad numeric field {what} (out of range)"), off))
}

fn checksum_ok(h: &[u8; 512]) -> bool {
    let stored = match parse_num(&h[148..156], "chksum", 0) {
        Ok(v) => v,
        Err(_) => return false,
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    stored == unsigned || stored == signed
}

fn parse_dec_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// PAX time "sec[.frac]" (sec may be negative) in nanoseconds.
fn parse_pax_time(v: &[u8]) -> Option<i64> {
    let (neg, v) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = if int.is_empty() && !frac.is_empty() {
        0
    } else {
        parse_dec_u64(int)?
    };
    let mut ns: i64 = 0;
    for i in 0..9 {
        ns = ns * 10 + frac.get(i).map_or(0, |d| (d - b'0') as i64);
    }
    let total = i64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(ns)?;
    Some(if neg { -total } else { total })
}

/// Parse PAX records into `pax`.
fn parse_pax(data: &[u8], pax: &mut Pax, lim: &TarLimits, off: u64) -> Result<(), LayerError> {
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break; // some writers pad with NULs
        }
        let sp = rest
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or_else(|| corrupt("bad PAX record (no length)", off))?;
        let len = parse_dec_u64(&rest[..sp]).ok_or_else(|| corrupt("bad PAX record length", off))?
            as usize;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(corrupt("bad PAX record", off));
        }
        let rec = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| corrupt("bad PAX record (no '=')", off))?;
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        let bad = |what: &str| corrupt(format!("bad PAX {what} value"), off);
        match key {
            b"path" => {
                if value.len() > lim.max_path_len {
                    return Err(LayerError::Cap(format!(
                        "path of {} bytes is longer than max_path_len {}",
                        value.len(),
                        lim.max_path_len
                    )));
                }
                pax.path = Some(value.to_vec());
            }
            b"linkpath" => {
                if value.len() > lim.max_path_len {
                    return Err(LayerError::Cap(format!(
                        "link path of {} bytes is longer than max_path_len {}",
                        value.len(),
                        lim.max_path_len
                    )));
                }
                pax.linkpath = Some(value.to_vec());
            }
            b"size" => pax.size = Some(parse_dec_u64(value).ok_or_else(|| bad("size"))?),
            b"uid" => {
                pax.uid = Some(
                    parse_dec_u64(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad("uid"))?,
                )
            }
            b"gid" => {
                pax.gid = Some(
                    parse_dec_u64(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad("gid"))?,
                )
            }
            b"mtime" => pax.mtime = Some(parse_pax_time(value).ok_or_else(|| bad("mtime"))?),
            _ if key.starts_with(b"SCHILY.xattr.") => {
                pax.set_xattr(key[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec());
            }
            _ if key.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
    }
    Ok(())
}

fn pad(size: u64) -> u64 {
    (512 - size % 512) % 512
}

fn skip(inp: &mut dyn TarInput, n: u64, off: u64) -> Result<(), LayerError> {
    if inp.feed(n, &mut |_| {})? != n {
        return Err(corrupt("truncated archive (member data)", off));
    }
    Ok(())
}

/// Read a whole (small, already bounded) member body plus padding.
fn read_body(inp: &mut dyn TarInput, size: u64, off: u64) -> Result<Vec<u8>, LayerError> {
    let mut v = vec![0u8; size as usize];
    if inp.read_full(&mut v)? != v.len() {
        return Err(corrupt("truncated archive (extended header)", off));
    }
    skip(inp, pad(size), off)?;
    Ok(v)
}

/// Parse a whole archive from `inp`. Stops after the end-of-archive marker.
pub fn parse(
    inp: &mut dyn TarInput,
    lim: &TarLimits,
    cancel: &AtomicBool,
) -> Result<Tree, LayerError> {
    parse_recording(inp, lim, cancel, None)
}

/// [`parse`], also pushing to `offsets` (when given) the stream offset of
/// each returned entry's data, i.e. just after its header(s): one value per
/// entry, strictly increasing.
pub fn parse_recording(
    inp: &mut dyn TarInput,
    lim: &TarLimits,
    cancel: &AtomicBool,
    mut offsets: Option<&mut Vec<u64>>,
) -> Result<Tree, LayerError> {
    let mut tree = Tree::new();
    let mut h = [0u8; 512];
    let mut local = Pax::default();
    let mut gnu_name: Option<Vec<u8>> = None;
    let mut gnu_link: Option<Vec<u8>> = None;
    let mut global = Pax::default();
    let pax_cap: u64 = (1 << 20) + 2 * lim.max_path_len as u64 + 1024;
    let mut entries: u64 = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(LayerError::Cancelled);
        }
        let off = inp.offset();
        let n = inp.read_full(&mut h)?;
        if n == 0 {
            return Err(corrupt("truncated archive (no end-of-archive marker)", off));
        }
        if n < 512 {
            return Err(corrupt("truncated archive (partial header)", off));
        }
        if h.iter().all(|&b| b == 0) {
            let n = inp.read_full(&mut h)?;
            if n < 512 || h.iter().all(|&b| b == 0) {
                // two zero blocks, or one zero block then end of stream
                return Ok(tree);
            }
            return Err(corrupt("header after a single zero block", off + 512));
        }
        if !checksum_ok(&h) {
            return Err(corrupt("bad header checksum", off));
        }
        let typeflag = h[156];
        let hdr_size = parse_unsigned(&h[124..136], "size", off)?;
        match typeflag {
            b'x' | b'g' => {
                if hdr_size > pax_cap {
                    return Err(LayerError::Cap(format!(
                        "PAX header of {hdr_size} bytes at offset {off}"
                    )));
                }
                let body = read_body(inp, hdr_size, off)?;
                let target = if typeflag == b'x' {
                    &mut local
                } else {
                    &mut global
                };
                parse_pax(&body, target, lim, off)?;
                if typeflag == b'g' {
                    // keep it simple: path-like and size keys are per entry only
                    global.path = None;
                    global.linkpath = None;
                    global.size = None;
                }
                continue;
            }
            b'L' | b'K' => {
                if hdr_size > lim.max_path_len as u64 + 1 {
                    return Err(LayerError::Cap(format!(
                        "GNU long {} of {hdr_size} bytes is longer than max_path_len {} at offset {off}",
                        if typeflag == b'L' { "name" } else { "link" },
                        lim.max_path_len
                    )));
                }
                let body = read_body(inp, hdr_size, off)?;
                let v = cstr_field(&body).to_vec();
                if typeflag == b'L' {
                    gnu_name = Some(v);
                } else {
                    gnu_link = Some(v);
                }
                continue;
            }
            _ => {}
        }

        // ---- a real member
        let magic = &h[257..263];
        let raw_path: Vec<u8> = if let Some(p) = local.path.take() {
            p
        } else if let Some(p) = gnu_name.take() {
            p
        } else {
            let name = cstr_field(&h[0..100]);
            let prefix = if magic == b"ustar\0" {
                cstr_field(&h[345..500])
            } else {
                b""
            };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(name);
                p
            }
        };
        gnu_name = None;
        let raw_link: Vec<u8> = local
            .linkpath
            .take()
            .or_else(|| gnu_link.take())
            .unwrap_or_else(|| cstr_field(&h[157..257]).to_vec());
        gnu_link = None;
        if raw_path.len() > lim.max_path_len {
            return Err(LayerError::Cap(format!(
                "path of {} bytes is longer than max_path_len {} at offset {off}",
                raw_path.len(),
                lim.max_path_len
            )));
        }
        let size = local.size.unwrap_or(hdr_size);
        let mut rec = Rec {
            mode: (parse_unsigned(&h[100..108], "mode", off)? & 0o7777) as u16,
            uid: match local.uid.or(global.uid) {
                Some(u) => u,
                None => parse_id(&h[108..116], "uid", off)?,
            },
            gid: match local.gid.or(global.gid) {
                Some(g) => g,
                None => parse_id(&h[116..124], "gid", off)?,
            },
            mtime_ns: match local.mtime.or(global.mtime) {
                Some(t) => t,
                None => parse_num(&h[136..148], "mtime", off)?.saturating_mul(1_000_000_000),
            },
            size,
            ..Rec::default()
        };
        let mut x = Extra::default();
        let mut xattrs = global.xattrs.clone();
        for (k, v) in std::mem::take(&mut local.xattrs) {
            if let Some(slot) = xattrs.iter_mut().find(|(n, _)| *n == k) {
                slot.1 = v;
            } else {
                xattrs.push((k, v));
            }
        }
        x.xattrs = xattrs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let pax_sparse = std::mem::take(&mut local.sparse);
        local = Pax::default();

        let (path, dotdot) = normalize(&raw_path);
        let mut errors: Vec<String> = Vec::new();
        // ".." or an absolute name: an extractor would write outside the layer's root
        if dotdot || (raw_path.first() == Some(&b'/') && !path.is_empty()) {
            errors.push(format!("{UNSAFE_PATH}{}", escape_path(&raw_path)));
        }
        // content to consume after the header, and whether to hash it
        let mut content = 0u64;
        let mut hash = false;
        match typeflag {
            b'0' | 0 | b'7' => {
                rec.kind = EntryKind::File;
                content = size;
                if pax_sparse {
                    errors.push("unsupported: GNU sparse".into());
                } else {
                    hash = true;
                }
            }
            b'1' => {
                rec.kind = EntryKind::Hardlink;
                rec.size = 0;
                let (t, dd) = normalize(&raw_link);
                if dd {
                    errors.push(format!("{UNSAFE_LINK}{}", escape_path(&raw_link)));
                }
                x.target = Some(t.into());
            }
            b'2' => {
                rec.kind = EntryKind::Symlink;
                x.target = Some(raw_link.into());
            }
            b'3' | b'4' => {
                rec.kind = if typeflag == b'3' {
                    EntryKind::Char
                } else {
                    EntryKind::Block
                };
                rec.rdev_major = parse_id(&h[329..337], "devmajor", off)?;
                rec.rdev_minor = parse_id(&h[337..345], "devminor", off)?;
            }
            b'5' => rec.kind = EntryKind::Dir,
            b'6' => rec.kind = EntryKind::Fifo,
            b'S' => {
                rec.kind = EntryKind::File;
                errors.push("unsupported: GNU sparse".into());
                content = size;
                if let Ok(real) = parse_unsigned(&h[483..495], "realsize", off) {
                    rec.size = real;
                }
                // extended sparse headers follow the header
                let mut extended = h[482] != 0;
                let mut ext = [0u8; 512];
                while extended {
                    let eoff = inp.offset();
                    if inp.read_full(&mut ext)? != 512 {
                        return Err(corrupt("truncated archive (sparse header)", eoff));
                    }
                    extended = ext[504] != 0;
                }
            }
            t => {
                rec.kind = EntryKind::Unknown;
                errors.push(format!("unsupported tar entry type {}", escape_path(&[t])));
                content = size;
            }
        }
        if !errors.is_empty() {
            x.error = Some(errors.join("; ").into());
        }
        let data_off = inp.offset();
        if hash {
            let mut hasher = Hasher::new();
            if inp.hash_member(content, &mut hasher)? != content {
                return Err(corrupt("truncated archive (member data)", data_off));
            }
            rec.set_sha(hasher.finalize());
        } else if content > 0 {
            skip(inp, content, data_off)?;
        }
        skip(inp, pad(content), data_off)?;
        if path.is_empty() {
            continue; // the root "./" itself
        }
        entries += 1;
        if entries > lim.max_entries {
            return Err(LayerError::Cap(format!(
                "more than max_entries {} entries",
                lim.max_entries
            )));
        }
        if let Some(o) = offsets.as_deref_mut() {
            o.push(data_off);
        }
        tree.push(&path, rec, Some(x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num(b"0000644\0", "m", 0).unwrap(), 0o644);
        assert_eq!(parse_num(b"  644 \0", "m", 0).unwrap(), 0o644);
        assert_eq!(parse_num(b"\0\0\0\0", "m", 0).unwrap(), 0);
        assert!(parse_num(b"12x", "m", 0).is_err());
        assert!(parse_num(b"12 3", "m", 0).is_err());
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[4..].copy_from_slice(&(10u64 << 32).to_be_bytes());
        assert_eq!(parse_num(&b256, "size", 0).unwrap(), 10i64 << 32);
        let neg = [0xffu8; 12];
        assert_eq!(parse_num(&neg, "mtime", 0).unwrap(), -1);
        let mut neg2 = [0xffu8; 12];
        neg2[11] = 0xfe;
        assert_eq!(parse_num(&neg2, "mtime", 0).unwrap(), -2);
        let mut big = [0x80u8; 12];
        big[1] = 0xff;
        assert!(parse_num(&big, "size", 0).is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(parse_pax_time(b"12.123456789123"), Some(12_123_456_789));
        assert_eq!(parse_pax_time(b"-1.25"), Some(-1_250_000_000));
        assert_eq!(parse_pax_time(b"7"), Some(7_000_000_000));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize(b"./usr//bin/./ls"),
            (b"/usr/bin/ls".to_vec(), false)
        );
        assert_eq!(normalize(b"/etc/"), (b"/etc".to_vec(), false));
        assert_eq!(normalize(b"./"), (b"".to_vec(), false));
        assert_eq!(
            normalize(b"../../etc/passwd"),
            (b"/etc/passwd".to_vec(), true)
        );
        assert_eq!(normalize(b"a/../b"), (b"/b".to_vec(), true));
    }
}
