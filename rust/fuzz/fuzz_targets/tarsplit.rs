//! Tar-split reassembly: arbitrary bytes as the tar-split JSON lines (gzip'd
//! when they start with its magic) against a fixed layer directory holding
//! `a`, `b/c`, a FIFO `fifo` and a symlink `lnk` (names the seeds use).
//! Panics, hangs (a FIFO opened would block) and out-of-memory are findings;
//! errors are expected.
#![no_main]

use drifttools_native::confine::Fd;
use drifttools_native::layer::LayerOptions;
use drifttools_native::tarsplit::{open_layer_dir, read_tar_split};
use libfuzzer_sys::fuzz_target;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

fn layer_dir() -> &'static Fd {
    static DIR: OnceLock<Fd> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("drifttools-fuzz-layer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("b")).expect("temp dir");
        fs::write(dir.join("a"), b"hello\n").expect("temp dir");
        fs::write(dir.join("b/c"), b"x").expect("temp dir");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("lnk")).expect("temp dir");
        let fifo = std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes())
            .expect("no NUL");
        // SAFETY: valid path.
        unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
        open_layer_dir(&dir).expect("layer dir")
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = layer_dir();
    // SAFETY: memfd_create returns a new fd we own.
    let fd = unsafe { libc::memfd_create(c"tar-split".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: fd is ours and open.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(data).expect("memfd");
    file.seek(SeekFrom::Start(0)).expect("memfd");
    let opts = LayerOptions {
        max_entries: 100_000,
        max_path_len: 4096,
        max_bytes: 64 << 20,
    };
    let _ = read_tar_split(file, dir, &opts, &AtomicBool::new(false));
});
