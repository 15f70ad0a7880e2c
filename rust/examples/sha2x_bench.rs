//! Time two SHA-256 digests of the same data: the shared two-state kernel
//! against two sequential `sha2` passes. `sha2x_bench [GIB] [RUNS]`.

use drifttools_native::sha256x2::{update_pair, Hasher};
use sha2::{Digest, Sha256};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let gib: usize = args.next().map_or(1, |g| g.parse().expect("GIB"));
    let runs: usize = args.next().map_or(3, |r| r.parse().expect("RUNS"));
    // 64 MiB hashed over and over: the data stays cheap to hold.
    let buf: Vec<u8> = (0..64usize << 20).map(|i| (i * 131 % 251) as u8).collect();
    let passes = gib * 16;
    for _ in 0..runs {
        let t = Instant::now();
        let (mut a, mut b) = (Hasher::new(), Hasher::new());
        for _ in 0..passes {
            update_pair(&mut a, &mut b, &buf);
        }
        let (da, db) = (a.finalize(), b.finalize());
        let shared = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (mut a, mut b) = (Sha256::new(), Sha256::new());
        for _ in 0..passes {
            a.update(&buf);
        }
        for _ in 0..passes {
            b.update(&buf);
        }
        let (ra, rb): ([u8; 32], [u8; 32]) = (a.finalize().into(), b.finalize().into());
        let twice = t.elapsed().as_secs_f64();
        assert!(da == ra && db == rb, "digests differ");
        println!(
            "{gib} GiB, two digests: shared kernel {shared:.3} s, sha2 twice {twice:.3} s ({:.2}x)",
            twice / shared
        );
    }
}
