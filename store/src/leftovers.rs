//! What dead processes leave in a store, and how to tell: build steps'
//! mount points under `tmp/` and their active snapshots (named after their
//! process), half-made snapshots, and the layers of containers no `rbk run`
//! holds any more. Swept when a store is opened; what is left, `rbk system
//! check` reports.

use std::fs;
use std::path::Path;

use crate::flock;
use crate::layout::Layout;
use crate::mount;
use crate::snapshot;

/// The key of the snapshot behind a build step's mount point under `tmp/`
/// (`active-<pid>-…-rootfs`, `view-<pid>-…-view`), when the process that
/// made it is gone (and is not this one).
pub fn dead_step_mount(root: &Path, name: &str) -> Option<String> {
    let key = name
        .strip_suffix("-rootfs")
        .or_else(|| name.strip_suffix("-view"))?;
    dead_owner(root, key).then(|| key.to_string())
}

/// Whether `name` is `active-<pid>-…`, `view-<pid>-…` or `<pid>-…` and that
/// process is gone, or `run-<id>` (a container's layer) and no `rbk run`
/// holds that container's lock (`containers/<id>/lock`).
pub(crate) fn dead_owner(root: &Path, name: &str) -> bool {
    if let Some(id) = name.strip_prefix("run-") {
        return !container_alive(root, id) && !container_kept(root, id);
    }
    let rest = name
        .strip_prefix(snapshot::SCRATCH_PREFIX)
        .or_else(|| name.strip_prefix("view-"))
        .unwrap_or(name);
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes what the build steps of dead processes left: their mounts under
/// `tmp/` and their active snapshots and views (`active-<pid>-…`,
/// `view-<pid>-…`: private to their process, which is gone). Run when a
/// store is opened, so a killed build leaves nothing for `rbk system
/// check` to find. A pid in use again keeps what it names (never the
/// other way round). Failures are left for `rbk system check` to report.
pub(crate) fn sweep_dead_steps(layout: &Layout) {
    let root = layout.root();
    let tmp = layout.tmp();
    for point in mount::mounts_under(&tmp).unwrap_or_default() {
        let name = point.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if point.parent() == Some(tmp.as_path())
            && dead_step_mount(root, name).is_some()
            && mount::unmount(&point).is_ok()
        {
            let _ = fs::remove_dir(&point);
        }
    }
    let dir = layout.snapshots();
    for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let step = name.starts_with(snapshot::SCRATCH_PREFIX) || name.starts_with("view-");
        if step && dead_owner(root, &name) {
            let _ = snapshot::discard_dir(&dir, &e.path());
        }
    }
    // Snapshots half made by dead processes (`<pid>-…`).
    let staging = snapshot::staging_of(&dir);
    for e in fs::read_dir(&staging).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !dead_owner(root, &name) {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = crate::sys::remove_tree(&e.path());
        } else {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The snapshots under the layers containers keep (`run-<id>`, alive or
/// kept: see [`container_kept`]), their parents' parents included.
pub(crate) fn kept_container_chains(root: &Path) -> Vec<String> {
    let dir = Layout::new(root).snapshots();
    let parent = |key: &str| snapshot::parent_of(&dir, key);
    let mut todo: Vec<String> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("run-") && !dead_owner(root, n))
        .collect();
    let mut out = Vec::new();
    while let Some(key) = todo.pop() {
        if let Some(p) = parent(&key) {
            if !out.contains(&p) {
                out.push(p.clone());
                todo.push(p);
            }
        }
    }
    out
}

/// Whether the stopped container `id` is on record as a detached one,
/// which keeps its layer until `rbk rm` (as Docker does).
fn container_kept(root: &Path, id: &str) -> bool {
    let state = Layout::new(root).container(id).join("state.json");
    fs::read(state)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["detached"] == true)
}

/// Whether the `rbk run` of container `id` still holds its lock.
fn container_alive(root: &Path, id: &str) -> bool {
    let Ok(f) = fs::File::open(Layout::new(root).container(id).join("lock")) else {
        return false;
    };
    matches!(flock::flock(f, flock::FlockMode::TryShared), Ok(None))
}
