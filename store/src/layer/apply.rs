//! Unpacking a layer tar onto a directory, never writing outside it.
//!
//! Safety rules, checked for every entry before anything is written:
//! - names are cleaned (leading `/` and `.` dropped, as GNU tar and Docker
//!   do) and any `..` component is refused;
//! - every parent directory of an entry must be a real directory inside the
//!   target: a symlink among the parents is refused, not followed, so an
//!   entry can never write through a link (layers made from real trees never
//!   need that; a tar that does is malformed or hostile);
//! - an existing entry is unlinked before its replacement is created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`, so no write lands on a symlink or on an
//!   inode shared through a hard link;
//! - hard link targets obey the same rules and must be files the same layer
//!   holds (as every layer made from a real tree does: a link to a lower
//!   layer's file is copied up with it), never a lower layer's file.
//!
//! Both snapshotters apply the same rule. The copy snapshotter applies onto
//! the full tree; the overlay one into a fresh layer dir, looking up what
//! its lower layers show (see `lower.rs`): a parent that is a symlink or a
//! file there is refused just as in the full tree, and a parent that is a
//! directory there is made in the layer dir with its mode and owner.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{
    clean_entry_path, is_overlay_whiteout, lstat_opt, ApplyMode, ApplyStats, LayerError,
    OPAQUE_MARKER, WHITEOUT_PREFIX,
};
use crate::compress::HashingReader;
use crate::process;
use crate::sys::{self, NodeKind};

/// Applies the uncompressed layer tar `r` onto `target` (an existing
/// directory): whiteouts delete (`Merge`) or become overlay whiteouts
/// (`Overlay`); ownership (as root), modes, xattrs, mtimes, hard links,
/// symlinks, device nodes and fifos are restored. Returns the diffID of the
/// whole stream read.
///
/// On an error the target may hold part of the layer; callers apply into a
/// staging directory and discard it on failure.
pub fn apply(r: impl Read, target: &Path, mode: ApplyMode) -> Result<ApplyStats, LayerError> {
    apply_over(r, target, mode, &[])
}

/// [`apply`] into a fresh overlay layer dir `target` over the layer dirs
/// `lowers` (nearest first): what they show decides, as it would in the
/// full tree, whether a parent may be written through.
pub fn apply_over(
    r: impl Read,
    target: &Path,
    mode: ApplyMode,
    lowers: &[PathBuf],
) -> Result<ApplyStats, LayerError> {
    run(r, target, mode, Some(lowers))
}

