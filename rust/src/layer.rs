//! Layer reading: compression detection, decompression and hashing pipeline.
//!
//! A producer thread reads the source (hashing the raw bytes), decompresses
//! and hands 1 MiB chunks to the parser thread, which parses the archive
//! and hashes the members and, for compressed input, the uncompressed
//! stream in the same pass (see [`crate::sha256x2`]). Memory is bounded by
//! the channel depth whatever the layer size.

use crate::entry::{sealed, unseal, Reader, Tree, FORMAT_VERSION, LAYER_MAGIC};
use crate::hash::AlignedBuf;
use crate::sha256x2::{update_pair, Hasher};
pub use crate::tar::LayerError;
use crate::tar::{parse_recording, TarInput, TarLimits};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 6;

/// Compression of a layer stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Zstd = 2,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Detect by magic bytes.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
        {
            // zstd frame, or a skippable frame
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Options of [`read_layer`].
#[derive(Clone, Copy, Debug)]
pub struct LayerOptions {
    pub max_entries: u64,
    pub max_path_len: usize,
    pub max_bytes: u64,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            max_entries: 10_000_000,
            max_path_len: 4096,
            max_bytes: 1 << 40,
        }
    }
}

/// Result of indexing one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerIndex {
    pub entries: Tree,
    pub compression: Compression,
    pub compressed_sha256: [u8; 32],
    pub compressed_size: u64,
    pub uncompressed_sha256: [u8; 32],
    pub uncompressed_size: u64,
}

impl LayerIndex {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(&self.entries)
    }

    /// Encode with `entries` in place of `self.entries`.
    pub fn encode(&self, entries: &Tree) -> Vec<u8> {
        self.write_encoded(entries, Vec::new())
            .expect("a Vec takes every write")
    }

    /// Write the encoding (with `entries` in place of `self.entries`) to `out`, streamed.
    pub fn write_encoded<W: Write>(&self, entries: &Tree, out: W) -> io::Result<W> {
        sealed(out, |out| {
            out.write_all(LAYER_MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            out.write_all(&[self.compression as u8])?;
            out.write_all(&self.compressed_sha256)?;
            out.write_all(&self.compressed_size.to_le_bytes())?;
            out.write_all(&self.uncompressed_sha256)?;
            out.write_all(&self.uncompressed_size.to_le_bytes())?;
            entries.write_payload(out)
        })
    }

    pub fn from_bytes(data: &[u8]) -> Result<LayerIndex, String> {
        let body = unseal(data, LAYER_MAGIC)?;
        let mut r = Reader::new(body);
        let compression = match r.u8()? {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Zstd,
            c => return Err(format!("bad compression code {c}")),
        };
        let mut compressed_sha256 = [0u8; 32];
        compressed_sha256.copy_from_slice(r.take(32)?);
        let compressed_size = r.u64()?;
        let mut uncompressed_sha256 = [0u8; 32];
        uncompressed_sha256.copy_from_slice(r.take(32)?);
        let uncompressed_size = r.u64()?;
        let entries = Tree::decode_payload(&mut r)?;
        r.finish()?;
        Ok(LayerIndex {
            entries,
            compression,
            compressed_sha256,
            compressed_size,
            uncompressed_sha256,
            uncompressed_size,
        })
    }
}

/// Hash and count of the raw bytes; `failed` marks an error of the source
/// itself (as opposed to the decoder).
struct RawStats {
    hasher: Sha256,
    total: u64,
    failed: bool,
}

fn read_raw<R: Read>(inner: &mut R, st: &mut RawStats, dst: &mut [u8]) -> io::Result<usize> {
    loop {
        match inner.read(dst) {
            Ok(n) => {
                st.hasher.update(&dst[..n]);
                st.total += n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                st.failed = true;
                return Err(e);
            }
        }
    }
}

/// Buffered reader over the raw source (aligned buffer, big reads) that
/// hashes every byte read.
struct RawSource<R: Read> {
    inner: R,
    st: RawStats,
    buf: AlignedBuf,
    pos: usize,
    filled: usize,
}

