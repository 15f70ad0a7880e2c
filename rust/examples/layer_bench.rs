//! Index a layer file and print the seconds taken: `layer_bench FILE [RUNS]`.

use drifttools_native::layer::{read_layer, LayerOptions};
use std::fs::File;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: layer_bench FILE [RUNS]");
    let runs: usize = args.next().map_or(1, |r| r.parse().expect("RUNS"));
    for _ in 0..runs {
        let t = Instant::now();
        let f = File::open(&path).expect("open");
        let li = read_layer(f, &LayerOptions::default(), &AtomicBool::new(false)).expect("read");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{secs:.3} s  {} entries  {}",
            li.entries.len(),
            hex::encode(li.uncompressed_sha256)
        );
    }
}
