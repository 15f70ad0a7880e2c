//! Walk a directory (e.g. one holding a single large file) and print the
//! seconds taken and the bytes hashed: `hash_bench DIR [RUNS]`.

use drifttools_native::walk::{walk, Progress, WalkOptions};
use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: hash_bench DIR [RUNS]");
    let runs: usize = args.next().map_or(1, |r| r.parse().expect("RUNS"));
    for _ in 0..runs {
        let progress = Progress::default();
        let t = Instant::now();
        let tree = walk(Path::new(&dir), &WalkOptions::default(), &progress)
            .expect("walk")
            .tree;
        let secs = t.elapsed().as_secs_f64();
        let bytes = progress.bytes_hashed.into_inner();
        println!("{secs:.3} s  {} entries  {bytes} bytes", tree.len());
    }
}
