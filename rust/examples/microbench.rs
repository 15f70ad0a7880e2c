use sha2::{Digest, Sha256};
use std::time::Instant;
fn main() {
    let data: Vec<u8> = (0..256u32 << 20)
        .map(|i| (i * 2654435761u32 >> 13) as u8)
        .collect();
    let t = Instant::now();
    let d = Sha256::digest(&data);
    let s = t.elapsed().as_secs_f64();
    println!(
        "sha256 1 thread {:.2} GB/s {:x}",
        data.len() as f64 / s / 1e9,
        d[0]
    );
    let t = Instant::now();
    std::thread::scope(|sc| {
        let a = sc.spawn(|| Sha256::digest(&data[..128 << 20]));
        let b = sc.spawn(|| Sha256::digest(&data[128 << 20..]));
        a.join().unwrap();
        b.join().unwrap();
    });
    let s = t.elapsed().as_secs_f64();
    println!(
        "sha256 2 threads {:.2} GB/s total",
        data.len() as f64 / s / 1e9
    );
    let t = Instant::now();
    let mut c = drifttools_native::crc64::Crc64::new();
    c.update(&data);
    let s = t.elapsed().as_secs_f64();
    println!(
        "crc64 {:.2} GB/s {:x}",
        data.len() as f64 / s / 1e9,
        c.value()
    );
}
