//! The kernel-overlay snapshotter: each committed layer is unpacked once
//! into `<key>/fs` and stacked as an overlay lowerdir; an active snapshot's
//! `fs` is the overlay upper dir, so committing it is a rename.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::meta::{check_diff_id, io_err, tree_size, Dirs, Meta};
use super::{SnapshotError, SnapshotInfo, SnapshotState, Snapshotter, StagedLayer};
use crate::digest::Digest;
use crate::layer::{self, ApplyMode, ApplyStats, DiffOptions, LayerInfo};
use crate::mount::{self, Mount};
use crate::process;

/// Directory of short links to layer trees (not a valid key: starts with '.').
const LINKS: &str = ".l";

/// Snapshots stacked with the kernel's overlay filesystem.
#[derive(Debug)]
pub struct OverlaySnapshotter {
    dirs: Dirs,
}

impl OverlaySnapshotter {
    /// Opens (creating) a snapshot directory, e.g. `$RBK_ROOT/snapshots`.
    /// Does not check that overlay works; see [`overlay_supported`].
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Ok(Self {
            dirs: Dirs::open(root)?,
        })
    }

    /// The directory this snapshotter keeps its snapshots in.
    pub fn root(&self) -> &Path {
        self.dirs.root()
    }

    /// The lower dirs for a snapshot on `parent`, nearest first, as short
    /// links (`.l/<12 hex>` → `../<key>/fs`) so that about twice as many
    /// layers fit in the kernel's one-page mount option limit as with the
    /// 64-hex chain-id paths.
    pub(crate) fn lower_dirs(&self, parent: Option<&str>) -> Result<Vec<PathBuf>, SnapshotError> {
        match parent {
            None => Ok(Vec::new()),
            Some(p) => self
                .dirs
                .chain(p)?
                .iter()
                .map(|k| self.short_link(k))
                .collect(),
        }
    }

    fn link_path(&self, key: &str) -> PathBuf {
        let id = Digest::of(key.as_bytes());
        self.dirs.root().join(LINKS).join(&id.hex()[..12])
    }

    /// Creates (if needed) and returns the short link to `key`'s tree.
    /// Made lazily when mounts are computed, so a crash can at worst leave
    /// a dangling link, which the next call repairs.
    fn short_link(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let link = self.link_path(key);
        let want = Path::new("..").join(key).join("fs");
        if fs::read_link(&link).is_ok_and(|t| t == want) {
            return Ok(link);
        }
        let dir = self.dirs.root().join(LINKS);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        // Build aside and rename over, so a racing process never sees a
        // missing or wrong link.
        // The temp name is unique per call: threads of one process race
        // here too (two steps preparing on the same parent).
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{}-{seq}-{}", std::process::id(), key));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&want, &tmp).map_err(io_err("create symlink", &tmp))?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            // Someone else made the same link meanwhile: that is fine.
            if !fs::read_link(&link).is_ok_and(|t| t == want) {
                return Err(io_err("rename", &link)(e));
            }
        }
        Ok(link)
    }

    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        state: SnapshotState,
    ) -> Result<Vec<Mount>, SnapshotError> {
        super::meta::validate_key(key)?;
        if let Some(p) = parent {
            self.dirs.meta_in_state(p, SnapshotState::Committed)?;
        }
        let st = self.dirs.stage()?;
        if state == SnapshotState::Active {
            let work = st.path.join("work");
            fs::create_dir(&work).map_err(io_err("create", &work))?;
        }
        let meta = Meta {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            state,
            size: None,
        };
        // Computed first: a chain too deep to mount must not leave a
        // snapshot behind.
        let mounts = self.mounts_for(&meta)?;
        self.dirs.publish(st, key, &meta)?;
        Ok(mounts)
    }

    fn mounts_for(&self, meta: &Meta) -> Result<Vec<Mount>, SnapshotError> {
        let lowers = self.lower_dirs(meta.parent.as_deref())?;
        let own = self.dirs.fs(&meta.key);
        let bind = |src: PathBuf, ro: bool| Mount {
            kind: "bind".into(),
            source: src,
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        };
        let mut options = Vec::new();
        match (meta.state, lowers.len()) {
            (SnapshotState::Active, 0) => return Ok(vec![bind(own, false)]),
            (SnapshotState::Active, _) => {
                options.push(format!(
                    "workdir={}",
                    self.dirs.dir(&meta.key).join("work").display()
                ));
                options.push(format!("upperdir={}", own.display()));
            }
            (_, 0) => return Ok(vec![bind(own, true)]),
            (_, 1) => return Ok(vec![bind(lowers[0].clone(), true)]),
            _ => options.push("ro".into()),
        }
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        options.push(format!("lowerdir={lower}"));
        options.extend(disable_unrepresentable_features());
        options.extend(userxattr());
        // As mounted: the short links named relative to their directory.
        let len = mount::overlay_data_len(&options);
        let limit = mount::page_size() - 1;
        if len > limit {
            return Err(SnapshotError::ChainTooDeep {
                key: meta.key.clone(),
                depth: lowers.len(),
                len,
                limit,
            });
        }
        Ok(vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        }])
    }
}

