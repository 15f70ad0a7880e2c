//! Native core of drifttools: safe tree walker, streaming layer reader and
//! compact entry storage. This file is only the Python glue; the logic lives
//! in the pure modules below (tested with `cargo test`).

pub mod confine;
pub mod crc64;
pub mod entropy;
pub mod entry;
pub mod fingerprint;
pub mod hash;
pub mod image_index;
pub mod layer;
pub mod merge;
pub mod sha256x2;
pub mod tar;
pub mod tarsplit;
pub mod text;
pub mod view;
pub mod walk;

use entry::{EntryKind, EntryRef, Tree};
use pyo3::exceptions::{PyIndexError, PyOSError, PyTypeError, PyValueError};
use pyo3::import_exception;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

// ------------------------------------------------------------------ errors

// The library's own classes (drifttools/errors.py), so Python code catches a
// type, never a message. Each is also the builtin it was before (ValueError /
// OSError), so `except ValueError` keeps working.
import_exception!(drifttools.errors, IndexCorrupt);
import_exception!(drifttools.errors, LayerCorrupt);
import_exception!(drifttools.errors, MalformedPath);
import_exception!(drifttools.errors, NotRegularFile);

/// OSError(errno, strerror, filename): Python picks the subclass
/// (FileNotFoundError, PermissionError, ...) from errno.
fn os_error(e: &io::Error, filename: &str) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            let msg = io::Error::from_raw_os_error(code).to_string();
            let msg = msg.split(" (os error").next().unwrap_or("").to_string();
            PyOSError::new_err((code, msg, filename.to_string()))
        }
        None => PyOSError::new_err(e.to_string()),
    }
}

/// The one mapping of a layer reader's failure (`read_layer`, `read_tar_split`,
/// named by `what`): I/O → `OSError` (errno and `filename` when given), corrupt
/// data or a cap exceeded → `LayerCorrupt`, cancelled → the pending signal's
/// exception (KeyboardInterrupt).
fn layer_error(py: Python<'_>, e: layer::LayerError, what: &str, filename: Option<&str>) -> PyErr {
    match e {
        layer::LayerError::Io(e) => match filename {
            Some(name) => os_error(&e, name),
            None => PyErr::from(e),
        },
        layer::LayerError::Cancelled => match py.check_signals() {
            Err(signal) => signal,
            Ok(()) => PyOSError::new_err(format!("{what} cancelled")),
        },
        e @ (layer::LayerError::Corrupt(_) | layer::LayerError::Cap(_)) => {
            LayerCorrupt::new_err(e.to_string())
        }
    }
}

/// Path text to its raw bytes; `MalformedPath` (message prefixed by `context`
/// when given) on a malformed escape.
fn unescape(text: &str, context: Option<&str>) -> PyResult<Vec<u8>> {
    text::unescape_path(text).map_err(|e| match context {
        Some(what) => MalformedPath::new_err(format!("{what} {text:?}: {e}")),
        None => MalformedPath::new_err(e.to_string()),
    })
}

// ------------------------------------------------------------------ helpers

/// Run `work` on a helper thread with the GIL released, waking every 100 ms
/// to call `tick` (progress, signal checks) with the GIL. When `tick` fails
/// (e.g. KeyboardInterrupt) `cancel` is set, the work is waited for (it stops
/// quickly) and the tick's error is returned.
fn run_detached<T: Send>(
    py: Python<'_>,
    cancel: &AtomicBool,
    mut tick: impl FnMut(Python<'_>) -> PyResult<()>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|s| {
        let done_ref = &done;
        let handle = s.spawn(move || {
            struct Signal<'a>(&'a (Mutex<bool>, Condvar));
            impl Drop for Signal<'_> {
                fn drop(&mut self) {
                    *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    self.0 .1.notify_all();
                }
            }
            let _signal = Signal(done_ref);
            work()
        });
        let mut failure: Option<PyErr> = None;
        loop {
            let finished = py.detach(|| {
                let g = done_ref.0.lock().unwrap_or_else(|p| p.into_inner());
                let (g, _) = done_ref
                    .1
                    .wait_timeout_while(g, Duration::from_millis(100), |d| !*d)
                    .unwrap_or_else(|p| p.into_inner());
                *g
            });
            if finished {
                break;
            }
            if failure.is_none() {
                if let Err(e) = tick(py) {
                    cancel.store(true, Ordering::Relaxed);
                    failure = Some(e);
                }
            }
        }
        let result = py.detach(|| handle.join());
        let value = match result {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match failure {
            Some(e) => Err(e),
            None => Ok(value),
        }
    })
}