impl<R: Read> RawSource<R> {
    fn new(inner: R) -> Self {
        RawSource {
            inner,
            st: RawStats {
                hasher: Sha256::new(),
                total: 0,
                failed: false,
            },
            buf: AlignedBuf::new(CHUNK),
            pos: 0,
            filled: 0,
        }
    }

    /// Make at least `n` bytes available unless the source ends first.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.filled - self.pos < n {
            if self.pos > 0 {
                self.buf
                    .as_mut_slice()
                    .copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            }
            let got = read_raw(
                &mut self.inner,
                &mut self.st,
                &mut self.buf.as_mut_slice()[self.filled..],
            )?;
            if got == 0 {
                break;
            }
            self.filled += got;
        }
        Ok(&self.buf.as_slice()[self.pos..self.filled])
    }

    /// Read and hash everything left.
    fn drain(&mut self) -> io::Result<()> {
        self.pos = 0;
        self.filled = 0;
        while read_raw(&mut self.inner, &mut self.st, self.buf.as_mut_slice())? != 0 {}
        Ok(())
    }
}

impl<R: Read> Read for RawSource<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled && dst.len() >= self.buf.len() {
            return read_raw(&mut self.inner, &mut self.st, dst);
        }
        let avail = self.fill_buf()?;
        let n = avail.len().min(dst.len());
        dst[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for RawSource<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
            self.filled = read_raw(&mut self.inner, &mut self.st, self.buf.as_mut_slice())?;
        }
        Ok(&self.buf.as_slice()[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.filled);
    }
}

/// One piece of the uncompressed stream.
pub(crate) struct Chunk {
    pub(crate) buf: AlignedBuf,
    pub(crate) len: usize,
}

/// Producer side of the chunk pipeline.
pub(crate) struct ChunkSink {
    tx: SyncSender<Chunk>,
    recycle: Receiver<Chunk>,
}

impl ChunkSink {
    /// An empty chunk of 1 MiB (recycled when possible).
    pub(crate) fn fresh(&self) -> Chunk {
        let mut c = self.recycle.try_recv().unwrap_or_else(|_| Chunk {
            buf: AlignedBuf::new(CHUNK),
            len: 0,
        });
        c.len = 0;
        c
    }

    /// Hand a chunk to the parser; false when the parser has stopped.
    pub(crate) fn send(&self, c: Chunk) -> bool {
        self.tx.send(c).is_ok()
    }
}

struct ProducerResult {
    compression: Compression,
    compressed_sha256: [u8; 32],
    compressed_size: u64,
    uncompressed_size: u64,
}

/// Fill `buf` from `dec`; returns the bytes read and the error that stopped it.
fn fill_chunk(dec: &mut dyn Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match dec.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

fn produce<R: Read>(
    src: R,
    opts: &LayerOptions,
    cancel: &AtomicBool,
    sink: ChunkSink,
    detected: &Mutex<Option<Compression>>,
) -> Result<ProducerResult, LayerError> {
    let mut raw = RawSource::new(src);
    let compression = Compression::detect(raw.peek(4)?);
    *detected.lock().unwrap_or_else(|p| p.into_inner()) = Some(compression);
    let mut total: u64 = 0;
    let mut receiver_gone = false;
    {
        let mut dec: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut raw),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut raw)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(&mut raw)?),
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(LayerError::Cancelled);
            }
            let mut chunk = sink.fresh();
            let (n, err) = fill_chunk(&mut *dec, chunk.buf.as_mut_slice());
            chunk.len = n;
            if let Some(e) = err {
                drop(dec);
                if raw.st.failed || compression == Compression::None {
                    return Err(LayerError::Io(e));
                }
                let what = if e.kind() == io::ErrorKind::UnexpectedEof {
                    "truncated stream".to_string()
                } else {
                    e.to_string()
                };
                return Err(LayerError::Corrupt(format!(
                    "{} data: {what} at offset {}",
                    compression.as_str(),
                    total + n as u64
                )));
            }
            if chunk.len == 0 {
                break;
            }
            total += chunk.len as u64;
            if total > opts.max_bytes {
                return Err(LayerError::Cap(format!(
                    "more than max_bytes {} bytes of decompressed data",
                    opts.max_bytes
                )));
            }
            if !sink.send(chunk) {
                receiver_gone = true;
                break;
            }
        }
    }
    if !receiver_gone {
        raw.drain()?;
    }
    Ok(ProducerResult {
        compression,
        compressed_sha256: raw.st.hasher.finalize().into(),
        compressed_size: raw.st.total,
        uncompressed_size: total,
    })
}

