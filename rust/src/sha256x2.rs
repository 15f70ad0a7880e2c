//! SHA-256 for two digests over overlapping data.
//!
//! Indexing a layer needs the digest of the whole uncompressed stream and
//! the digest of every member. A tar member's content starts at a 512-byte
//! aligned stream offset, so each of its whole 64-byte blocks is also a
//! block of the stream: both digests compress the very same blocks there.
//! [`update_pair`] feeds such shared bytes to two [`Hasher`]s; where the
//! two are in phase (equal fill of their partial block) it advances both
//! states block by block in one pass, computing the message schedule once.
//! With SHA-NI one state's `sha256rnds2` instructions form a single
//! dependency chain, bound by their latency; a second, independent chain
//! runs in the gaps, up to the unit's throughput (on the Xeon we measured,
//! two digests cost about 1.5 times one instead of twice).

use sha2::digest::generic_array::{typenum::U64, GenericArray};

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Incremental SHA-256 (the same digests as `sha2::Sha256`).
#[derive(Clone)]
pub struct Hasher {
    state: [u32; 8],
    /// Partial block; its first `len % 64` bytes are pending.
    buf: [u8; 64],
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            state: H0,
            buf: [0; 64],
            len: 0,
        }
    }

    fn buffered(&self) -> usize {
        (self.len % 64) as usize
    }

    /// Complete the partial block from the front of `data`; returns the rest.
    fn top_up<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let have = self.buffered();
        if have == 0 {
            return data;
        }
        let n = data.len().min(64 - have);
        self.buf[have..have + n].copy_from_slice(&data[..n]);
        self.len += n as u64;
        if have + n == 64 {
            compress(&mut self.state, std::slice::from_ref(&self.buf));
        }
        &data[n..]
    }

    /// Buffer a tail shorter than a block (only when nothing is pending).
    fn stash(&mut self, tail: &[u8]) {
        debug_assert!(self.buffered() == 0 && tail.len() < 64);
        self.buf[..tail.len()].copy_from_slice(tail);
        self.len += tail.len() as u64;
    }

    pub fn update(&mut self, data: &[u8]) {
        let data = self.top_up(data);
        if data.is_empty() {
            return;
        }
        let (blocks, tail) = data.as_chunks::<64>();
        compress(&mut self.state, blocks);
        self.len += (blocks.len() * 64) as u64;
        self.stash(tail);
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let have = self.buffered();
        self.buf[have] = 0x80;
        self.buf[have + 1..].fill(0);
        if have >= 56 {
            compress(&mut self.state, std::slice::from_ref(&self.buf));
            self.buf.fill(0);
        }
        self.buf[56..].copy_from_slice(&bits.to_be_bytes());
        compress(&mut self.state, std::slice::from_ref(&self.buf));
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// `a.update(data); b.update(data)`, sharing the work where possible.
pub fn update_pair(a: &mut Hasher, b: &mut Hasher, data: &[u8]) {
    if a.buffered() != b.buffered() {
        a.update(data);
        b.update(data);
        return;
    }
    let rest = a.top_up(data);
    b.top_up(data);
    let (blocks, tail) = rest.as_chunks::<64>();
    compress_shared(&mut a.state, &mut b.state, blocks);
    a.len += (blocks.len() * 64) as u64;
    b.len += (blocks.len() * 64) as u64;
    a.update(tail);
    b.update(tail);
}

fn compress(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    // SAFETY: GenericArray<u8, U64> is a repr(transparent) wrapper of
    // [u8; 64], so the slices have the same layout (sha2's compress256
    // casts back the same way).
    let blocks: &[GenericArray<u8, U64>] =
        unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), blocks.len()) };
    sha2::compress256(state, blocks);
}

/// Advance both states over the same blocks.
fn compress_shared(a: &mut [u32; 8], b: &mut [u32; 8], blocks: &[[u8; 64]]) {
    #[cfg(target_arch = "x86_64")]
    if shani::detected() {
        // SAFETY: the CPU has the features the kernel is compiled for.
        unsafe { shani::compress_shared(a, b, blocks) };
        return;
    }
    compress_shared_fallback(a, b, blocks);
}

fn compress_shared_fallback(a: &mut [u32; 8], b: &mut [u32; 8], blocks: &[[u8; 64]]) {
    compress(a, blocks);
    compress(b, blocks);
}