fn hex32(d: &[u8; 32]) -> String {
    hash::to_hex(d)
}

// ------------------------------------------------------------------ Entry

/// One file-system or archive entry (read-only).
#[pyclass(frozen, module = "drifttools._native", name = "Entry")]
struct PyEntry {
    #[pyo3(get)]
    path: String,
    kind: EntryKind,
    #[pyo3(get)]
    mode: u32,
    #[pyo3(get)]
    uid: u32,
    #[pyo3(get)]
    gid: u32,
    #[pyo3(get)]
    size: u64,
    #[pyo3(get)]
    mtime_ns: i64,
    #[pyo3(get)]
    atime_ns: Option<i64>,
    #[pyo3(get)]
    ctime_ns: Option<i64>,
    #[pyo3(get)]
    btime_ns: Option<i64>,
    #[pyo3(get)]
    inode: Option<u64>,
    #[pyo3(get)]
    nlink: Option<u32>,
    #[pyo3(get)]
    dev: Option<u64>,
    #[pyo3(get)]
    blocks: Option<u64>,
    #[pyo3(get)]
    rdev_major: u32,
    #[pyo3(get)]
    rdev_minor: u32,
    #[pyo3(get)]
    target: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
    #[pyo3(get)]
    sha256: Option<String>,
    #[pyo3(get)]
    md5: Option<String>,
    #[pyo3(get)]
    sha1: Option<String>,
    #[pyo3(get)]
    error: Option<String>,
}

impl PyEntry {
    fn from_ref(e: EntryRef<'_>) -> PyEntry {
        let r = e.rec;
        let walk = r.walk_info();
        PyEntry {
            path: text::escape_path(e.path),
            kind: r.kind,
            mode: r.mode as u32,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            mtime_ns: r.mtime_ns,
            atime_ns: r.atime(),
            ctime_ns: r.ctime(),
            btime_ns: r.btime(),
            inode: walk.map(|w| w.0),
            nlink: walk.map(|w| w.1),
            dev: walk.map(|w| w.2),
            blocks: walk.map(|w| w.3),
            rdev_major: r.rdev_major,
            rdev_minor: r.rdev_minor,
            target: e.target().map(text::escape_path),
            xattrs: e
                .xattrs()
                .iter()
                .map(|(k, v)| (text::escape_path(k), v.to_vec()))
                .collect(),
            sha256: r.sha().map(hex32),
            md5: e.legacy().map(|l| hex::encode(l.md5)),
            sha1: e.legacy().map(|l| hex::encode(l.sha1)),
            error: e.error().map(str::to_string),
        }
    }
}

#[pymethods]
impl PyEntry {
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    #[getter]
    fn xattrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.xattrs {
            d.set_item(k, PyBytes::new(py, v))?;
        }
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let path = PyString::new(py, &self.path).repr()?;
        let mut s = format!(
            "Entry(path={path}, kind='{}', mode=0o{:o}",
            self.kind.as_str(),
            self.mode
        );
        s += &format!(", uid={}, gid={}, size={}", self.uid, self.gid, self.size);
        if let Some(t) = &self.target {
            s += &format!(", target={}", PyString::new(py, t).repr()?);
        }
        if let Some(h) = &self.sha256 {
            s += &format!(", sha256='{h}'");
        }
        if let Some(e) = &self.error {
            s += &format!(", error={}", PyString::new(py, e).repr()?);
        }
        s.push(')');
        Ok(s)
    }
}

// ------------------------------------------------------------------ Tree

/// Entries held in compact native form; Entry objects are made on access.
#[pyclass(frozen, module = "drifttools._native", name = "Tree", sequence)]
struct PyTree {
    inner: Arc<Tree>,
    /// For a walk without the noatime view: why, and what it means.
    atime_exception: Option<String>,
}