/// Parser-side view of the chunk stream. With `stream`, every byte
/// consumed is hashed into it.
struct ChunkReader {
    rx: Receiver<Chunk>,
    recycle: SyncSender<Chunk>,
    cur: Option<Chunk>,
    pos: usize,
    offset: u64,
    stream: Option<Hasher>,
}

impl ChunkReader {
    /// Current unread bytes, fetching the next chunk when needed; empty at end.
    fn avail(&mut self) -> &[u8] {
        loop {
            if let Some(c) = &self.cur {
                if self.pos < c.len {
                    break;
                }
            }
            if let Some(old) = self.cur.take() {
                let _ = self.recycle.try_send(old);
            }
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = Some(c);
                    self.pos = 0;
                }
                Err(_) => return &[],
            }
        }
        let c = self.cur.as_ref().expect("chunk present");
        &c.buf.as_slice()[self.pos..c.len]
    }

    /// Consume the next `n` bytes (fewer only at end of stream), passing
    /// them in pieces to `f` along with the stream hasher, which `f` must
    /// update with them; returns how many were consumed.
    fn consume(&mut self, n: u64, mut f: impl FnMut(&[u8], Option<&mut Hasher>)) -> u64 {
        let mut done = 0u64;
        while done < n {
            let k = (self.avail().len() as u64).min(n - done) as usize;
            if k == 0 {
                break;
            }
            let c = self.cur.as_ref().expect("chunk present");
            f(
                &c.buf.as_slice()[self.pos..self.pos + k],
                self.stream.as_mut(),
            );
            self.pos += k;
            self.offset += k as u64;
            done += k as u64;
        }
        done
    }

    fn drain(&mut self) {
        self.consume(u64::MAX, hash_stream_only);
    }
}

fn hash_stream_only(piece: &[u8], stream: Option<&mut Hasher>) {
    if let Some(s) = stream {
        s.update(piece);
    }
}

impl TarInput for ChunkReader {
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, LayerError> {
        let mut done = 0;
        self.consume(buf.len() as u64, |piece, stream| {
            buf[done..done + piece.len()].copy_from_slice(piece);
            done += piece.len();
            hash_stream_only(piece, stream);
        });
        Ok(done)
    }

    fn feed(&mut self, n: u64, f: &mut dyn FnMut(&[u8])) -> Result<u64, LayerError> {
        Ok(self.consume(n, |piece, stream| {
            hash_stream_only(piece, stream);
            f(piece);
        }))
    }

    fn hash_member(&mut self, n: u64, member: &mut Hasher) -> Result<u64, LayerError> {
        Ok(self.consume(n, |piece, stream| match stream {
            Some(s) => update_pair(s, member, piece),
            None => member.update(piece),
        }))
    }

    fn offset(&self) -> u64 {
        self.offset
    }
}

