//! Apply an image's layers in order into one merged view, without a Python object per entry.
//!
//! Layers read from tars ([`Rules::Oci`], image-spec "Applying Changesets"):
//!
//! * `.wh..wh..opq` in a directory hides everything lower layers put below it; it applies
//!   first, wherever it sits in the layer.
//! * `.wh.<name>` deletes `<name>` (and all below it) from lower layers.
//! * An entry replaces what lower layers had at its path; a directory over a directory keeps
//!   the children, anything else drops them. Parents no layer named are made up as plain
//!   directories ("implicit": no entry of their own).
//! * A hardlink takes the content (and kind) of its target, in this layer or a lower one, and
//!   shares its inode: [`Merged::links`] groups the paths of one inode still in the view. A
//!   path given anything else later is a new inode (it leaves its group).
//! * A member whose name or hardlink target would land outside the layer's root on extraction
//!   (the tar reader's `unsafe ...` errors) is kept out of the view, whiteouts included, and
//!   listed in the errors; so are a missing hardlink target and every member's own error.
//!
//! Unpacked layer directories (overlay lower dirs, [`Rules::Overlay`], walked): a char device
//! 0/0 deletes its path, a directory whose opaque xattr is `y` hides what lower layers put
//! below it; entries come sorted by path, so a directory is met before its children.

use crate::entry::{EntryKind, EntryRef, Tree};
use crate::tar::{UNSAFE_LINK, UNSAFE_PATH};
use crate::text::escape_path;
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattrs that mark an overlay directory opaque (kernel overlayfs, its user namespace
/// form, fuse-overlayfs).
pub const OPAQUE_XATTRS: [&[u8]; 3] = [
    b"trusted.overlay.opaque",
    b"user.overlay.opaque",
    b"user.fuseoverlayfs.opaque",
];

/// How a layer says what it deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// Layer tars: `.wh.` whiteout files and opaque markers.
    Oci,
    /// Unpacked overlay directories: 0/0 char devices and opaque xattrs.
    Overlay,
}

/// An entry of a layer: (tree, position).
pub type At = (u32, u32);

/// Slot flag: the path is a directory.
const DIR: u32 = 1 << 31;
/// `Slot::aux` of an entry whose facts are its own.
const OWN: u32 = u32::MAX;
/// `Slot::aux` flag of an implicit directory (the low bits: its path's length).
const IMPLICIT: u32 = 1 << 31;

/// One path of the view in 12 bytes (an image has millions): its path is (the first bytes
/// of) the path of entry (`layer`, `pos`); `aux` says whose facts it has: [`OWN`], none
/// ([`IMPLICIT`] | length) or, for a hardlink, the index of its target's in a side table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    layer: u32, // | DIR
    pos: u32,
    aux: u32,
}

impl Slot {
    fn is_dir(self) -> bool {
        self.layer & DIR != 0
    }
    fn at(self) -> At {
        (self.layer & !DIR, self.pos)
    }

    /// The entry whose facts the path has; `hardlinks` the side table.
    fn origin(self, hardlinks: &[Option<At>]) -> Option<At> {
        match self.aux {
            OWN => Some(self.at()),
            aux if aux & IMPLICIT != 0 => None,
            aux => hardlinks[aux as usize],
        }
    }
}

/// The merged view: every path, sorted by bytes; hardlink groups; what went wrong.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    entries: Vec<Slot>,
    hardlinks: Vec<Option<At>>, // a hardlink's facts: its target's entry (None: implicit)
    /// Paths (raw bytes) of one inode, each group and its paths sorted.
    pub links: Vec<Vec<Vec<u8>>>,
    /// (raw path, reason), in the order met.
    pub errors: Vec<(Vec<u8>, String)>,
}