#[pymethods]
impl PyTree {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// None, or (for a walk that could not go through its private read-only
    /// noatime view) the sentence saying symlink atimes may have changed.
    #[getter]
    fn atime_exception(&self) -> Option<String> {
        self.atime_exception.clone()
    }

    fn __getitem__(&self, index: isize) -> PyResult<PyEntry> {
        let n = self.inner.len() as isize;
        let i = if index < 0 { index + n } else { index };
        if i < 0 || i >= n {
            return Err(PyIndexError::new_err("Tree index out of range"));
        }
        Ok(PyEntry::from_ref(
            self.inner.get(i as usize).expect("in range"),
        ))
    }

    fn __iter__(&self) -> PyTreeIter {
        PyTreeIter {
            inner: self.inner.clone(),
            pos: 0,
        }
    }

    #[getter]
    fn error_count(&self) -> usize {
        self.inner.error_count()
    }

    /// Every entry's path (escaped text), in order, in one call.
    fn paths(&self) -> Vec<String> {
        self.inner
            .iter()
            .map(|e| text::escape_path(e.path))
            .collect()
    }

    /// Every entry's kind, in order, in one call.
    fn kinds(&self) -> Vec<&'static str> {
        self.inner.iter().map(|e| e.rec.kind.as_str()).collect()
    }

    /// Every entry's drift key (see [`entry::drift_key`]), in order, in one call.
    fn drift_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for e in self.inner.iter() {
            match entry::drift_key(&e) {
                Some(k) => list.append(PyBytes::new(py, &k))?,
                None => list.append(py.None())?,
            }
        }
        Ok(list)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let t = self.inner.clone();
        let data = py.detach(move || t.to_bytes());
        PyBytes::new(py, &data)
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: PyBackedBytes) -> PyResult<PyTree> {
        let t = py
            .detach(|| Tree::from_bytes(&data))
            .map_err(|e| IndexCorrupt::new_err(format!("corrupt tree: {e}")))?;
        Ok(PyTree {
            inner: Arc::new(t),
            atime_exception: None,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<Tree: {} entries, {} with errors>",
            self.inner.len(),
            self.inner.error_count()
        )
    }
}

#[pyclass(module = "drifttools._native", name = "TreeIterator")]
struct PyTreeIter {
    inner: Arc<Tree>,
    pos: usize,
}

#[pymethods]
impl PyTreeIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> Option<PyEntry> {
        let e = self.inner.get(self.pos)?;
        self.pos += 1;
        Some(PyEntry::from_ref(e))
    }
}

// ------------------------------------------------------------------ LayerIndex

/// Index of one image layer (or `docker export` tar).
#[pyclass(frozen, module = "drifttools._native", name = "LayerIndex")]
struct PyLayerIndex {
    #[pyo3(get)]
    entries: Py<PyTree>,
    meta: layer::LayerIndex, // with an empty tree; the entries live in `entries`
}

impl PyLayerIndex {
    fn new(py: Python<'_>, mut li: layer::LayerIndex) -> PyResult<PyLayerIndex> {
        let tree = std::mem::take(&mut li.entries);
        Ok(PyLayerIndex {
            entries: Py::new(
                py,
                PyTree {
                    inner: Arc::new(tree),
                    atime_exception: None,
                },
            )?,
            meta: li,
        })
    }
}

