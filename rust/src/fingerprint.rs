//! The stat fingerprint of a walked directory (`drifttools.baseline.verification`): SHA-256
//! over one JSON line per entry, `[path, kind, inode, size, mode, uid, gid, mtime_ns,
//! ctime_ns, error]`, byte for byte what Python's `json.dumps` (ASCII only) writes, so that
//! fingerprints recorded before this was native still compare equal.

use crate::entry::Tree;
use crate::text;
use sha2::{Digest, Sha256};
use std::io::Write;

/// SHA-256 over the JSON lines of every entry of `tree`, in its order.
pub fn stat_fingerprint(tree: &Tree) -> [u8; 32] {
    let mut digest = Sha256::new();
    let mut line = Vec::with_capacity(256);
    for e in tree.iter() {
        let r = e.rec;
        line.clear();
        line.push(b'[');
        json_str(&mut line, &text::escape_path(e.path));
        line.extend_from_slice(b", ");
        json_str(&mut line, r.kind.as_str());
        let inode = r.walk_info().map(|w| w.0 as i128);
        let numbers = [
            inode,
            Some(r.size as i128),
            Some(r.mode as i128),
            Some(r.uid as i128),
            Some(r.gid as i128),
            Some(r.mtime_ns as i128),
            r.ctime().map(|c| c as i128),
        ];
        for n in numbers {
            match n {
                Some(v) => write!(line, ", {v}").expect("into a Vec"),
                None => line.extend_from_slice(b", null"),
            }
        }
        line.extend_from_slice(b", ");
        match e.error() {
            Some(error) => json_str(&mut line, error),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b"]\n");
        digest.update(&line);
    }
    digest.finalize().into()
}

/// A JSON string as Python's `json.dumps(..., ensure_ascii=True)` writes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("into a Vec");
                }
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::json_str;

    #[test]
    fn strings_escape_as_python_json_does() {
        let mut out = Vec::new();
        json_str(&mut out, "a\"\\\n\u{7f}é😀\u{1}");
        assert_eq!(out, br#""a\"\\\n\u007f\u00e9\ud83d\ude00\u0001""#.to_vec());
    }
}
