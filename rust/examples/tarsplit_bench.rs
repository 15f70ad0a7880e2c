//! Time `read_tar_split_paths` on a stored layer (warm page cache):
//! `cargo run --release --example tarsplit_bench -- TAR_SPLIT LAYER_DIR [RUNS]`.
//! Prints each run's time, the median, the stream digest and a digest of
//! the whole index (entries and errors), to compare implementations.

use drifttools_native::layer::LayerOptions;
use drifttools_native::tarsplit::read_tar_split_paths;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: tarsplit_bench TAR_SPLIT LAYER_DIR [RUNS]");
        std::process::exit(2);
    }
    let runs: usize = args.get(3).map_or(5, |r| r.parse().expect("RUNS"));
    let cancel = AtomicBool::new(false);
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let li = read_tar_split_paths(
            Path::new(&args[1]),
            Path::new(&args[2]),
            &LayerOptions::default(),
            &cancel,
        )
        .expect("read");
        let s = t.elapsed().as_secs_f64();
        println!("{s:.3} s");
        times.push(s);
        if times.len() == runs {
            println!(
                "sha256:{} size {} entries {} errors {} index {}",
                hex::encode(li.uncompressed_sha256),
                li.uncompressed_size,
                li.entries.len(),
                li.entries.error_count(),
                hex::encode(Sha256::digest(li.to_bytes()))
            );
        }
    }
    times.sort_by(f64::total_cmp);
    println!("median {:.3} s", times[times.len() / 2]);
}