impl Merged {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each path of the view (sorted), the layer that gave it and the entry whose facts it
    /// has (a hardlink's: its target's; None: an implicit directory); `trees` the merged ones.
    pub fn iter<'t>(
        &'t self,
        trees: &'t [&'t Tree],
    ) -> impl Iterator<Item = (&'t [u8], u32, Option<EntryRef<'t>>)> + Clone + 't {
        self.entries.iter().map(move |s| {
            let mut path = entry(trees, s.at()).path;
            if s.aux != OWN && s.aux & IMPLICIT != 0 {
                path = &path[..(s.aux & !IMPLICIT) as usize];
            }
            let origin = s.origin(&self.hardlinks);
            (path, s.at().0, origin.map(|at| entry(trees, at)))
        })
    }
}

fn entry<'t>(trees: &[&'t Tree], (t, p): At) -> EntryRef<'t> {
    trees[t as usize]
        .get(p as usize)
        .expect("merge refers to an entry")
}

struct View<'t> {
    map: BTreeMap<&'t [u8], Slot>,
}

impl<'t> View<'t> {
    /// Delete everything below directory `dir`, keeping `dir`.
    fn clear(&mut self, dir: &[u8]) {
        let prefix = if dir == b"/" {
            b"/".to_vec()
        } else {
            [dir, b"/"].concat()
        };
        let below: Vec<&'t [u8]> = self
            .map
            .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Unbounded))
            .map(|(k, _)| *k)
            .take_while(|k| k.starts_with(&prefix))
            .filter(|k| *k != dir)
            .collect();
        for k in below {
            self.map.remove(k);
        }
    }

    /// Delete `path` and everything below it.
    fn remove(&mut self, path: &[u8]) {
        if self.map.remove(path).is_some() {
            self.clear(path);
        }
    }

    /// Set `path`; parents no layer named become implicit directories of `slot`'s layer.
    fn put(&mut self, path: &'t [u8], slot: Slot) {
        if let Some(old) = self.map.get(path) {
            if !(old.is_dir() && slot.is_dir()) {
                self.remove(path);
            }
        }
        let mut missing = Vec::new();
        let mut cut = path.len();
        while let Some(at) = path[..cut]
            .iter()
            .rposition(|&b| b == b'/')
            .filter(|&a| a > 0)
        {
            if self.map.get(&path[..at]).is_some_and(|s| s.is_dir()) {
                break;
            }
            missing.push(at);
            cut = at;
        }
        for &at in missing.iter().rev() {
            let parent = &path[..at];
            self.remove(parent);
            let implicit = Slot {
                layer: slot.layer | DIR,
                pos: slot.pos,
                aux: IMPLICIT | at as u32,
            };
            self.map.insert(parent, implicit);
        }
        self.map.insert(path, slot);
    }
}