#[pymethods]
impl PyLayerIndex {
    #[getter]
    fn compression(&self) -> &'static str {
        self.meta.compression.as_str()
    }
    #[getter]
    fn compressed_sha256(&self) -> String {
        hex32(&self.meta.compressed_sha256)
    }
    #[getter]
    fn compressed_size(&self) -> u64 {
        self.meta.compressed_size
    }
    #[getter]
    fn uncompressed_sha256(&self) -> String {
        hex32(&self.meta.uncompressed_sha256)
    }
    #[getter]
    fn uncompressed_size(&self) -> u64 {
        self.meta.uncompressed_size
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let tree = self.entries.get().inner.clone();
        let meta = &self.meta;
        let data = py.detach(|| meta.encode(&tree));
        PyBytes::new(py, &data)
    }

    /// Write what `to_bytes` gives to the open file `fd` (not closed), streamed.
    fn write_to(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        use std::os::fd::FromRawFd;
        let tree = self.entries.get().inner.clone();
        let meta = &self.meta;
        // SAFETY: the caller's open fd, borrowed for this call: ManuallyDrop never closes it
        let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
        py.detach(|| {
            let out = io::BufWriter::with_capacity(1 << 20, &*file);
            meta.write_encoded(&tree, out)?.flush()
        })
        .map_err(|e| os_error(&e, &format!("fd {fd}")))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: PyBackedBytes) -> PyResult<PyLayerIndex> {
        let li = py
            .detach(|| layer::LayerIndex::from_bytes(&data))
            .map_err(|e| IndexCorrupt::new_err(format!("corrupt layer index: {e}")))?;
        PyLayerIndex::new(py, li)
    }

    fn __repr__(&self) -> String {
        format!(
            "<LayerIndex: {} entries, compression={}, diff_id=sha256:{}>",
            self.entries.get().inner.len(),
            self.meta.compression.as_str(),
            hex32(&self.meta.uncompressed_sha256)
        )
    }
}

// ------------------------------------------------------------------ BaselineIndex

fn index_corrupt(e: image_index::Corrupt) -> PyErr {
    IndexCorrupt::new_err(format!("corrupt baseline index: {e}"))
}

/// A merged image baseline on disk, looked up in place (see the stub).
#[pyclass(frozen, module = "drifttools._native", name = "BaselineIndex")]
struct PyBaselineIndex {
    inner: Arc<image_index::BaselineIndex>,
}

#[pymethods]
impl PyBaselineIndex {
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<PyBaselineIndex> {
        match py.detach(|| image_index::BaselineIndex::open(&path)) {
            Ok(index) => Ok(PyBaselineIndex {
                inner: Arc::new(index),
            }),
            Err(image_index::OpenError::Io(e)) => Err(os_error(&e, &path.display().to_string())),
            Err(image_index::OpenError::Corrupt(e)) => Err(index_corrupt(e)),
        }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.inner.meta().map_err(index_corrupt)?))
    }

    #[getter]
    fn blocks_checked(&self) -> (u64, usize) {
        self.inner.blocks_checked()
    }

    fn find(&self, path: &str) -> PyResult<Option<usize>> {
        self.inner
            .find(&unescape(path, Some("baseline path"))?)
            .map_err(index_corrupt)
    }

    fn prefix_range(&self, prefix: &str) -> PyResult<(usize, usize)> {
        self.inner
            .prefix_range(&unescape(prefix, Some("baseline path"))?)
            .map_err(index_corrupt)
    }

    fn paths(&self, start: usize, stop: usize) -> PyResult<Vec<String>> {
        (start..stop.min(self.inner.len()))
            .map(|i| {
                Ok(text::escape_path(
                    self.inner.path(i).map_err(index_corrupt)?,
                ))
            })
            .collect()
    }

    fn entries(&self, positions: Vec<usize>) -> PyResult<(PyTree, Vec<(u32, i64)>)> {
        let mut tree = Tree::new();
        let mut origins = Vec::with_capacity(positions.len());
        for i in positions {
            if i >= self.inner.len() {
                return Err(PyIndexError::new_err("BaselineIndex position out of range"));
            }
            let path = self.inner.path(i).map_err(index_corrupt)?;
            match self.inner.entry(i).map_err(index_corrupt)? {
                (layer, Some((rec, extra))) => {
                    origins.push((layer, tree.len() as i64));
                    tree.push(path, rec, extra);
                }
                (layer, None) => origins.push((layer, -1)),
            }
        }
        let tree = PyTree {
            inner: Arc::new(tree),
            atime_exception: None,
        };
        Ok((tree, origins))
    }

    fn drift_join(
        &self,
        py: Python<'_>,
        tree: &PyTree,
        mount: &str,
    ) -> PyResult<(Vec<usize>, Vec<usize>)> {
        let live = tree.inner.clone();
        let index = self.inner.clone();
        let mount = unescape(mount, Some("mount point"))?;
        py.detach(|| index.drift_join(&live, &mount))
            .map_err(index_corrupt)
    }

    fn __repr__(&self) -> String {
        let (checked, blocks) = self.inner.blocks_checked();
        format!(
            "<BaselineIndex: {} entries, {checked}/{blocks} blocks checked>",
            self.inner.len()
        )
    }
}

