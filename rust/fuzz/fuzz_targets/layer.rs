//! The layer reader (plain, gzip, zstd detected by magic) on arbitrary bytes.
//! The first byte picks the wrapping: 0 = the rest gzip-compressed, 1 = the
//! rest zstd-compressed (valid compression of a fuzzed tar, with a second
//! member/frame to exercise multi-member streams), anything else = the bytes
//! as they are (corrupt compressed data, bombs). Panics, hangs and
//! out-of-memory are findings; errors are expected.
#![no_main]

use drifttools_native::layer::{read_layer, LayerOptions};
use flate2::{write::GzEncoder, Compression};
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::sync::atomic::AtomicBool;

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(part).expect("in memory");
        out.extend(e.finish().expect("in memory"));
    }
    out
}

fn zstd(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend(zstd::bulk::compress(part, 1).expect("in memory"));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = rest.split_at(rest.len() / 2);
    let input = match mode {
        0 => gzip(&[a, b]),
        1 => zstd(&[a, b]),
        _ => data.to_vec(),
    };
    let opts = LayerOptions {
        max_entries: 100_000,
        max_path_len: 4096,
        max_bytes: 64 << 20,
    };
    let _ = read_layer(&input[..], &opts, &AtomicBool::new(false));
});