fn basename(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// Apply `layers` bottom first under `rules`.
pub fn merge(layers: &[&Tree], rules: Rules) -> Merged {
    let mut view = View {
        map: BTreeMap::new(),
    };
    let mut hardlinks = Vec::new();
    let mut linked = HashSet::new(); // entries some hardlink shares (an inode of many paths)
    let mut errors = Vec::new();
    for (li, tree) in layers.iter().enumerate() {
        let li = li as u32;
        let dir = |e: &EntryRef<'_>| {
            if e.rec.kind == EntryKind::Dir {
                DIR
            } else {
                0
            }
        };
        let own = |e: &EntryRef<'_>, i: usize| Slot {
            layer: li | dir(e),
            pos: i as u32,
            aux: OWN,
        };
        match rules {
            Rules::Oci => {
                let unsafe_entry = |e: &EntryRef<'_>| {
                    e.error()
                        .is_some_and(|m| m.starts_with(UNSAFE_PATH) || m.starts_with(UNSAFE_LINK))
                };
                let special = |e: &EntryRef<'_>| basename(e.path).1.starts_with(WHITEOUT_PREFIX);
                if tree.error_count() > 0 {
                    for e in tree.iter().filter(unsafe_entry) {
                        let why = e.error().unwrap_or_default();
                        let reason = format!("layer {li}: {why}; kept out of the baseline");
                        errors.push((e.path.to_vec(), reason));
                    }
                }
                let marks: Vec<EntryRef<'_>> = tree
                    .iter()
                    .filter(|e| special(e) && !unsafe_entry(e))
                    .collect();
                for e in &marks {
                    let (dir, name) = basename(e.path);
                    if name == OPAQUE_MARKER {
                        view.clear(dir);
                    }
                }
                for e in &marks {
                    let (dir, name) = basename(e.path);
                    if name != OPAQUE_MARKER {
                        let hidden = &name[WHITEOUT_PREFIX.len()..];
                        let target = if dir == b"/" {
                            [b"/", hidden].concat()
                        } else {
                            [dir, b"/", hidden].concat()
                        };
                        view.remove(&target);
                    }
                }
                for (i, e) in tree.iter().enumerate() {
                    if unsafe_entry(&e) {
                        continue;
                    }
                    if let Some(why) = e.error() {
                        errors.push((e.path.to_vec(), format!("layer {li}: {why}")));
                    }
                    if special(&e) {
                        continue;
                    }
                    if e.rec.kind != EntryKind::Hardlink {
                        view.put(e.path, own(&e, i));
                        continue;
                    }
                    let target = e.target().unwrap_or_default();
                    let Some(to) = view.map.get(target).copied() else {
                        let shown = escape_path(target);
                        let reason = format!("layer {li}: hardlink target missing: {shown}");
                        errors.push((e.path.to_vec(), reason));
                        continue;
                    };
                    let origin = to.origin(&hardlinks);
                    linked.extend(origin);
                    let slot = Slot {
                        layer: li | (to.layer & DIR),
                        pos: i as u32,
                        aux: hardlinks.len() as u32,
                    };
                    hardlinks.push(origin);
                    view.put(e.path, slot);
                }
            }
            Rules::Overlay => {
                for (i, e) in tree.iter().enumerate() {
                    if let Some(why) = e.error() {
                        errors.push((e.path.to_vec(), format!("layer {li}: {why}")));
                    }
                    let r = e.rec;
                    if r.kind == EntryKind::Char && (r.rdev_major, r.rdev_minor) == (0, 0) {
                        view.remove(e.path);
                        continue;
                    }
                    let opaque = e
                        .xattrs()
                        .iter()
                        .any(|(k, v)| OPAQUE_XATTRS.contains(&&k[..]) && &v[..] == b"y");
                    if r.kind == EntryKind::Dir && opaque {
                        view.clear(e.path);
                    }
                    view.put(e.path, own(&e, i));
                }
            }
        }
    }
    // the paths of each entry hardlinks share, that entry's own path included
    let mut groups: BTreeMap<At, Vec<Vec<u8>>> = BTreeMap::new();
    let entries: Vec<Slot> = view.map.values().copied().collect();
    if !linked.is_empty() {
        for (path, slot) in &view.map {
            if let Some(origin) = slot.origin(&hardlinks).filter(|o| linked.contains(o)) {
                groups.entry(origin).or_default().push(path.to_vec());
            }
        }
    }
    drop(view);
    let mut links: Vec<Vec<Vec<u8>>> = groups.into_values().filter(|g| g.len() > 1).collect();
    links.sort_unstable();
    Merged {
        entries,
        hardlinks,
        links,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Extra, Rec};

    fn layer(members: &[(&str, EntryKind, Option<&str>)]) -> Tree {
        let mut t = Tree::new();
        for (path, kind, target) in members {
            let rec = Rec {
                kind: *kind,
                ..Rec::default()
            };
            let extra = target.map(|t| Extra {
                target: Some(t.as_bytes().into()),
                ..Extra::default()
            });
            t.push(path.as_bytes(), rec, extra);
        }
        t
    }

    /// (path, layer, the path of the entry whose facts it has) of each merged path.
    fn paths(trees: &[&Tree], m: &Merged) -> Vec<(String, u32, Option<String>)> {
        m.iter(trees)
            .map(|(p, layer, e)| (escape_path(p), layer, e.map(|e| escape_path(e.path))))
            .collect()
    }

    fn want(rows: &[(&str, u32, Option<&str>)]) -> Vec<(String, u32, Option<String>)> {
        rows.iter()
            .map(|(p, l, o)| (p.to_string(), *l, o.map(str::to_string)))
            .collect()
    }

    use EntryKind::{Dir, File, Hardlink};

    #[test]
    fn whiteouts_opaque_dirs_and_implicit_parents() {
        let lower = layer(&[
            ("/d", Dir, None),
            ("/d/old", File, None),
            ("/keep", File, None),
            ("/gone", File, None),
            ("/gone/x", File, None),
        ]);
        let upper = layer(&[
            ("/d/new", File, None),
            ("/.wh.gone", File, None),
            ("/d/.wh..wh..opq", File, None),
            ("/n/e/w", File, None),
            ("/file.wh.not", File, None),
        ]);
        let trees = [&lower, &upper];
        let m = merge(&trees, Rules::Oci);
        let expected = want(&[
            ("/d", 0, Some("/d")),
            ("/d/new", 1, Some("/d/new")),
            ("/file.wh.not", 1, Some("/file.wh.not")),
            ("/keep", 0, Some("/keep")),
            ("/n", 1, None),
            ("/n/e", 1, None),
            ("/n/e/w", 1, Some("/n/e/w")),
        ]);
        assert_eq!(paths(&trees, &m), expected);
        assert!(m.errors.is_empty() && m.links.is_empty());
    }

    #[test]
    fn hardlinks_share_an_inode_until_replaced() {
        let lower = layer(&[("/a", File, None), ("/b", Hardlink, Some("/a"))]);
        let upper = layer(&[
            ("/c", Hardlink, Some("/b")),
            ("/x", Hardlink, Some("/nowhere")),
        ]);
        let trees = [&lower, &upper];
        let m = merge(&trees, Rules::Oci);
        let expected = want(&[
            ("/a", 0, Some("/a")),
            ("/b", 0, Some("/a")),
            ("/c", 1, Some("/a")),
        ]);
        assert_eq!(paths(&trees, &m), expected);
        assert_eq!(
            m.links,
            vec![vec![b"/a".to_vec(), b"/b".to_vec(), b"/c".to_vec()]]
        );
        assert_eq!(
            m.errors,
            vec![(
                b"/x".to_vec(),
                "layer 1: hardlink target missing: /nowhere".to_string()
            )]
        );
        let top = layer(&[("/a", File, None)]);
        let trees = [&lower, &upper, &top];
        let m = merge(&trees, Rules::Oci);
        assert_eq!(m.links, vec![vec![b"/b".to_vec(), b"/c".to_vec()]]);
    }

    #[test]
    fn overlay_rules() {
        let lower = layer(&[("/d", Dir, None), ("/d/a", File, None), ("/f", File, None)]);
        let mut upper = Tree::new();
        let opaque = Extra {
            xattrs: vec![(b"trusted.overlay.opaque"[..].into(), b"y"[..].into())],
            ..Extra::default()
        };
        let dir = Rec {
            kind: Dir,
            ..Rec::default()
        };
        upper.push(b"/d", dir, Some(opaque));
        upper.push(b"/d/b", Rec::default(), None);
        let whiteout = Rec {
            kind: EntryKind::Char,
            ..Rec::default()
        };
        upper.push(b"/f", whiteout, None);
        let trees = [&lower, &upper];
        let m = merge(&trees, Rules::Overlay);
        assert_eq!(
            paths(&trees, &m),
            want(&[("/d", 1, Some("/d")), ("/d/b", 1, Some("/d/b"))])
        );
    }
}
