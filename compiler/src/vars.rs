//! Persistent variable maps for lowering: the `ENV` and `ARG`s in scope.
//!
//! A stage inherits its base's environment and every RUN step keeps a copy
//! of the environment it ran with, so with plain maps a chain of stages that
//! each add one `ENV` costs quadratic time and memory. [`Vars`] is a hash
//! array mapped trie whose nodes are shared between copies: cloning is O(1)
//! and a change copies one path (at most 13 nodes for 64-bit hashes), so a
//! step's environment costs O(log n) to record whatever its size.
//!
//! Each map also carries a running digest of the changes that built it
//! ([`Vars::digest`]): two maps built by the same changes have the same
//! digest, and different contents always have different digests, which lets
//! a RUN step's definition digest cover its environment in O(1).

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};

use crate::parse::expand::Env;

/// Bits of the hash used per trie level.
const BITS: u32 = 5;

#[derive(Debug, Clone)]
struct Entry {
    name: Arc<str>,
    /// `None`: an `ARG` declared without a value.
    value: Option<Arc<str>>,
    /// Position in definition order (smaller is earlier).
    seq: u64,
}

#[derive(Debug)]
enum Node {
    /// Children for the set bits of `bitmap`, in bit order.
    Branch {
        bitmap: u32,
        children: Vec<Arc<Node>>,
    },
    /// Entries whose names have the same full 64-bit hash.
    Leaf { hash: u64, entries: Vec<Entry> },
}

/// How [`Vars::insert`] places a name that is already present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Keep its position (`ENV`: Docker keeps the first definition's place).
    Keep,
    /// Move it to the end (`ARG`: a redeclaration is a new declaration).
    Last,
}

/// An insertion-ordered map of variable names to values, cheap to copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    root: Option<Arc<Node>>,
    len: usize,
    next_seq: u64,
    digest: [u8; 32],
    /// False for maps whose digest is never asked for (global ARGs).
    untracked: bool,
}

/// One hasher for the process: the trie's shape is never observable, so its
/// keys may be random (which also keeps hostile names from colliding).
fn hash(name: &str) -> u64 {
    static STATE: OnceLock<RandomState> = OnceLock::new();
    STATE.get_or_init(RandomState::new).hash_one(name)
}

fn slot(hash: u64, shift: u32) -> u32 {
    ((hash >> shift) & ((1 << BITS) - 1)) as u32
}

fn index(bitmap: u32, bit: u32) -> usize {
    (bitmap & ((1u32 << bit) - 1)).count_ones() as usize
}

impl Vars {
    /// An empty map.
    pub(crate) fn new() -> Self {
        Vars::default()
    }

    /// An empty map that keeps no digest (cheaper to change).
    pub(crate) fn untracked() -> Self {
        Vars {
            untracked: true,
            ..Vars::default()
        }
    }

    /// Number of names.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Digest of the changes that built this map (see the module docs).
    pub(crate) fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Sets `name` (an `ENV`): a new name goes last, a known one keeps its place.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.insert(name, Some(value), Place::Keep, b"set");
    }

    /// Declares `name` (an `ARG`), last in order, with or without a value.
    pub(crate) fn declare(&mut self, name: &str, value: Option<&str>) {
        self.insert(name, value, Place::Last, b"declare");
    }

    /// The entry of `name`: `Some(None)` when declared without a value.
    pub(crate) fn get(&self, name: &str) -> Option<Option<&str>> {
        let h = hash(name);
        let mut node = self.root.as_deref()?;
        let mut shift = 0;
        loop {
            match node {
                Node::Branch { bitmap, children } => {
                    let bit = slot(h, shift);
                    if bitmap & (1 << bit) == 0 {
                        return None;
                    }
                    node = children.get(index(*bitmap, bit))?;
                    shift += BITS;
                }
                Node::Leaf { hash, entries } => {
                    if *hash != h {
                        return None;
                    }
                    let e = entries.iter().find(|e| &*e.name == name)?;
                    return Some(e.value.as_deref());
                }
            }
        }
    }

    /// True when `name` is present (with or without a value).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All entries in definition order.
    pub(crate) fn entries(&self) -> Vec<(&str, Option<&str>)> {
        let mut all: Vec<&Entry> = Vec::with_capacity(self.len);
        let mut stack: Vec<&Node> = self.root.as_deref().into_iter().collect();
        while let Some(node) = stack.pop() {
            match node {
                Node::Branch { children, .. } => stack.extend(children.iter().map(|c| &**c)),
                Node::Leaf { entries, .. } => all.extend(entries),
            }
        }
        all.sort_unstable_by_key(|e| e.seq);
        all.into_iter()
            .map(|e| (&*e.name, e.value.as_deref()))
            .collect()
    }

    fn insert(&mut self, name: &str, value: Option<&str>, place: Place, op: &[u8]) {
        if !self.untracked {
            self.update_digest(name, value, op);
        }
        let h = hash(name);
        let entry = Entry {
            name: name.into(),
            value: value.map(Arc::from),
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let (root, added) = insert(self.root.as_ref(), 0, h, entry, place);
        self.root = Some(root);
        if added {
            self.len += 1;
        }
    }

    fn update_digest(&mut self, name: &str, value: Option<&str>, op: &[u8]) {
        // One buffer, one hash call (cheaper than feeding a hasher piecewise).
        let mut buf = Vec::with_capacity(64 + name.len() + value.map_or(0, str::len));
        buf.extend_from_slice(&self.digest);
        for part in [op, name.as_bytes()] {
            buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
            buf.extend_from_slice(part);
        }
        match value {
            Some(v) => {
                buf.push(1);
                buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
                buf.extend_from_slice(v.as_bytes());
            }
            None => buf.push(0),
        }
        self.digest = *blake3::hash(&buf).as_bytes();
    }
}

