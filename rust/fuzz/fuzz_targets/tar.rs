//! The tar parser on arbitrary bytes (plain archives: compressed input is the
//! `layer` target's). Any panic, hang or out-of-memory is a finding; errors
//! are expected.
#![no_main]

use drifttools_native::layer::{read_layer, LayerOptions};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::AtomicBool;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return;
    }
    let opts = LayerOptions {
        max_entries: 100_000,
        max_path_len: 4096,
        max_bytes: 64 << 20,
    };
    let _ = read_layer(data, &opts, &AtomicBool::new(false));
});