// ------------------------------------------------------------------ MergedLayers

/// An image's layers applied in order (see the stub and [`merge`]).
#[pyclass(frozen, module = "drifttools._native", name = "MergedLayers")]
struct PyMergedLayers {
    trees: Vec<Arc<Tree>>,
    merged: merge::Merged,
}

impl PyMergedLayers {
    fn trees(&self) -> Vec<&Tree> {
        self.trees.iter().map(|t| &**t).collect()
    }
}

#[pymethods]
impl PyMergedLayers {
    #[new]
    #[pyo3(signature = (layers, *, overlay = false))]
    fn new(py: Python<'_>, layers: Vec<Py<PyTree>>, overlay: bool) -> PyMergedLayers {
        let trees: Vec<Arc<Tree>> = layers.iter().map(|t| t.get().inner.clone()).collect();
        let rules = if overlay {
            merge::Rules::Overlay
        } else {
            merge::Rules::Oci
        };
        let merged = py.detach(|| {
            let refs: Vec<&Tree> = trees.iter().map(|t| &**t).collect();
            merge::merge(&refs, rules)
        });
        PyMergedLayers { trees, merged }
    }

    fn __len__(&self) -> usize {
        self.merged.len()
    }

    /// The hardlink groups (escaped paths).
    fn links(&self) -> Vec<Vec<String>> {
        let escaped = |group: &Vec<Vec<u8>>| group.iter().map(|p| text::escape_path(p)).collect();
        self.merged.links.iter().map(escaped).collect()
    }

    /// (escaped path, reason) of each problem, in the order met.
    fn errors(&self) -> Vec<(String, String)> {
        let escaped = |(path, why): &(Vec<u8>, String)| (text::escape_path(path), why.clone());
        self.merged.errors.iter().map(escaped).collect()
    }

    fn write(&self, py: Python<'_>, path: PathBuf, meta: &[u8]) -> PyResult<()> {
        let shown = path.display().to_string();
        py.detach(|| {
            let trees = self.trees();
            let items = self
                .merged
                .iter(&trees)
                .map(|(path, layer, entry)| image_index::Item { path, layer, entry });
            image_index::write(&path, items, meta)
        })
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => PyValueError::new_err(e.to_string()),
            _ => os_error(&e, &shown),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<MergedLayers: {} layers, {} entries, {} errors>",
            self.trees.len(),
            self.merged.len(),
            self.merged.errors.len()
        )
    }
}

// ------------------------------------------------------------------ walk

