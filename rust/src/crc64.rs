//! CRC-64 with the ISO polynomial as Go's `hash/crc64` computes it
//! (`crc64.MakeTable(crc64.ISO)`; catalogue name CRC-64/GO-ISO: reflected,
//! init and xorout all ones). tar-split stores it per file. Slice-by-16
//! tables built at compile time, and carry-less multiplication folding
//! (PCLMULQDQ, detected at run time) for long inputs on x86-64.

const POLY: u64 = 0xD800_0000_0000_0000; // reversed x^64 + x^4 + x^3 + x + 1

const fn make_tables() -> [[u64; 256]; 16] {
    let mut t = [[0u64; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLES: [[u64; 256]; 16] = make_tables();

/// x^n mod P in normal bit order (bit i = coefficient of x^i).
const fn xpow_mod(n: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        let carry = r >> 63;
        r <<= 1;
        if carry != 0 {
            r ^= 0x1b;
        }
        i += 1;
    }
    r
}

/// Folding constants for a distance of `d` bits, in reflected bit order:
/// (x^(d+63) mod P, x^(d-1) mod P). A reflected carry-less product carries
/// an extra factor x, hence the -1.
const fn fold_consts(d: u32) -> (u64, u64) {
    (
        xpow_mod(d + 63).reverse_bits(),
        xpow_mod(d - 1).reverse_bits(),
    )
}

const K128: (u64, u64) = fold_consts(128);
const K1024: (u64, u64) = fold_consts(1024);

/// Table-driven update of the (inverted) register.
fn update_table(mut crc: u64, data: &[u8]) -> u64 {
    let t = &TABLES;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let a = crc ^ u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
        crc = t[15][(a & 0xff) as usize]
            ^ t[14][((a >> 8) & 0xff) as usize]
            ^ t[13][((a >> 16) & 0xff) as usize]
            ^ t[12][((a >> 24) & 0xff) as usize]
            ^ t[11][((a >> 32) & 0xff) as usize]
            ^ t[10][((a >> 40) & 0xff) as usize]
            ^ t[9][((a >> 48) & 0xff) as usize]
            ^ t[8][(a >> 56) as usize]
            ^ t[7][(b & 0xff) as usize]
            ^ t[6][((b >> 8) & 0xff) as usize]
            ^ t[5][((b >> 16) & 0xff) as usize]
            ^ t[4][((b >> 24) & 0xff) as usize]
            ^ t[3][((b >> 32) & 0xff) as usize]
            ^ t[2][((b >> 40) & 0xff) as usize]
            ^ t[1][((b >> 48) & 0xff) as usize]
            ^ t[0][(b >> 56) as usize];
    }
    for &byte in chunks.remainder() {
        crc = t[0][((crc ^ byte as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(target_arch = "x86_64")]
mod clmul {
    use super::{update_table, K1024, K128};
    use std::arch::x86_64::*;

    /// S * x^d + D for a 128-bit S (lo half = higher-degree coefficients).
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold(s: __m128i, k: __m128i, d: __m128i) -> __m128i {
        let lo = _mm_clmulepi64_si128(s, k, 0x00);
        let hi = _mm_clmulepi64_si128(s, k, 0x11);
        _mm_xor_si128(_mm_xor_si128(lo, hi), d)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(p: &[u8]) -> __m128i {
        assert!(p.len() >= 16);
        // SAFETY: 16 readable bytes checked above; unaligned load.
        unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
    }

    /// Update the (inverted) register over `data` (at least 128 bytes).
    #[target_feature(enable = "pclmulqdq,sse2")]
    pub(super) fn update(crc: u64, data: &[u8]) -> u64 {
        debug_assert!(data.len() >= 128);
        let k1024 = _mm_set_epi64x(K1024.1 as i64, K1024.0 as i64);
        let k128 = _mm_set_epi64x(K128.1 as i64, K128.0 as i64);
        let mut x = [_mm_setzero_si128(); 8];
        for (i, xi) in x.iter_mut().enumerate() {
            *xi = load(&data[16 * i..]);
        }
        // the register enters as the first 8 message bytes (reflected CRC)
        x[0] = _mm_xor_si128(x[0], _mm_set_epi64x(0, crc as i64));
        let mut rest = &data[128..];
        while rest.len() >= 128 {
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = fold(*xi, k1024, load(&rest[16 * i..]));
            }
            rest = &rest[128..];
        }
        let mut acc = x[0];
        for xi in &x[1..] {
            acc = fold(acc, k128, *xi);
        }
        while rest.len() >= 16 {
            acc = fold(acc, k128, load(rest));
            rest = &rest[16..];
        }
        // `acc` now stands for everything read so far as 16 message bytes
        // after a zero register.
        let mut bytes = [0u8; 16];
        // SAFETY: 16 writable bytes; unaligned store.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), acc) };
        update_table(update_table(0, &bytes), rest)
    }
}

fn update_any(crc: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 256 && std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU supports the enabled features (checked above).
        return unsafe { clmul::update(crc, data) };
    }
    update_table(crc, data)
}

/// Running CRC-64/GO-ISO.
#[derive(Clone, Copy, Debug)]
pub struct Crc64 {
    state: u64, // inverted
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64 {
    pub fn new() -> Crc64 {
        Crc64 { state: !0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.state = update_any(self.state, data);
    }

    pub fn value(&self) -> u64 {
        !self.state
    }

    /// Big-endian bytes, as Go's `Sum(nil)` gives them.
    pub fn sum(&self) -> [u8; 8] {
        self.value().to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitwise(data: &[u8]) -> u64 {
        let mut crc = !0u64;
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn check_value_and_splits() {
        let mut c = Crc64::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xb909_56c7_75a4_1001);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 131 % 251) as u8).collect();
        let want = bitwise(&data);
        for split in [0, 1, 15, 16, 17, 4095, 9999, 10_000] {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), want, "split {split}");
        }
        assert_eq!(Crc64::new().value(), 0);
    }

    #[test]
    fn folding_matches_the_tables() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for start in [0usize, 1, 3, 8, 15] {
            for len in [256usize, 257, 271, 383, 384, 1000, 4096, 65_537, 99_000] {
                let d = &data[start..start + len];
                assert_eq!(update_any(!0, d), update_table(!0, d), "{start} {len}");
                assert_eq!(
                    update_any(12345, d),
                    update_table(12345, d),
                    "{start} {len}"
                );
            }
        }
        let mut c = Crc64::new();
        c.update(&data[..300]);
        c.update(&data[300..]);
        assert_eq!(!c.state, bitwise(&data));
    }
}