/// Options turning off overlay features whose results a layer tar cannot
/// express (directory renames recorded as redirects, metadata-only copy-ups),
/// for kernels that enable them by default.
/// In a user namespace (rootless) overlay keeps whiteouts and opaque
/// markers in `user.overlay.*` xattrs, and must be told so.
fn userxattr() -> Option<String> {
    process::in_user_namespace().then(|| "userxattr".to_string())
}

fn disable_unrepresentable_features() -> Vec<String> {
    static OPTS: OnceLock<Vec<String>> = OnceLock::new();
    OPTS.get_or_init(|| {
        let on = |p: &str| {
            fs::read_to_string(format!("/sys/module/overlay/parameters/{p}"))
                .is_ok_and(|v| v.trim() == "Y")
        };
        let mut v = Vec::new();
        if on("redirect_dir") {
            v.push("redirect_dir=off".to_string());
        }
        if on("metacopy") {
            v.push("metacopy=off".to_string());
        }
        v
    })
    .clone()
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, SnapshotState::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, SnapshotState::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let meta = self.dirs.meta(key)?;
        self.mounts_for(&meta)
    }

    fn kind(&self) -> super::SnapshotterKind {
        super::SnapshotterKind::Overlay
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        super::meta::validate_key(name)?;
        let meta = self.dirs.meta_in_state(key, SnapshotState::Active)?;
        // overlay's work dir is scratch (it may hold a mode-000 `work/work`);
        // it is not part of the layer.
        let work = self.dirs.dir(key).join("work");
        if work.exists() {
            fs::remove_dir_all(&work).map_err(io_err("remove", &work))?;
        }
        let size = tree_size(&self.dirs.fs(key))?;
        let committed = Meta {
            key: name.to_string(),
            parent: meta.parent,
            state: SnapshotState::Committed,
            size: Some(size),
        };
        self.dirs.rename(key, name, &committed)
    }

    fn stack(&self, name: &str, parent: Option<&str>, layer: &str) -> Result<bool, SnapshotError> {
        super::meta::validate_key(name)?;
        if self.exists(name) {
            return Err(SnapshotError::AlreadyExists {
                key: name.to_string(),
            });
        }
        let source = self.dirs.meta_in_state(layer, SnapshotState::Committed)?;
        if source.parent.is_some() {
            return Ok(false);
        }
        if let Some(p) = parent {
            self.dirs.meta_in_state(p, SnapshotState::Committed)?;
        }
        // With no lower directory, the upper directory holds exactly the
        // layer's files and no whiteouts: over any parent it means what the
        // layer's tar applied there would.
        let st = self.dirs.stage()?;
        super::tree::link_tree(&self.dirs.fs(layer), &st.fs())?;
        let meta = Meta {
            key: name.to_string(),
            parent: parent.map(str::to_string),
            state: SnapshotState::Committed,
            size: source.size,
        };
        self.dirs.publish(st, name, &meta)?;
        Ok(true)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.dirs.remove(key)?;
        // The snapshot is gone; a dangling link would only waste an inode.
        let _ = fs::remove_file(self.link_path(key));
        Ok(())
    }

    fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError> {
        self.dirs.info(self.dirs.meta(key)?)
    }

    fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        self.dirs
            .all()?
            .into_iter()
            .map(|m| self.dirs.info(m))
            .collect()
    }

    fn exists(&self, key: &str) -> bool {
        self.dirs.meta(key).is_ok()
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        self.dirs.meta(key)?;
        Ok(self.dirs.fs(key))
    }

    fn diff(
        &self,
        key: &str,
        out: &mut dyn Write,
        opts: DiffOptions,
    ) -> Result<LayerInfo, SnapshotError> {
        self.dirs.meta(key)?;
        Ok(layer::diff_upper(&self.dirs.fs(key), out, opts)?)
    }

    fn apply_layer(
        &self,
        name: &str,
        parent: Option<&str>,
        layer: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<ApplyStats, SnapshotError> {
        self.check_slot(name, parent)?;
        let lowers: Vec<PathBuf> = match parent {
            Some(p) => self
                .dirs
                .chain(p)?
                .iter()
                .map(|k| self.dirs.fs(k))
                .collect(),
            None => Vec::new(),
        };
        let st = self.dirs.stage()?;
        let stats = layer::apply_over(layer, &st.fs(), ApplyMode::Overlay, &lowers)?;
        check_diff_id(name, expected, &stats)?;
        self.publish_committed(st, name, parent)?;
        Ok(stats)
    }

    fn stage_layer(
        &self,
        name: &str,
        layer: &mut dyn Read,
        expected: Option<&Digest>,
        on_parent: bool,
    ) -> Result<Option<StagedLayer>, SnapshotError> {
        let staging = self.dirs.stage()?;
        // A layer's dir holds just its own changes; only a parent it does
        // not carry itself needs the layers below (see `apply_detached`).
        let stats = if on_parent {
            match layer::apply_detached(layer, &staging.fs())? {
                Some(stats) => stats,
                None => return Ok(None),
            }
        } else {
            layer::apply_over(layer, &staging.fs(), ApplyMode::Overlay, &[])?
        };
        check_diff_id(name, expected, &stats)?;
        Ok(Some(StagedLayer { staging, stats }))
    }

    fn commit_staged(
        &self,
        staged: StagedLayer,
        name: &str,
        parent: Option<&str>,
    ) -> Result<ApplyStats, SnapshotError> {
        self.check_slot(name, parent)?;
        let StagedLayer { staging, stats } = staged;
        self.publish_committed(staging, name, parent)?;
        Ok(stats)
    }
}