/// Run a producer (on its own thread) that sends the uncompressed stream
/// in chunks, and parse it on the calling thread. `hash_stream` is asked
/// once the first chunk arrived (the producer may have decided by then)
/// whether the parser side must hash the whole stream (together with the
/// members, see [`crate::sha256x2`]); that digest is returned. With `offsets`, the data offset of every parsed entry is
/// recorded (see [`crate::tar::parse_recording`]).
pub(crate) fn run_pipeline<T: Send>(
    produce: impl FnOnce(ChunkSink) -> Result<T, LayerError> + Send,
    limits: &TarLimits,
    cancel: &AtomicBool,
    hash_stream: &(dyn Fn() -> bool + Sync),
    offsets: Option<&mut Vec<u64>>,
) -> Result<(T, Tree, Option<[u8; 32]>), LayerError> {
    let (tx, rx) = sync_channel::<Chunk>(DEPTH);
    let (rtx, rrx) = sync_channel::<Chunk>(DEPTH + 2);
    std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("drift-layer-read".into())
            .spawn_scoped(s, move || produce(ChunkSink { tx, recycle: rrx }))
            .map_err(LayerError::Io)?;
        let mut reader = ChunkReader {
            rx,
            recycle: rtx,
            cur: None,
            pos: 0,
            offset: 0,
            stream: None,
        };
        // Wait for the first chunk so the producer's decision is known.
        let _ = reader.avail();
        if hash_stream() {
            reader.stream = Some(Hasher::new());
        }
        let parsed = parse_recording(&mut reader, limits, cancel, offsets);
        if parsed.is_ok() {
            reader.drain();
        }
        let stream_hash = reader.stream.take().map(Hasher::finalize);
        drop(reader); // unblocks a producer waiting to send
        let produced = producer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (produced, parsed) {
            (Err(LayerError::Cancelled), _) | (_, Err(LayerError::Cancelled)) => {
                Err(LayerError::Cancelled)
            }
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(p), Ok(tree)) => Ok((p, tree, stream_hash)),
        }
    })
}