/// Snapshot the tree under `root` (see the stub for the full contract).
#[pyfunction]
#[pyo3(
    name = "walk",
    signature = (root, *, subpath = None, exclude = Vec::new(), one_filesystem = false, hash_max_size = None, threads = 0, progress = None, legacy_hashes = false),
    text_signature = "(root, *, subpath=None, exclude=(), one_filesystem=False, hash_max_size=None, threads=0, progress=None, legacy_hashes=False)"
)]
#[allow(clippy::too_many_arguments)]
fn py_walk(
    py: Python<'_>,
    root: PathBuf,
    subpath: Option<String>,
    exclude: Vec<String>,
    one_filesystem: bool,
    hash_max_size: Option<u64>,
    threads: usize,
    progress: Option<Bound<'_, PyAny>>,
    legacy_hashes: bool,
) -> PyResult<PyTree> {
    let exclude = exclude
        .iter()
        .map(|e| unescape(e, Some("bad exclude path")))
        .collect::<PyResult<Vec<_>>>()?;
    let sub_raw = subpath
        .as_deref()
        .map(|sp| unescape(sp, Some("bad subpath")))
        .transpose()?;
    let opts = walk::WalkOptions {
        subpath: sub_raw,
        exclude,
        one_filesystem,
        hash_max_size,
        threads,
        legacy_hashes,
        ..Default::default()
    };
    let counters = walk::Progress::default();
    let report = |_py: Python<'_>| -> PyResult<()> {
        if let Some(cb) = &progress {
            let n = counters.entries.load(Ordering::Relaxed);
            let b = counters.bytes_hashed.load(Ordering::Relaxed);
            cb.call1((n, b))?;
        }
        Ok(())
    };
    let result = run_detached(
        py,
        &counters.cancel,
        |py| {
            report(py)?;
            py.check_signals()
        },
        || walk::walk(&root, &opts, &counters),
    )?;
    match result {
        Ok(walked) => {
            report(py)?;
            let atime_exception = match walked.atime {
                walk::AtimeGuard::View => None,
                walk::AtimeGuard::NoAtimeFlag(why) => Some(format!(
                    "symlink atimes may have changed: no private read-only view of {} ({why}); \
                     files and directories were read with O_NOATIME",
                    root.to_string_lossy()
                )),
            };
            Ok(PyTree {
                inner: Arc::new(walked.tree),
                atime_exception,
            })
        }
        Err(walk::WalkError::Io(e)) => Err(os_error(&e, &root.to_string_lossy())),
        Err(walk::WalkError::Subpath(e)) => {
            let sp = subpath.unwrap_or_default();
            let shown = format!(
                "{}/{}",
                root.to_string_lossy().trim_end_matches('/'),
                sp.trim_start_matches('/')
            );
            let msg = match e.raw_os_error() {
                Some(libc::ELOOP) => {
                    "subpath is a symbolic link or goes through one (never followed)".to_string()
                }
                Some(libc::ENOTDIR) => "subpath is not a directory".to_string(),
                Some(libc::ENOENT) => "subpath does not exist".to_string(),
                _ => format!("cannot open subpath: {}", walk::describe(&e)),
            };
            Err(match e.raw_os_error() {
                Some(code) => PyOSError::new_err((code, msg, shown)),
                None => PyOSError::new_err(format!("{msg}: {shown}")),
            })
        }
        Err(walk::WalkError::Cancelled) => {
            py.check_signals()?;
            Err(PyOSError::new_err("walk cancelled"))
        }
    }
}

// ------------------------------------------------------------------ read_layer

/// `std::io::Read` over a Python binary file-like object; takes the GIL per
/// call (at most 1 MiB per call).
struct PyReader {
    obj: Py<PyAny>,
    skip: u64,
    remaining: Option<u64>,
    err: Arc<Mutex<Option<PyErr>>>,
}

impl PyReader {
    fn call_read(&self, py: Python<'_>, want: usize, dst: &mut [u8]) -> PyResult<usize> {
        let r = self.obj.bind(py).call_method1("read", (want,))?;
        if r.is_none() {
            return Err(PyTypeError::new_err(
                "source.read() returned None (non-blocking stream?)",
            ));
        }
        let b: PyBackedBytes = r.extract()?;
        if b.len() > want {
            return Err(PyValueError::new_err(
                "source.read(n) returned more than n bytes",
            ));
        }
        dst[..b.len()].copy_from_slice(&b);
        Ok(b.len())
    }

    fn read_some(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let want = dst.len().min(1 << 20);
        let res = Python::attach(|py| self.call_read(py, want, dst));
        res.map_err(|e| {
            *self.err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            io::Error::other("source.read() raised")
        })
    }
}

impl Read for PyReader {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let mut scratch = [0u8; 8192];
        while self.skip > 0 {
            let k = (scratch.len() as u64).min(self.skip) as usize;
            let n = self.read_some(&mut scratch[..k])?;
            if n == 0 {
                return Ok(0);
            }
            self.skip -= n as u64;
        }
        let limit = match self.remaining {
            Some(0) => return Ok(0),
            Some(r) => (r.min(dst.len() as u64)) as usize,
            None => dst.len(),
        };
        let n = self.read_some(&mut dst[..limit])?;
        if let Some(r) = &mut self.remaining {
            *r -= n as u64;
        }
        Ok(n)
    }
}

