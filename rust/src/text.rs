//! Reversible text form of Linux path bytes.
//!
//! Valid UTF-8 is kept as is, except that a backslash becomes `\\`; every byte
//! that is not part of a valid UTF-8 sequence becomes `\xNN` (lowercase hex).
//! [`unescape_path`] reverses it exactly, so any byte string round-trips.

use std::fmt;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Escape raw path bytes into the reversible text form.
pub fn escape_path(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped_str(&mut out, s);
                return out;
            }
            Err(e) => {
                let good = e.valid_up_to();
                // SAFETY-free: from_utf8 on the valid prefix cannot fail.
                push_escaped_str(&mut out, std::str::from_utf8(&rest[..good]).unwrap_or(""));
                let bad = e.error_len().unwrap_or(rest.len() - good);
                for &b in &rest[good..good + bad] {
                    out.push('\\');
                    out.push('x');
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 15) as usize] as char);
                }
                rest = &rest[good + bad..];
            }
        }
    }
}

fn push_escaped_str(out: &mut String, s: &str) {
    if !s.contains('\\') {
        out.push_str(s);
        return;
    }
    for (i, part) in s.split('\\').enumerate() {
        if i > 0 {
            out.push_str("\\\\");
        }
        out.push_str(part);
    }
}

/// Error from [`unescape_path`]: a malformed escape sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnescapeError {
    pub position: usize,
    pub reason: &'static str,
}

impl fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed escape at character offset {}: {}",
            self.position, self.reason
        )
    }
}

impl std::error::Error for UnescapeError {}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Reverse [`escape_path`]: `\\` becomes a backslash, `\xNN` becomes byte NN.
pub fn unescape_path(text: &str) -> Result<Vec<u8>, UnescapeError> {
    let src = text.as_bytes();
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        let b = src[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match src.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hi = src.get(i + 2).copied().and_then(hex_val);
                let lo = src.get(i + 3).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push((h << 4) | l);
                        i += 4;
                    }
                    _ => {
                        return Err(UnescapeError {
                            position: i,
                            reason: "\\x must be followed by two hex digits",
                        })
                    }
                }
            }
            Some(_) => {
                return Err(UnescapeError {
                    position: i,
                    reason: "unknown escape (only \\\\ and \\xNN are valid)",
                })
            }
            None => {
                return Err(UnescapeError {
                    position: i,
                    reason: "trailing backslash",
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Small deterministic PRNG (xorshift64*) for property-style tests.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn plain_utf8_kept() {
        assert_eq!(escape_path(b"/etc/passwd"), "/etc/passwd");
        assert_eq!(
            escape_path("/caf\u{e9}/\u{1F600}".as_bytes()),
            "/caf\u{e9}/\u{1F600}"
        );
        assert_eq!(escape_path(b"a\nb\tc"), "a\nb\tc");
    }

    #[test]
    fn backslash_and_invalid() {
        assert_eq!(escape_path(b"a\\b"), "a\\\\b");
        assert_eq!(escape_path(b"\xff\xfe/x"), "\\xff\\xfe/x");
        assert_eq!(escape_path(b"\xc3"), "\\xc3");
        assert_eq!(escape_path(b"\xc3\xa9"), "\u{e9}");
        assert_eq!(escape_path(b"\xe2\x82"), "\\xe2\\x82");
        assert_eq!(unescape_path("a\\\\b").unwrap(), b"a\\b");
        assert_eq!(unescape_path("\\xFF").unwrap(), b"\xff");
    }

    #[test]
    fn all_byte_values_round_trip() {
        for b in 0u8..=255 {
            let raw = [b'/', b, b'x', b];
            let t = escape_path(&raw);
            assert_eq!(unescape_path(&t).unwrap(), raw, "byte {b:#x} -> {t:?}");
        }
        let all: Vec<u8> = (0u8..=255).collect();
        assert_eq!(unescape_path(&escape_path(&all)).unwrap(), all);
    }

    #[test]
    fn random_round_trip() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let alphabet: &[u8] = b"\\x/a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\x00\x80";
        for _ in 0..20_000 {
            let len = rng.below(24) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(2) == 0 {
                        alphabet[rng.below(alphabet.len() as u64) as usize]
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            let t = escape_path(&raw);
            assert_eq!(unescape_path(&t).unwrap(), raw);
            // escaping is idempotent on its own output form
            assert_eq!(escape_path(&unescape_path(&t).unwrap()), t);
        }
    }

    #[test]
    fn malformed_escapes() {
        assert!(unescape_path("\\").is_err());
        assert!(unescape_path("a\\n").is_err());
        assert!(unescape_path("\\x4").is_err());
        assert!(unescape_path("\\xzz").is_err());
        assert!(unescape_path("\\x").is_err());
    }
}