#[cfg(target_arch = "x86_64")]
mod shani {
    //! Two-state kernel on the SHA extensions. Each state is kept as the
    //! (ABEF, CDGH) register pair `sha256rnds2` works on; a group of four
    //! rounds adds the round constants to four schedule words once and
    //! runs the two states' rounds alternately.

    use std::arch::x86_64::*;

    /// Round constants, four per group of rounds.
    const K: [[u32; 4]; 16] = [
        [0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5],
        [0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5],
        [0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3],
        [0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174],
        [0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc],
        [0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da],
        [0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7],
        [0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967],
        [0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13],
        [0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85],
        [0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3],
        [0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070],
        [0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5],
        [0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3],
        [0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208],
        [0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2],
    ];

    pub(super) fn detected() -> bool {
        // std caches the CPUID probe; this is a few loads.
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// One state as the register pair of `sha256rnds2`.
    #[derive(Clone, Copy)]
    struct Regs {
        abef: __m128i,
        cdgh: __m128i,
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load(s: &[u32; 8]) -> Regs {
        // SAFETY: s is 32 readable bytes; the loads are unaligned.
        let (dcba, hgfe) = unsafe {
            let p = s.as_ptr().cast::<__m128i>();
            (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
        };
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        Regs {
            abef: _mm_alignr_epi8(cdab, efgh, 8),
            cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
        }
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store(r: Regs, s: &mut [u32; 8]) {
        let feba = _mm_shuffle_epi32(r.abef, 0x1B);
        let dchg = _mm_shuffle_epi32(r.cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        // SAFETY: s is 32 writable bytes; the stores are unaligned.
        unsafe {
            let p = s.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(p, dcba);
            _mm_storeu_si128(p.add(1), hgef);
        }
    }

    /// The four big-endian message words at `block[16 * i..]`.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn words(block: &[u8; 64], i: usize) -> __m128i {
        let bswap = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
        let part = &block[16 * i..16 * i + 16];
        // SAFETY: part is 16 readable bytes; the load is unaligned.
        _mm_shuffle_epi8(unsafe { _mm_loadu_si128(part.as_ptr().cast()) }, bswap)
    }

    /// Next four schedule words from the previous sixteen (oldest first).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        _mm_sha256msg2_epu32(t, w3)
    }

    /// Rounds 4i..4i+4 on both states with schedule words `w`.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn rounds4(a: &mut Regs, b: &mut Regs, w: __m128i, i: usize) {
        // SAFETY: K[i] is 16 readable bytes; the load is unaligned.
        let wk = _mm_add_epi32(w, unsafe { _mm_loadu_si128(K[i].as_ptr().cast()) });
        let wk_hi = _mm_shuffle_epi32(wk, 0x0E);
        a.cdgh = _mm_sha256rnds2_epu32(a.cdgh, a.abef, wk);
        b.cdgh = _mm_sha256rnds2_epu32(b.cdgh, b.abef, wk);
        a.abef = _mm_sha256rnds2_epu32(a.abef, a.cdgh, wk_hi);
        b.abef = _mm_sha256rnds2_epu32(b.abef, b.cdgh, wk_hi);
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn add(r: Regs, saved: Regs) -> Regs {
        Regs {
            abef: _mm_add_epi32(r.abef, saved.abef),
            cdgh: _mm_add_epi32(r.cdgh, saved.cdgh),
        }
    }

    /// Advance `sa` and `sb` over the same `blocks`.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) fn compress_shared(sa: &mut [u32; 8], sb: &mut [u32; 8], blocks: &[[u8; 64]]) {
        let (mut a, mut b) = (load(sa), load(sb));
        for block in blocks {
            let (a0, b0) = (a, b);
            let [mut w0, mut w1, mut w2, mut w3] = [0, 1, 2, 3].map(|i| words(block, i));
            rounds4(&mut a, &mut b, w0, 0);
            rounds4(&mut a, &mut b, w1, 1);
            rounds4(&mut a, &mut b, w2, 2);
            rounds4(&mut a, &mut b, w3, 3);
            for i in [4, 8, 12] {
                w0 = schedule(w0, w1, w2, w3);
                rounds4(&mut a, &mut b, w0, i);
                w1 = schedule(w1, w2, w3, w0);
                rounds4(&mut a, &mut b, w1, i + 1);
                w2 = schedule(w2, w3, w0, w1);
                rounds4(&mut a, &mut b, w2, i + 2);
                w3 = schedule(w3, w0, w1, w2);
                rounds4(&mut a, &mut b, w3, i + 3);
            }
            a = add(a, a0);
            b = add(b, b0);
        }
        store(a, sa);
        store(b, sb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Deterministic pseudo-random bytes (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn reference(d: &[u8]) -> [u8; 32] {
        Sha256::digest(d).into()
    }

    /// Cut points of `0..n` from a seed, ascending.
    fn cuts(n: usize, seed: u64, count: usize) -> Vec<usize> {
        let mut c: Vec<usize> = noise(count * 8, seed)
            .chunks(8)
            .map(|b| (u64::from_le_bytes(b.try_into().unwrap()) % (n as u64 + 1)) as usize)
            .collect();
        c.push(0);
        c.push(n);
        c.sort_unstable();
        c
    }

    #[test]
    fn matches_sha2_for_any_split() {
        let data = noise(10_000, 7);
        let mut lens: Vec<usize> = (0..300).collect();
        lens.extend([511, 512, 513, 1000, 4095, 4096, 4097, 9_999, 10_000]);
        lens.extend(cuts(10_000, 3, 40));
        for (seed, &n) in lens.iter().enumerate() {
            let d = &data[..n];
            let mut whole = Hasher::new();
            whole.update(d);
            assert_eq!(whole.finalize(), reference(d), "len {n}");
            let mut split = Hasher::new();
            for w in cuts(n, seed as u64, 1 + seed % 9).windows(2) {
                split.update(&d[w[0]..w[1]]);
            }
            assert_eq!(split.finalize(), reference(d), "len {n} split");
        }
    }

    #[test]
    fn pair_matches_two_hashers() {
        let data = noise(10_000, 11);
        for seed in 0..300u64 {
            let c = cuts(4_000, seed, 3);
            // Before the shared part each hasher takes a prefix of its
            // own; for even seeds the two end up in phase.
            let pa = c[1];
            let pb = if seed % 2 == 0 {
                pa % 64 + 64 * (seed as usize % 3)
            } else {
                c[2] % 200
            };
            let mut a = Hasher::new();
            a.update(&data[..pa]);
            let mut b = Hasher::new();
            b.update(&data[5_000..5_000 + pb]);
            let (mut a2, mut b2) = (a.clone(), b.clone());
            let shared = &data[pa..pa + c[3] % 6_000];
            for w in cuts(shared.len(), seed + 1000, seed as usize % 6).windows(2) {
                update_pair(&mut a, &mut b, &shared[w[0]..w[1]]);
                a2.update(&shared[w[0]..w[1]]);
                b2.update(&shared[w[0]..w[1]]);
            }
            assert_eq!(a.finalize(), a2.finalize(), "seed {seed}");
            assert_eq!(b.finalize(), b2.finalize(), "seed {seed}");
        }
    }

    fn blocks(n: usize, seed: u64) -> Vec<[u8; 64]> {
        noise(64 * n, seed)
            .chunks_exact(64)
            .map(|c| c.try_into().unwrap())
            .collect()
    }

    #[test]
    fn shared_compression_is_two_compressions() {
        for n in [0, 1, 2, 3, 17, 100] {
            let bl = blocks(n, n as u64 + 5);
            let (mut a, mut b) = (H0, [1, 2, 3, 4, 5, 6, 7, 8]);
            let (mut a2, mut b2) = (a, b);
            compress_shared(&mut a, &mut b, &bl);
            compress(&mut a2, &bl);
            compress(&mut b2, &bl);
            assert_eq!((a, b), (a2, b2), "{n} blocks");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn shani_kernel_matches_fallback() {
        if !shani::detected() {
            eprintln!("no SHA-NI here; kernel not exercised");
            return;
        }
        for n in [1, 2, 9, 64] {
            let bl = blocks(n, 99 + n as u64);
            let (mut a, mut b) = ([0x0123_4567u32; 8], H0);
            let (mut a2, mut b2) = (a, b);
            // SAFETY: features detected above.
            unsafe { shani::compress_shared(&mut a, &mut b, &bl) };
            compress_shared_fallback(&mut a2, &mut b2, &bl);
            assert_eq!((a, b), (a2, b2), "{n} blocks");
        }
    }
}