impl OverlaySnapshotter {
    /// Checks that a layer can go under `name` over `parent`: the name is
    /// valid and free, the parent committed.
    fn check_slot(&self, name: &str, parent: Option<&str>) -> Result<(), SnapshotError> {
        super::meta::validate_key(name)?;
        if self.exists(name) {
            return Err(SnapshotError::AlreadyExists {
                key: name.to_string(),
            });
        }
        if let Some(p) = parent {
            self.dirs.meta_in_state(p, SnapshotState::Committed)?;
        }
        Ok(())
    }

    /// Publishes a layer applied into `staging` as committed `name`.
    fn publish_committed(
        &self,
        staging: super::meta::Staging,
        name: &str,
        parent: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let meta = Meta {
            key: name.to_string(),
            parent: parent.map(str::to_string),
            state: SnapshotState::Committed,
            size: Some(tree_size(&staging.fs())?),
        };
        self.dirs.publish(staging, name, &meta)
    }
}

/// Whether overlay mounts work here: needs root and kernel support, probed
/// once by mounting a tiny overlay in a temp dir and writing through it.
pub fn overlay_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| process::is_root() && probe_tmp().unwrap_or(false))
}

/// Whether overlay mounts work with layers kept in `dir` (the filesystem
/// under a snapshot root matters: overlay cannot use another overlay, or
/// some network filesystems, as its upper layer). Not cached.
///
/// A success is remembered in `dir/.overlay-works` with the kernel's boot
/// id: until the next boot, later processes (every `rbk` command opens the
/// store) skip the probe's mount, writes and cleanup.
pub fn overlay_works_in(dir: &Path) -> bool {
    if !process::is_root() {
        return false;
    }
    let marker = dir.join(".overlay-works");
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    if let Some(b) = &boot {
        if fs::read_to_string(&marker).is_ok_and(|m| m == *b) {
            return true;
        }
    }
    // Probe inside the staging area, named like staging dirs (pid first) so
    // a concurrent `open` does not sweep it away mid-probe.
    let staging = dir.join(".tmp");
    let works = fs::create_dir_all(&staging).is_ok()
        && tempfile::Builder::new()
            .prefix(&format!("{}-probe-", std::process::id()))
            .tempdir_in(&staging)
            .is_ok_and(|t| probe(t.path()).unwrap_or(false));
    if let (true, Some(b)) = (works, boot) {
        // Best effort: without it the next process probes again.
        let _ = tempfile::NamedTempFile::new_in(&staging)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b.as_bytes()).map(|()| f))
            .and_then(|f| f.persist(&marker).map_err(|e| e.error));
    }
    works
}

fn probe_tmp() -> std::io::Result<bool> {
    let t = tempfile::tempdir()?;
    probe(t.path())
}

fn probe(base: &Path) -> std::io::Result<bool> {
    let d = |n: &str| -> std::io::Result<PathBuf> {
        let p = base.join(n);
        fs::create_dir(&p)?;
        Ok(p)
    };
    let (lower, upper, work, merged) = (d("l")?, d("u")?, d("w")?, d("m")?);
    fs::write(lower.join("f"), b"lower")?;
    let m = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ]
        .into_iter()
        .chain(userxattr())
        .collect(),
    };
    let Ok(guard) = mount::mount_all(&[m], &merged) else {
        return Ok(false);
    };
    let ok = fs::read(merged.join("f")).is_ok_and(|b| b == b"lower")
        && fs::write(merged.join("g"), b"upper").is_ok();
    let unmounted = guard.unmount().is_ok();
    Ok(ok && unmounted && upper.join("g").exists())
}