/// Index an image layer from a path (optionally a byte range) or a binary
/// file-like object.
#[pyfunction]
#[pyo3(name = "read_layer", signature = (source, *, offset = 0, length = None, max_entries = 10_000_000, max_path_len = 4096, max_bytes = 1u64 << 40))]
fn py_read_layer(
    py: Python<'_>,
    source: Bound<'_, PyAny>,
    offset: u64,
    length: Option<u64>,
    max_entries: u64,
    max_path_len: usize,
    max_bytes: u64,
) -> PyResult<PyLayerIndex> {
    let opts = layer::LayerOptions {
        max_entries,
        max_path_len,
        max_bytes,
    };
    let cancel = AtomicBool::new(false);
    let py_err: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let is_path = source.is_instance_of::<PyString>()
        || source.hasattr("__fspath__")?
        || source.is_instance_of::<PyBytes>();
    let result = if is_path {
        let path: PathBuf = source.extract()?;
        let name = path.to_string_lossy().into_owned();
        let mut f = std::fs::File::open(&path).map_err(|e| os_error(&e, &name))?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| os_error(&e, &name))?;
        }
        let src: Box<dyn Read + Send> = match length {
            Some(n) => Box::new(f.take(n)),
            None => Box::new(f),
        };
        run_detached(
            py,
            &cancel,
            |py| py.check_signals(),
            || layer::read_layer(src, &opts, &cancel),
        )?
    } else if source.hasattr("read")? {
        let reader = PyReader {
            obj: source.clone().unbind(),
            skip: offset,
            remaining: length,
            err: py_err.clone(),
        };
        run_detached(
            py,
            &cancel,
            |py| py.check_signals(),
            || layer::read_layer(reader, &opts, &cancel),
        )?
    } else {
        return Err(PyTypeError::new_err(
            "source must be a path (str / os.PathLike) or a binary file-like object with .read(n)",
        ));
    };
    if let Some(e) = py_err.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    match result {
        Ok(li) => PyLayerIndex::new(py, li),
        Err(e) => Err(layer_error(py, e, "read_layer", None)),
    }
}

// ------------------------------------------------------------------ read_tar_split

/// Reassemble and index a layer from the engine's store (tar-split + layer
/// directory); see the stub for the contract.
#[pyfunction]
#[pyo3(name = "read_tar_split", signature = (tar_split, layer_dir, *, max_entries = 10_000_000, max_path_len = 4096, max_bytes = 1u64 << 40))]
fn py_read_tar_split(
    py: Python<'_>,
    tar_split: PathBuf,
    layer_dir: PathBuf,
    max_entries: u64,
    max_path_len: usize,
    max_bytes: u64,
) -> PyResult<PyLayerIndex> {
    let opts = layer::LayerOptions {
        max_entries,
        max_path_len,
        max_bytes,
    };
    let ts_name = tar_split.to_string_lossy().into_owned();
    let file = tarsplit::open_tar_split(&tar_split).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => PyOSError::new_err((
            libc::EINVAL,
            "tar-split is not a regular file".to_string(),
            ts_name.clone(),
        )),
        Some(libc::ELOOP) => PyOSError::new_err((
            libc::ELOOP,
            "tar-split is a symbolic link (not followed)".to_string(),
            ts_name.clone(),
        )),
        _ => os_error(&e, &ts_name),
    })?;
    let dir = tarsplit::open_layer_dir(&layer_dir)
        .map_err(|e| os_error(&e, &layer_dir.to_string_lossy()))?;
    let cancel = AtomicBool::new(false);
    let result = run_detached(
        py,
        &cancel,
        |py| py.check_signals(),
        || tarsplit::read_tar_split(file, &dir, &opts, &cancel),
    )?;
    match result {
        Ok(li) => PyLayerIndex::new(py, li),
        Err(e) => Err(layer_error(py, e, "read_tar_split", Some(&ts_name))),
    }
}

// ------------------------------------------------------------------ read_file