/// Inserts into the subtree at `shift` bits (path copying). Recursion depth
/// is bounded by the hash width (64 / 5 + 1 levels), not by the input.
fn insert(
    node: Option<&Arc<Node>>,
    shift: u32,
    h: u64,
    entry: Entry,
    place: Place,
) -> (Arc<Node>, bool) {
    let Some(node) = node else {
        return (leaf(h, entry), true);
    };
    match &**node {
        Node::Leaf { hash, entries } if *hash == h => {
            let mut entries = entries.clone();
            let added = match entries.iter_mut().find(|e| e.name == entry.name) {
                Some(old) => {
                    let seq = if place == Place::Keep {
                        old.seq
                    } else {
                        entry.seq
                    };
                    *old = Entry { seq, ..entry };
                    false
                }
                None => {
                    entries.push(entry);
                    true
                }
            };
            (Arc::new(Node::Leaf { hash: h, entries }), added)
        }
        Node::Leaf { hash, .. } => (split(shift, node.clone(), *hash, leaf(h, entry), h), true),
        Node::Branch { bitmap, children } => {
            let bit = slot(h, shift);
            let at = index(*bitmap, bit);
            let mut children = children.clone();
            let added = if bitmap & (1 << bit) == 0 {
                children.insert(at, leaf(h, entry));
                true
            } else {
                let (child, added) = insert(children.get(at), shift + BITS, h, entry, place);
                children[at] = child;
                added
            };
            let bitmap = bitmap | (1 << bit);
            (Arc::new(Node::Branch { bitmap, children }), added)
        }
    }
}

fn leaf(hash: u64, entry: Entry) -> Arc<Node> {
    Arc::new(Node::Leaf {
        hash,
        entries: vec![entry],
    })
}

/// A branch at `shift` holding two leaves with different hashes.
fn split(shift: u32, a: Arc<Node>, ha: u64, b: Arc<Node>, hb: u64) -> Arc<Node> {
    // Levels where both hashes agree become single-child branches; built
    // bottom-up so no recursion is needed.
    let mut shift_at = shift;
    while slot(ha, shift_at) == slot(hb, shift_at) {
        shift_at += BITS;
    }
    let (sa, sb) = (slot(ha, shift_at), slot(hb, shift_at));
    let children = if sa < sb { vec![a, b] } else { vec![b, a] };
    let mut node = Arc::new(Node::Branch {
        bitmap: (1 << sa) | (1 << sb),
        children,
    });
    while shift_at > shift {
        shift_at -= BITS;
        node = Arc::new(Node::Branch {
            bitmap: 1 << slot(ha, shift_at),
            children: vec![node],
        });
    }
    node
}

/// Expansion looks variables up here: set ones only.
impl Env for Vars {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }
}

/// What a stage's words are expanded with: `ENV` wins over `ARG`.
pub(crate) struct Scope<'a> {
    pub env: &'a Vars,
    pub args: &'a Vars,
}

impl Env for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        match self.env.get(name) {
            Some(v) => v,
            None => self.args.lookup(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_place_and_declare_moves_last() {
        let mut v = Vars::new();
        v.set("A", "1");
        v.set("B", "2");
        v.set("A", "3");
        assert_eq!(v.entries(), vec![("A", Some("3")), ("B", Some("2"))]);
        v.declare("A", None);
        assert_eq!(v.entries(), vec![("B", Some("2")), ("A", None)]);
        assert_eq!(v.lookup("A"), None);
        assert!(v.contains("A"));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn copies_are_independent() {
        let mut a = Vars::new();
        for i in 0..2000 {
            a.set(&format!("K{i}"), &i.to_string());
        }
        let mut b = a.clone();
        b.set("K7", "changed");
        b.set("NEW", "x");
        assert_eq!(a.get("K7"), Some(Some("7")));
        assert_eq!(b.get("K7"), Some(Some("changed")));
        assert_eq!(a.get("NEW"), None);
        assert_eq!((a.len(), b.len()), (2000, 2001));
        let keys: Vec<&str> = b.entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys[7], "K7");
        assert_eq!(keys.last(), Some(&"NEW"));
        for i in 0..2000 {
            assert_eq!(a.lookup(&format!("K{i}")), Some(i.to_string().as_str()));
        }
    }

    #[test]
    fn digest_follows_content() {
        let mut a = Vars::new();
        let mut b = Vars::new();
        a.set("A", "1");
        b.set("A", "1");
        assert_eq!(a.digest(), b.digest());
        b.set("A", "2");
        assert_ne!(a.digest(), b.digest());
        let mut c = Vars::new();
        c.declare("A", Some("1"));
        assert_ne!(a.digest(), c.digest(), "ENV and ARG differ");
        let mut d = Vars::new();
        d.set("A", "");
        let mut e = Vars::new();
        e.declare("A", None);
        assert_ne!(d.digest(), e.digest(), "empty and unset differ");
    }

    #[test]
    fn splits_deep_hash_prefixes() {
        // Exercise `split` on hashes that agree for several levels.
        let a = leaf(
            0b00000_00001,
            Entry {
                name: "a".into(),
                value: None,
                seq: 0,
            },
        );
        let b = leaf(
            0b00001_00001,
            Entry {
                name: "b".into(),
                value: None,
                seq: 1,
            },
        );
        let n = split(0, a, 0b00000_00001, b, 0b00001_00001);
        match &*n {
            Node::Branch { bitmap, children } => {
                assert_eq!((*bitmap, children.len()), (1 << 1, 1));
                assert!(matches!(&*children[0], Node::Branch { bitmap, .. } if *bitmap == 0b11));
            }
            Node::Leaf { .. } => panic!("expected a branch"),
        }
    }
}