/// [`apply_over`] into a fresh overlay layer dir `target` before its lower
/// layers are on disk: the layer is applied just as over them as long as
/// it never needs to know what they show (every parent of its entries is
/// in the layer itself or under one of its opaque directories).
/// `Ok(None)` when it does: the layer must then be applied over its lower
/// layers ([`apply_over`]) into a fresh dir; `target` is left half-filled.
pub fn apply_detached(r: impl Read, target: &Path) -> Result<Option<ApplyStats>, LayerError> {
    match run(r, target, ApplyMode::Overlay, None) {
        Ok(stats) => Ok(Some(stats)),
        Err(LayerError::NeedsLowers { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn run(
    r: impl Read,
    target: &Path,
    mode: ApplyMode,
    lowers: Option<&[PathBuf]>,
) -> Result<ApplyStats, LayerError> {
    let tmeta = fs::symlink_metadata(target).map_err(LayerError::io("open target", target))?;
    if !tmeta.is_dir() {
        return Err(LayerError::Io {
            op: "apply a layer onto",
            path: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        });
    }
    let mut hr = HashingReader::new(r);
    let mut st = Applier {
        target: target.to_path_buf(),
        lowers: lowers.map(<[PathBuf]>::to_vec),
        mode,
        root: process::is_root(),
        verified: HashSet::new(),
        created: HashSet::new(),
        dir_times: Vec::new(),
        buf: vec![0u8; 256 * 1024],
        last: None,
        entries: 0,
        whiteouts: 0,
    };
    {
        let mut ar = tar::Archive::new(&mut hr);
        let entries = ar.entries().map_err(|source| LayerError::Read {
            after: None,
            source,
        })?;
        for e in entries {
            let mut e = e.map_err(|source| LayerError::Read {
                after: st.last.clone(),
                source,
            })?;
            st.entry(&mut e)?;
        }
    }
    st.finish_dir_times()?;
    let (diff_id, size) = hr.drain().map_err(|source| LayerError::Read {
        after: st.last.clone(),
        source,
    })?;
    Ok(ApplyStats {
        diff_id,
        size,
        entries: st.entries,
        whiteouts: st.whiteouts,
    })
}

struct Applier {
    target: PathBuf,
    /// The lower layer dirs under an overlay layer dir, nearest first;
    /// `None` when they exist but are not known ([`apply_detached`]): a
    /// lookup in them fails with [`LayerError::NeedsLowers`].
    lowers: Option<Vec<PathBuf>>,
    mode: ApplyMode,
    root: bool,
    /// Relative paths known to be real directories (not symlinks) now.
    verified: HashSet<PathBuf>,
    /// Relative paths this layer wrote (whiteouts never hide those).
    created: HashSet<PathBuf>,
    /// Directory mtimes, set last because filling a directory changes it.
    dir_times: Vec<(PathBuf, filetime::FileTime)>,
    buf: Vec<u8>,
    last: Option<String>,
    entries: u64,
    whiteouts: u64,
}

/// Metadata of an entry, read out of the header and PAX records up front.
struct Attrs {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: filetime::FileTime,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn remove(p: &Path, m: &Metadata) -> Result<(), LayerError> {
    if m.is_dir() {
        fs::remove_dir_all(p).map_err(LayerError::io("remove", p))
    } else {
        fs::remove_file(p).map_err(LayerError::io("remove", p))
    }
}

/// `"<sec>[.<frac>]"` from a PAX `mtime` record.
fn parse_pax_time(v: &[u8]) -> Option<filetime::FileTime> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut nsec = 0u32;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        nsec = format!("{digits:0<9}").parse().ok()?;
    }
    Some(filetime::FileTime::from_unix_time(sec, nsec))
}

impl Applier {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        self.last = Some(shown.clone());
        let kind = e.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let rel = clean_entry_path(Path::new(OsStr::from_bytes(&raw))).map_err(|reason| {
            LayerError::Unsafe {
                entry: shown.clone(),
                reason,
            }
        })?;
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            // The root itself ("./"): its metadata belongs to the snapshot.
            return Ok(());
        };
        let name = name.as_bytes();
        if name == OPAQUE_MARKER.as_bytes() {
            return self.opaque(parent, &shown);
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (`.wh..wh.plnk`, ...): nothing to apply.
            return Ok(());
        }
        if let Some(victim) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if victim.is_empty() || victim == b"." || victim == b".." {
                return Err(LayerError::Unsafe {
                    entry: shown,
                    reason: "it is a whiteout for no valid name".into(),
                });
            }
            return self.whiteout(&parent.join(OsStr::from_bytes(victim)), &shown);
        }
        self.create(e, &rel, &shown)
    }

    /// Checks (and with `create`, makes) every component of `dir` as a real
    /// directory. Returns false when one is missing and `create` is off.
    fn dirs(&mut self, dir: &Path, create: bool, shown: &str) -> Result<bool, LayerError> {
        let mut cur = PathBuf::new();
        for c in dir.components() {
            cur.push(c);
            if self.verified.contains(&cur) {
                continue;
            }
            let abs = self.target.join(&cur);
            match lstat_opt(&abs)? {
                Some(m) if m.is_dir() => {}
                Some(m) if m.file_type().is_symlink() => {
                    return Err(LayerError::Unsafe {
                        entry: shown.to_string(),
                        reason: format!(
                            "{} is a symlink; writing through it could escape the target",
                            cur.display()
                        ),
                    })
                }
                // Deleted earlier in this layer, made again as a parent: a
                // new, empty directory over the lower one (opaque), as in
                // the full tree where the whiteout deleted it.
                Some(m) if create && self.mode == ApplyMode::Overlay && is_overlay_whiteout(&m) => {
                    remove(&abs, &m)?;
                    self.make_parent(&abs, None)?;
                    sys::set_xattr(&abs, OsStr::new(super::opaque_xattr()), b"y")
                        .map_err(LayerError::io("mark opaque", &abs))?;
                    self.created.insert(cur.clone());
                }
                Some(_) => {
                    return Err(LayerError::Entry {
                        entry: shown.to_string(),
                        reason: format!("{} is not a directory", cur.display()),
                    })
                }
                None => {
                    let below = self.lower_dir(&cur, shown)?;
                    if !create {
                        return Ok(below.is_some());
                    }
                    self.make_parent(&abs, below.as_ref())?;
                    self.created.insert(cur.clone());
                }
            }
            self.verified.insert(cur.clone());
        }
        Ok(true)
    }

    /// What the lower layers show at `rel` (missing from the layer dir), as
    /// the full tree would: a directory (`Some`), nothing (`None`), or an
    /// error for a symlink or a file, with the words the full tree's check
    /// uses.
    fn lower_dir(&self, rel: &Path, shown: &str) -> Result<Option<Metadata>, LayerError> {
        // No lower layers: nothing to look at (not even opaque markers).
        if self.lowers.as_ref().is_some_and(Vec::is_empty) || self.hides_lowers(rel) {
            return Ok(None);
        }
        let Some(lowers) = &self.lowers else {
            return Err(LayerError::NeedsLowers {
                entry: shown.to_string(),
            });
        };
        match super::lower::lower_entry(lowers, rel)? {
            Some(m) if m.file_type().is_symlink() => Err(LayerError::Unsafe {
                entry: shown.to_string(),
                reason: format!(
                    "{} is a symlink; writing through it could escape the target",
                    rel.display()
                ),
            }),
            Some(m) if !m.is_dir() => Err(LayerError::Entry {
                entry: shown.to_string(),
                reason: format!("{} is not a directory", rel.display()),
            }),
            found => Ok(found),
        }
    }

    /// Whether an ancestor of `rel` in the layer dir is opaque, so the lower
    /// layers show nothing under it.
    fn hides_lowers(&self, rel: &Path) -> bool {
        rel.ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| super::lower::is_opaque(&self.target.join(a)))
    }

    /// Makes missing parent `abs`: as the lower layers' directory there
    /// (its mode, and owner as root), as overlay's copy-up would, or 0755.
    fn make_parent(&self, abs: &Path, below: Option<&Metadata>) -> Result<(), LayerError> {
        use std::os::unix::fs::MetadataExt;
        fs::create_dir(abs).map_err(LayerError::io("create directory", abs))?;
        let mode = below.map_or(0o755, |m| m.mode() & 0o7777);
        if let (Some(m), true) = (below, self.root) {
            std::os::unix::fs::lchown(abs, Some(m.uid()), Some(m.gid()))
                .map_err(LayerError::io("chown", abs))?;
        }
        fs::set_permissions(abs, fs::Permissions::from_mode(mode))
            .map_err(LayerError::io("chmod", abs))
    }

    /// Drops cached knowledge about `rel` and everything below it, after it
    /// was removed or replaced.
    fn forget(&mut self, rel: &Path, was_dir: bool) {
        if was_dir {
            self.verified.retain(|v| !v.starts_with(rel));
            self.created.retain(|v| !v.starts_with(rel));
        }
    }

    fn attrs<R: Read>(&self, e: &mut tar::Entry<'_, R>, shown: &str) -> Result<Attrs, LayerError> {
        let bad = |field: &'static str, source: io::Error| LayerError::Header {
            entry: shown.to_string(),
            field,
            source,
        };
        let h = e.header();
        let mode = h.mode().map_err(|er| bad("mode", er))? & 0o7777;
        // Some writers leave numeric fields blank; blank means 0 (as in GNU
        // tar), anything else unparsable is an error.
        let blank = |f: &[u8]| f.iter().all(|&b| b == 0 || b == b' ');
        let uid = match h.uid() {
            Ok(v) => v,
            Err(_) if blank(&h.as_old().uid) => 0,
            Err(er) => return Err(bad("uid", er)),
        };
        let gid = match h.gid() {
            Ok(v) => v,
            Err(_) if blank(&h.as_old().gid) => 0,
            Err(er) => return Err(bad("gid", er)),
        };
        let mut mtime = filetime::FileTime::from_unix_time(
            i64::try_from(h.mtime().map_err(|er| bad("mtime", er))?).unwrap_or(i64::MAX),
            0,
        );
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().map_err(|er| bad("PAX header", er))? {
            for ext in exts {
                let ext = ext.map_err(|er| bad("PAX header", er))?;
                let key = ext.key_bytes();
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((x.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Attrs {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn create<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        rel: &Path,
        shown: &str,
    ) -> Result<(), LayerError> {
        let kind = e.header().entry_type();
        let attrs = self.attrs(e, shown)?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        self.dirs(parent, true, shown)?;
        let dest = self.target.join(rel);
        let is_dir_entry = kind == tar::EntryType::Directory;
        let mut replaces_whiteout = false;
        if let Some(m) = lstat_opt(&dest)? {
            if !(is_dir_entry && m.is_dir()) {
                replaces_whiteout = is_overlay_whiteout(&m);
                remove(&dest, &m)?;
                self.forget(rel, m.is_dir());
            }
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.write_file(e, &dest, shown)?
            }
            tar::EntryType::Directory => {
                if lstat_opt(&dest)?.is_none() {
                    fs::create_dir(&dest).map_err(LayerError::io("create directory", &dest))?;
                }
                // `.wh.d` then `d/` in one layer: the lower `d` is deleted and
                // a new one made, which overlay spells as an opaque dir.
                if replaces_whiteout && self.mode == ApplyMode::Overlay {
                    sys::set_xattr(&dest, OsStr::new(super::opaque_xattr()), b"y")
                        .map_err(LayerError::io("mark opaque", &dest))?;
                }
                self.verified.insert(rel.to_path_buf());
            }
            tar::EntryType::Symlink => {
                let link = e.link_name_bytes().ok_or_else(|| LayerError::Entry {
                    entry: shown.to_string(),
                    reason: "symlink without a target".into(),
                })?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &dest)
                    .map_err(LayerError::io("create symlink", &dest))?;
            }
            tar::EntryType::Link => return self.hard_link(e, rel, &dest, shown),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if !self.node(e.header(), kind, &dest, attrs.mode)? {
                    self.entries += 1;
                    return Ok(());
                }
            }
            other => {
                return Err(LayerError::Entry {
                    entry: shown.to_string(),
                    reason: format!("unsupported tar entry type {other:?}"),
                })
            }
        }
        self.set_attrs(&dest, kind, &attrs, shown)?;
        self.created.insert(rel.to_path_buf());
        self.entries += 1;
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        dest: &Path,
        shown: &str,
    ) -> Result<(), LayerError> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(LayerError::io("create", dest))?;
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(er) if er.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::Read {
                        after: Some(shown.to_string()),
                        source,
                    })
                }
            };
            f.write_all(&self.buf[..n])
                .map_err(LayerError::io("write", dest))?;
        }
        Ok(())
    }

    /// Makes a device node or fifo; false when it was left out (rootless:
    /// a user namespace may not make devices; a container's /dev is its
    /// own tmpfs anyway, and rootless podman does the same).
    fn node(
        &mut self,
        h: &tar::Header,
        kind: tar::EntryType,
        dest: &Path,
        mode: u32,
    ) -> Result<bool, LayerError> {
        let num = |v: io::Result<Option<u32>>| u64::from(v.ok().flatten().unwrap_or(0));
        let (major, minor) = (num(h.device_major()), num(h.device_minor()));
        let nk = match kind {
            tar::EntryType::Char => NodeKind::Char,
            tar::EntryType::Block => NodeKind::Block,
            _ => NodeKind::Fifo,
        };
        match sys::make_node(dest, nk, mode, major, minor) {
            Ok(()) => Ok(true),
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM)
                    && nk != NodeKind::Fifo
                    && process::in_user_namespace() =>
            {
                Ok(false)
            }
            Err(e) => Err(LayerError::io("create device node", dest)(e)),
        }
    }

    fn hard_link<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        rel: &Path,
        dest: &Path,
        shown: &str,
    ) -> Result<(), LayerError> {
        let unsafe_err = |reason: String| LayerError::Unsafe {
            entry: shown.to_string(),
            reason,
        };
        let link = e.link_name_bytes().ok_or_else(|| LayerError::Entry {
            entry: shown.to_string(),
            reason: "hard link without a target".into(),
        })?;
        let link_shown = String::from_utf8_lossy(&link).into_owned();
        let lrel = clean_entry_path(Path::new(OsStr::from_bytes(&link)))
            .map_err(|r| unsafe_err(format!("hard link target {link_shown:?}: {r}")))?;
        let Some(lparent) = lrel.parent() else {
            return Err(unsafe_err("it is a hard link to the root directory".into()));
        };
        // The target's parents get the same no-symlink check as entries, so
        // a link cannot reach a file outside through a symlinked directory.
        if !self.dirs(lparent, false, shown)? {
            return Err(LayerError::Entry {
                entry: shown.to_string(),
                reason: format!("hard link target {link_shown:?} does not exist"),
            });
        }
        let src = self.target.join(&lrel);
        if !self.created.contains(&lrel) {
            return Err(LayerError::Entry {
                entry: shown.to_string(),
                reason: format!(
                    "hard link target {link_shown:?} is not in this layer (a layer's hard links must point at files it holds itself)"
                ),
            });
        }
        match lstat_opt(&src)? {
            None => Err(LayerError::Entry {
                entry: shown.to_string(),
                reason: format!("hard link target {link_shown:?} does not exist"),
            }),
            Some(m) if m.is_dir() => Err(unsafe_err(format!(
                "hard link target {link_shown:?} is a directory"
            ))),
            Some(_) => {
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is
                // linked itself, never followed.
                fs::hard_link(&src, dest).map_err(LayerError::io("create hard link", dest))?;
                self.created.insert(rel.to_path_buf());
                self.entries += 1;
                Ok(())
            }
        }
    }

    fn set_attrs(
        &mut self,
        dest: &Path,
        kind: tar::EntryType,
        a: &Attrs,
        shown: &str,
    ) -> Result<(), LayerError> {
        // Order matters: chown clears setuid bits and file capabilities, so
        // it comes first, then xattrs, then the mode.
        if self.root {
            let id = |v: u64, what: &str| {
                u32::try_from(v).map_err(|_| LayerError::Entry {
                    entry: shown.to_string(),
                    reason: format!("{what} {v} is out of range"),
                })
            };
            std::os::unix::fs::lchown(dest, Some(id(a.uid, "uid")?), Some(id(a.gid, "gid")?))
                .map_err(LayerError::io("chown", dest))?;
        }
        for (k, v) in &a.xattrs {
            // A layer must not smuggle overlay control xattrs (opaque,
            // redirect) into a snapshot: only whiteout entries make those.
            if k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.") {
                continue;
            }
            if let Err(er) = sys::set_xattr(dest, OsStr::from_bytes(k), v) {
                let unsupported = er.raw_os_error() == Some(libc::ENOTSUP);
                // Unprivileged users cannot set trusted.*/security.*, and
                // Linux allows no user.* xattrs on symlinks: skip, as tar does.
                let denied = er.raw_os_error() == Some(libc::EPERM)
                    && (!self.root
                        || kind == tar::EntryType::Symlink
                        || process::in_user_namespace());
                if !(unsupported || denied) {
                    return Err(LayerError::io("set xattr on", dest)(er));
                }
            }
        }
        if kind != tar::EntryType::Symlink {
            fs::set_permissions(dest, fs::Permissions::from_mode(a.mode))
                .map_err(LayerError::io("chmod", dest))?;
        }
        if kind == tar::EntryType::Directory {
            self.dir_times.push((dest.to_path_buf(), a.mtime));
        } else {
            filetime::set_symlink_file_times(dest, a.mtime, a.mtime)
                .map_err(LayerError::io("set times of", dest))?;
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, shown: &str) -> Result<(), LayerError> {
        self.whiteouts += 1;
        // A whiteout hides lower layers only, never this layer's own files.
        if self.created.contains(rel) {
            return Ok(());
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let p = self.target.join(rel);
        match self.mode {
            ApplyMode::Merge => {
                if !self.dirs(parent, false, shown)? {
                    return Ok(());
                }
                if let Some(m) = lstat_opt(&p)? {
                    remove(&p, &m)?;
                    self.forget(rel, m.is_dir());
                }
            }
            ApplyMode::Overlay => {
                self.dirs(parent, true, shown)?;
                if let Some(m) = lstat_opt(&p)? {
                    remove(&p, &m)?;
                    self.forget(rel, m.is_dir());
                }
                sys::make_node(&p, NodeKind::Char, 0, 0, 0)
                    .map_err(LayerError::io("create whiteout", &p))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &Path, shown: &str) -> Result<(), LayerError> {
        self.whiteouts += 1;
        match self.mode {
            ApplyMode::Merge => {
                if self.dirs(dir, false, shown)? {
                    self.prune(dir)?;
                }
            }
            ApplyMode::Overlay => {
                self.dirs(dir, true, shown)?;
                let p = self.target.join(dir);
                sys::set_xattr(&p, OsStr::new(super::opaque_xattr()), b"y")
                    .map_err(LayerError::io("mark opaque", &p))?;
            }
        }
        Ok(())
    }

    /// Removes everything under `dir` that this layer did not write.
    fn prune(&mut self, dir: &Path) -> Result<(), LayerError> {
        let abs = self.target.join(dir);
        let rd = fs::read_dir(&abs).map_err(LayerError::io("read directory", &abs))?;
        let mut names = Vec::new();
        for ent in rd {
            names.push(
                ent.map_err(LayerError::io("read directory", &abs))?
                    .file_name(),
            );
        }
        for n in names {
            let crel = dir.join(&n);
            let cabs = abs.join(&n);
            let Some(m) = lstat_opt(&cabs)? else { continue };
            if self.created.contains(&crel) {
                if m.is_dir() {
                    self.prune(&crel)?;
                }
            } else {
                remove(&cabs, &m)?;
                self.forget(&crel, m.is_dir());
            }
        }
        Ok(())
    }

    fn finish_dir_times(&mut self) -> Result<(), LayerError> {
        for (p, t) in self.dir_times.drain(..) {
            match filetime::set_symlink_file_times(&p, t, t) {
                Ok(()) => {}
                // Removed later in the same layer.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LayerError::io("set times of", &p)(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        type Case<'a> = (&'a [u8], Option<(i64, u32)>);
        let cases: &[Case] = &[
            (b"1700000000", Some((1_700_000_000, 0))),
            (b"1700000000.5", Some((1_700_000_000, 500_000_000))),
            (b"12.123456789123", Some((12, 123_456_789))),
            (b"x", None),
        ];
        for (raw, want) in cases {
            let got = parse_pax_time(raw).map(|t| (t.unix_seconds(), t.nanoseconds()));
            assert_eq!(got, *want, "{raw:?}");
        }
    }
}