/// Read (at most `limit` bytes of) one regular file confined to `root`; with
/// `digest`, also the SHA-256 of the whole file as this read saw it.
#[pyfunction]
#[pyo3(name = "read_file", signature = (root, path, *, limit = None, digest = false))]
fn py_read_file<'py>(
    py: Python<'py>,
    root: &str,
    path: &str,
    limit: Option<usize>,
    digest: bool,
) -> PyResult<(Bound<'py, PyBytes>, u64, Option<String>)> {
    let raw = unescape(path, None)?;
    let shown = format!(
        "{}/{}",
        root.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    let result = py.detach(|| {
        confine::read_regular(root.as_bytes(), &raw, limit.unwrap_or(usize::MAX), digest)
    });
    match result {
        Ok((data, size, sha256)) => Ok((PyBytes::new(py, &data), size, sha256.as_ref().map(hex32))),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            Err(NotRegularFile::new_err(format!("{e}: {shown}")))
        }
        Err(e) => Err(os_error(&e, &shown)),
    }
}

/// Shannon entropy of `data` in bits per byte, the GIL released.
#[pyfunction]
#[pyo3(name = "entropy")]
fn py_entropy(py: Python<'_>, data: &[u8]) -> f64 {
    py.detach(|| entropy::shannon(data))
}

// ------------------------------------------------------------------ hash_fd

/// Digests of the rest of an open file: (sha256, md5, sha1, bytes read), the
/// legacy two None unless asked for; one read, the GIL released.
#[pyfunction]
#[pyo3(name = "hash_fd", signature = (fd, *, legacy_hashes = false))]
fn py_hash_fd(
    py: Python<'_>,
    fd: i32,
    legacy_hashes: bool,
) -> PyResult<(String, Option<String>, Option<String>, u64)> {
    let result = py.detach(|| {
        let mut buf = hash::AlignedBuf::new(1 << 20);
        hash::hash_fd(fd, &mut buf, None, legacy_hashes)
    });
    match result {
        Ok((d, n)) => Ok((
            hex32(&d.sha256),
            d.legacy.map(|l| hex::encode(l.md5)),
            d.legacy.map(|l| hex::encode(l.sha1)),
            n,
        )),
        Err(e) => Err(os_error(&e, &format!("fd {fd}"))),
    }
}

// ------------------------------------------------------------------ text

/// Escape raw path bytes to text (see the stub for the rule).
#[pyfunction]
#[pyo3(name = "escape_path")]
fn py_escape_path(raw: &[u8]) -> String {
    text::escape_path(raw)
}

/// SHA-256 (hex) of the stat facts of every entry under `root`, streamed
/// (see [`fingerprint::stat_fingerprint`]).
#[pyfunction]
#[pyo3(name = "stat_fingerprint")]
fn py_stat_fingerprint(py: Python<'_>, root: PathBuf) -> PyResult<String> {
    match py.detach(|| fingerprint::stat_fingerprint(&root)) {
        Ok(d) => Ok(hex32(&d)),
        Err(e) => Err(os_error(&e, &root.to_string_lossy())),
    }
}

/// Reverse escape_path exactly; MalformedPath on a malformed escape.
#[pyfunction]
#[pyo3(name = "unescape_path")]
fn py_unescape_path<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &unescape(text, None)?))
}

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEntry>()?;
    m.add_class::<PyTree>()?;
    m.add_class::<PyLayerIndex>()?;
    m.add_class::<PyBaselineIndex>()?;
    m.add_class::<PyMergedLayers>()?;
    m.add_function(wrap_pyfunction!(py_walk, m)?)?;
    m.add_function(wrap_pyfunction!(py_read_layer, m)?)?;
    m.add_function(wrap_pyfunction!(py_read_tar_split, m)?)?;
    m.add(
        "DRIFT_XATTR",
        std::str::from_utf8(entry::DRIFT_XATTR).expect("ASCII"),
    )?;
    let opaque: Vec<&str> = merge::OPAQUE_XATTRS
        .iter()
        .map(|name| std::str::from_utf8(name).expect("ASCII"))
        .collect();
    m.add("OPAQUE_XATTRS", PyTuple::new(m.py(), opaque)?)?;
    m.add_function(wrap_pyfunction!(py_read_file, m)?)?;
    m.add_function(wrap_pyfunction!(py_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(py_hash_fd, m)?)?;
    m.add_function(wrap_pyfunction!(py_escape_path, m)?)?;
    m.add_function(wrap_pyfunction!(py_unescape_path, m)?)?;
    m.add_function(wrap_pyfunction!(py_stat_fingerprint, m)?)?;
    Ok(())
}