/// Index a layer stream. `src` yields the raw (possibly compressed) bytes.
pub fn read_layer<R: Read + Send>(
    src: R,
    opts: &LayerOptions,
    cancel: &AtomicBool,
) -> Result<LayerIndex, LayerError> {
    let detected = Mutex::new(None);
    let limits = TarLimits {
        max_entries: opts.max_entries,
        max_path_len: opts.max_path_len,
    };
    // The stream hash is only needed on the parser side when the data was
    // compressed; otherwise it equals the raw hash, computed on the producer
    // in parallel with the member digests. (Joining the two on the parser,
    // where two digests cost about 1.5 times one, made the parser the
    // bottleneck for plain input: 0.63 s instead of 0.46 s for 427 MiB.)
    let compressed = || {
        detected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|c| c != Compression::None)
    };
    let (p, tree, stream_hash) = run_pipeline(
        |sink| produce(src, opts, cancel, sink, &detected),
        &limits,
        cancel,
        &compressed,
        None,
    )?;
    Ok(LayerIndex {
        entries: tree,
        compression: p.compression,
        compressed_sha256: p.compressed_sha256,
        compressed_size: p.compressed_size,
        uncompressed_sha256: stream_hash.unwrap_or(p.compressed_sha256),
        uncompressed_size: p.uncompressed_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryKind;
    use std::io::{Cursor, Write};

    /// Minimal tar writer for tests.
    #[derive(Default)]
    struct TarW {
        out: Vec<u8>,
    }

    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{:0w$o}\0", v, w = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }

    impl TarW {
        fn header(
            &mut self,
            name: &[u8],
            typeflag: u8,
            size: u64,
            link: &[u8],
            f: impl FnOnce(&mut [u8; 512]),
        ) {
            let mut h = [0u8; 512];
            h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
            octal(&mut h[100..108], 0o644);
            octal(&mut h[108..116], 1000);
            octal(&mut h[116..124], 1001);
            octal(&mut h[124..136], size);
            octal(&mut h[136..148], 1_700_000_000);
            h[156] = typeflag;
            h[157..157 + link.len()].copy_from_slice(link);
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            f(&mut h);
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| b as u32).sum();
            let s = format!("{sum:06o}\0 ");
            h[148..156].copy_from_slice(s.as_bytes());
            self.out.extend_from_slice(&h);
        }
        fn data(&mut self, d: &[u8]) {
            self.out.extend_from_slice(d);
            let p = (512 - d.len() % 512) % 512;
            self.out.extend(std::iter::repeat_n(0u8, p));
        }
        fn file(&mut self, name: &[u8], d: &[u8]) {
            self.header(name, b'0', d.len() as u64, b"", |_| {});
            self.data(d);
        }
        fn pax(&mut self, records: &[(&str, &[u8])]) {
            let mut body = Vec::new();
            for (k, v) in records {
                let base = k.len() + v.len() + 3;
                let mut len = base + 1;
                while len != base + len.to_string().len() {
                    len = base + len.to_string().len();
                }
                body.extend_from_slice(format!("{len} {k}=").as_bytes());
                body.extend_from_slice(v);
                body.push(b'\n');
            }
            self.header(b"././@PaxHeader", b'x', body.len() as u64, b"", |_| {});
            self.data(&body);
        }
        fn finish(mut self) -> Vec<u8> {
            self.out.extend(std::iter::repeat_n(0u8, 1024));
            self.out
        }
    }

    fn read(data: &[u8]) -> Result<LayerIndex, LayerError> {
        read_layer(
            Cursor::new(data.to_vec()),
            &LayerOptions::default(),
            &AtomicBool::new(false),
        )
    }

    fn sha(d: &[u8]) -> [u8; 32] {
        Sha256::digest(d).into()
    }

    fn sample() -> Vec<u8> {
        let mut w = TarW::default();
        w.header(b"./", b'5', 0, b"", |_| {});
        w.header(b"./usr/", b'5', 0, b"", |_| {});
        w.file(b"./usr/hello.txt", b"hello world");
        w.header(b"usr/link", b'2', 0, b"../etc/passwd", |_| {});
        w.header(b"usr/hard", b'1', 0, b"./usr/hello.txt", |_| {});
        w.header(b"dev/null", b'3', 0, b"", |h| {
            octal(&mut h[329..337], 1);
            octal(&mut h[337..345], 3);
        });
        w.header(b"dev/sda", b'4', 0, b"", |h| {
            octal(&mut h[329..337], 8);
            octal(&mut h[337..345], 0);
        });
        w.header(b"run/fifo", b'6', 0, b"", |_| {});
        w.finish()
    }

    #[test]
    fn plain_archive() {
        let data = sample();
        let li = read(&data).unwrap();
        assert_eq!(li.compression, Compression::None);
        assert_eq!(li.compressed_sha256, sha(&data));
        assert_eq!(li.uncompressed_sha256, sha(&data));
        assert_eq!(li.uncompressed_size, data.len() as u64);
        let t = &li.entries;
        let paths: Vec<&[u8]> = t.iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                &b"/usr"[..],
                b"/usr/hello.txt",
                b"/usr/link",
                b"/usr/hard",
                b"/dev/null",
                b"/dev/sda",
                b"/run/fifo"
            ]
        );
        let f = t.get(1).unwrap();
        assert_eq!(f.rec.kind, EntryKind::File);
        assert_eq!(f.rec.sha(), Some(&sha(b"hello world")));
        assert_eq!(
            (f.rec.size, f.rec.mode, f.rec.uid, f.rec.gid),
            (11, 0o644, 1000, 1001)
        );
        assert_eq!(f.rec.mtime_ns, 1_700_000_000_000_000_000);
        assert_eq!(t.get(2).unwrap().target(), Some(&b"../etc/passwd"[..]));
        let h = t.get(3).unwrap();
        assert_eq!(h.rec.kind, EntryKind::Hardlink);
        assert_eq!(h.target(), Some(&b"/usr/hello.txt"[..]));
        assert!(h.rec.sha().is_none());
        let n = t.get(4).unwrap();
        assert_eq!(
            (n.rec.kind, n.rec.rdev_major, n.rec.rdev_minor),
            (EntryKind::Char, 1, 3)
        );
        assert_eq!(t.get(5).unwrap().rec.kind, EntryKind::Block);
        assert_eq!(t.get(6).unwrap().rec.kind, EntryKind::Fifo);
        assert_eq!(t.error_count(), 0);
        // round trip
        assert_eq!(LayerIndex::from_bytes(&li.to_bytes()).unwrap(), li);
        let mut bad = li.to_bytes();
        bad[20] ^= 1;
        assert!(LayerIndex::from_bytes(&bad).is_err());
    }

    #[test]
    fn pax_and_gnu_long_names() {
        let long = format!("./{}/file", "d".repeat(200));
        let mut w = TarW::default();
        w.pax(&[
            ("path", long.as_bytes()),
            ("mtime", b"1700000000.25"),
            ("uid", b"4000000"),
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
            ("SCHILY.xattr.user.x", b"y"),
        ]);
        w.file(b"short-name-ignored", b"pax content");
        let glong = format!("{}/gnu", "g".repeat(150));
        w.header(b"././@LongLink", b'L', glong.len() as u64 + 1, b"", |h| {
            h[257..265].copy_from_slice(b"ustar  \0")
        });
        let mut body = glong.clone().into_bytes();
        body.push(0);
        w.data(&body);
        w.file(b"truncated-name", b"gnu content");
        let llong = format!("/{}", "t".repeat(300));
        w.header(b"././@LongLink", b'K', llong.len() as u64, b"", |_| {});
        w.data(llong.as_bytes());
        w.header(b"sym", b'2', 0, b"ignored", |_| {});
        // ustar prefix
        w.header(b"name", b'0', 0, b"", |h| {
            h[345..351].copy_from_slice(b"prefix")
        });
        let data = w.finish();
        let li = read(&data).unwrap();
        let t = &li.entries;
        assert_eq!(t.len(), 4);
        let p = t.get(0).unwrap();
        assert_eq!(p.path, format!("/{}/file", "d".repeat(200)).as_bytes());
        assert_eq!(p.rec.mtime_ns, 1_700_000_000_250_000_000);
        assert_eq!(p.rec.uid, 4_000_000);
        assert_eq!(p.xattrs().len(), 2);
        assert_eq!(&*p.xattrs()[0].0, b"security.capability");
        assert_eq!(p.rec.sha(), Some(&sha(b"pax content")));
        let g = t.get(1).unwrap();
        assert_eq!(g.path, format!("/{glong}").as_bytes());
        assert_eq!(g.rec.sha(), Some(&sha(b"gnu content")));
        assert!(
            g.xattrs().is_empty(),
            "PAX records must not leak to the next entry"
        );
        assert_eq!(g.rec.uid, 1000);
        assert_eq!(t.get(2).unwrap().target(), Some(llong.as_bytes()));
        assert_eq!(t.get(3).unwrap().path, b"/prefix/name");
    }

    #[test]
    fn base256_size_and_unsafe_paths() {
        let mut w = TarW::default();
        let content = vec![7u8; 1000];
        w.header(b"b256", b'0', 0, b"", |h| {
            h[124..136].fill(0);
            h[124] = 0x80;
            h[134..136].copy_from_slice(&1000u16.to_be_bytes());
        });
        w.data(&content);
        w.file(b"../../etc/evil", b"x");
        w.header(b"weird", b'Z', 3, b"", |_| {});
        w.data(b"abc");
        w.header(b"sparse", b'S', 5, b"", |_| {});
        w.data(b"12345");
        w.file(b"after", b"ok");
        w.file(b"/etc/absolute", b"x");
        let li = read(&w.finish()).unwrap();
        let t = &li.entries;
        assert_eq!(t.get(0).unwrap().rec.size, 1000);
        assert_eq!(t.get(0).unwrap().rec.sha(), Some(&sha(&content)));
        let e = t.get(1).unwrap();
        assert_eq!(e.path, b"/etc/evil");
        assert_eq!(e.error(), Some("unsafe path in archive: ../../etc/evil"));
        let u = t.get(2).unwrap();
        assert_eq!(u.rec.kind, EntryKind::Unknown);
        assert!(u.error().unwrap().contains("unsupported tar entry type Z"));
        assert_eq!(t.get(3).unwrap().error(), Some("unsupported: GNU sparse"));
        assert!(t.get(3).unwrap().rec.sha().is_none());
        assert_eq!(t.get(4).unwrap().rec.sha(), Some(&sha(b"ok")));
        let a = t.get(5).unwrap();
        assert_eq!(a.path, b"/etc/absolute");
        assert_eq!(a.error(), Some("unsafe path in archive: /etc/absolute"));
        assert_eq!(t.error_count(), 4);
    }

    fn err_text(r: Result<LayerIndex, LayerError>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn corrupt_archives() {
        let data = sample();
        let mut bad = data.clone();
        bad[512 + 3] ^= 0x20; // second header's name
        let e = err_text(read(&bad));
        assert!(
            e.starts_with("corrupt layer: bad header checksum at offset 512"),
            "{e}"
        );
        let e = err_text(read(&data[..1536 + 5]));
        assert!(e.contains("truncated"), "{e}");
        let e = err_text(read(&data[..data.len() - 1024]));
        assert!(e.contains("no end-of-archive marker"), "{e}");
        // one zero block then EOF is tolerated
        assert!(read(&data[..data.len() - 512]).is_ok());
        let mut w = TarW::default();
        w.header(b"f", b'0', 0, b"", |h| {
            h[124..136].copy_from_slice(b"12345678x01\0")
        });
        assert!(err_text(read(&w.finish())).contains("bad numeric field size"));
        assert!(err_text(read(b"")).contains("corrupt layer"));
        assert!(err_text(read(&[0x55u8; 700])).contains("corrupt layer"));
    }

    #[test]
    fn caps() {
        let data = sample();
        let opts = LayerOptions {
            max_entries: 3,
            ..Default::default()
        };
        let e = read_layer(Cursor::new(data.clone()), &opts, &AtomicBool::new(false))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("layer exceeds cap: more than max_entries 3"),
            "{e}"
        );
        let opts = LayerOptions {
            max_bytes: 2000,
            ..Default::default()
        };
        let e = read_layer(Cursor::new(data), &opts, &AtomicBool::new(false))
            .err()
            .unwrap();
        assert!(matches!(e, LayerError::Cap(_)), "{e}");
        // a GNU long name record far over the cap is refused before reading
        let mut w = TarW::default();
        w.header(b"././@LongLink", b'L', 0, b"", |h| {
            h[124..136].fill(0);
            h[124] = 0x80;
            h[130] = 1;
        });
        let e = err_text(read(&w.finish()));
        assert!(e.starts_with("layer exceeds cap: GNU long name"), "{e}");
        let mut w = TarW::default();
        w.pax(&[("path", "x".repeat(5000).as_bytes())]);
        w.file(b"x", b"");
        assert!(err_text(read(&w.finish())).starts_with("layer exceeds cap: path of 5000 bytes"));
        let mut w = TarW::default();
        w.header(b"p", b'x', 1 << 30, b"", |_| {});
        assert!(err_text(read(&w.finish())).starts_with("layer exceeds cap: PAX header"));
    }

    #[test]
    fn gzip_and_zstd() {
        let data = sample();
        // multi-member gzip
        let half = data.len() / 2;
        let mut gz = Vec::new();
        for part in [&data[..half], &data[half..]] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(part).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        let li = read(&gz).unwrap();
        assert_eq!(li.compression, Compression::Gzip);
        assert_eq!(li.compressed_sha256, sha(&gz));
        assert_eq!(li.compressed_size, gz.len() as u64);
        assert_eq!(li.uncompressed_sha256, sha(&data));
        assert_eq!(li.uncompressed_size, data.len() as u64);
        assert_eq!(li.entries.len(), 7);
        // multi-frame zstd
        let mut zs = Vec::new();
        for part in [&data[..half], &data[half..]] {
            zs.extend(zstd::encode_all(part, 3).unwrap());
        }
        let li = read(&zs).unwrap();
        assert_eq!(li.compression, Compression::Zstd);
        assert_eq!(li.compressed_sha256, sha(&zs));
        assert_eq!(li.uncompressed_sha256, sha(&data));
        assert_eq!(li.entries.len(), 7);
        // truncated / corrupt compressed streams
        let e = err_text(read(&gz[..gz.len() - 10]));
        assert!(e.starts_with("corrupt layer: gzip"), "{e}");
        let e = err_text(read(&zs[..zs.len() - 10]));
        assert!(e.starts_with("corrupt layer: zstd"), "{e}");
        let mut bad = gz.clone();
        bad[30] ^= 0xff;
        assert!(err_text(read(&bad)).starts_with("corrupt layer"));
    }

    #[test]
    fn big_stream_and_trailing_padding() {
        let mut w = TarW::default();
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
        w.file(b"big", &big);
        for i in 0..3000 {
            w.file(format!("f{i}").as_bytes(), format!("{i}").as_bytes());
        }
        let mut data = w.finish();
        data.extend(std::iter::repeat_n(0u8, 9 * 1024)); // record padding
        data.extend_from_slice(b"trailing junk");
        let li = read(&data).unwrap();
        assert_eq!(li.entries.len(), 3001);
        assert_eq!(li.entries.get(0).unwrap().rec.sha(), Some(&sha(&big)));
        assert_eq!(li.uncompressed_sha256, sha(&data));
        assert_eq!(li.uncompressed_size, data.len() as u64);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let gz = enc.finish().unwrap();
        let li = read(&gz).unwrap();
        assert_eq!(li.uncompressed_sha256, sha(&data));
        assert_eq!(li.compressed_sha256, sha(&gz));
    }

    #[test]
    fn member_and_stream_digests_for_every_compression() {
        let sizes = [
            0,
            1,
            63,
            64,
            65,
            511,
            512,
            513,
            (3 << 20) + 77,
            1 << 20,
            100,
        ];
        let mut w = TarW::default();
        let mut contents = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let d: Vec<u8> = (0..n as u32)
                .map(|j| ((j + i as u32).wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            if i % 3 == 0 {
                w.pax(&[("path", format!("./pax/{i}").as_bytes())]);
            }
            w.file(format!("f{i}").as_bytes(), &d);
            contents.push(d);
        }
        w.header(b"hard", b'1', 0, b"f1", |_| {});
        let data = w.finish();
        let plain = read(&data).unwrap();
        let t = &plain.entries;
        assert_eq!(t.len(), sizes.len() + 1);
        for (i, d) in contents.iter().enumerate() {
            let e = t.get(i).unwrap();
            let name = if i % 3 == 0 { "pax/" } else { "f" };
            assert_eq!(e.path, format!("/{name}{i}").as_bytes());
            assert_eq!(e.rec.sha(), Some(&sha(d)), "member {i}");
        }
        assert_eq!(t.get(sizes.len()).unwrap().target(), Some(&b"/f1"[..]));
        assert_eq!(plain.uncompressed_sha256, sha(&data));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        for packed in [
            gz.finish().unwrap(),
            zstd::encode_all(&data[..], 1).unwrap(),
        ] {
            // the stream digest is computed with the members' here
            let li = read(&packed).unwrap();
            assert_eq!(li.entries, plain.entries);
            assert_eq!(li.uncompressed_sha256, sha(&data));
            assert_eq!(li.uncompressed_size, data.len() as u64);
            assert_eq!(li.compressed_sha256, sha(&packed));
            assert_eq!(li.compressed_size, packed.len() as u64);
        }
    }

    #[test]
    fn cancel() {
        let data = sample();
        let r = read_layer(
            Cursor::new(data),
            &LayerOptions::default(),
            &AtomicBool::new(true),
        );
        assert!(matches!(r, Err(LayerError::Cancelled)));
    }
}
