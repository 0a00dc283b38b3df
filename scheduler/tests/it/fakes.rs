//! In-memory implementations of the scheduler's backend traits: images in a
//! map, layers as maps of files (a step's workspace is a plain temporary
//! directory, diffed against its parent on commit), a cache in a map with a
//! condition-variable lock. No root, no mounts, no network.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rbk_runtime::sandbox::CancelToken;
use rbk_scheduler::backend::{
    BackendError, BaseImage, CommittedImage, ExportKeys, Images, Layer, Layers, Lookup, Mounted,
    StepCache, StepGuard, WorkDirs, Workspace,
};
use rbk_scheduler::shared_cache::ExportedCache;
use rbk_store::cache::CacheRecord;
use rbk_store::oci::{self, Descriptor, ImageConfig as OciConfig, RootFs};
use rbk_store::reference::Reference;
use rbk_store::Digest;

/// A layer's files: path → content (directories are implied).
pub type Files = BTreeMap<String, Vec<u8>>;

/// An image commit: config, layers, tags.
pub type Commit = (OciConfig, Vec<Descriptor>, Vec<String>);

/// Base images by name; committed images recorded.
#[derive(Default)]
pub struct FakeImages {
    pub bases: Mutex<HashMap<String, BaseImage>>,
    pub committed: Mutex<Vec<Commit>>,
    pub resolves: Mutex<Vec<String>>,
}

impl Images for FakeImages {
    fn resolve(&self, name: &str, _platform: &str) -> Result<BaseImage, BackendError> {
        self.resolves.lock().unwrap().push(name.to_string());
        self.bases
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                BackendError::from(rbk_store::StoreError::ImageNotFound {
                    name: name.to_string(),
                })
            })
    }

    fn commit(
        &self,
        config: &OciConfig,
        layers: &[Descriptor],
        tags: &[Reference],
        _annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<CommittedImage, BackendError> {
        let bytes = serde_json::to_vec(config).unwrap();
        let id = Digest::of(&bytes);
        self.committed.lock().unwrap().push((
            config.clone(),
            layers.to_vec(),
            tags.iter().map(|t| t.to_string()).collect(),
        ));
        Ok(CommittedImage {
            manifest: Digest::of(id.as_str().as_bytes()),
            id,
        })
    }
}

/// Layers kept as file maps, keyed by diff id.
pub struct FakeLayers {
    pub layers: Mutex<HashMap<Digest, Files>>,
    /// Snapshot key (chain id hex) → the diff ids it stacks.
    chains: Mutex<HashMap<String, Vec<Digest>>>,
    scratch: tempfile::TempDir,
    pub commits: Mutex<usize>,
    /// Called as a step's workspace is made: after every key is known and
    /// before the step reads its sources (the seam to change a context
    /// between hashing and copying).
    pub on_prepare: Mutex<Option<PrepareHook>>,
}

/// See [`FakeLayers::on_prepare`].
pub type PrepareHook = Box<dyn Fn() + Send>;

impl Default for FakeLayers {
    fn default() -> Self {
        FakeLayers {
            layers: Mutex::default(),
            chains: Mutex::default(),
            scratch: tempfile::tempdir().unwrap(),
            commits: Mutex::default(),
            on_prepare: Mutex::default(),
        }
    }
}

impl FakeLayers {
    /// Adds a layer of `files`; returns it as the build sees it.
    pub fn add(&self, files: &[(&str, &str)]) -> Layer {
        let files: Files = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect();
        self.store(files)
    }

    fn store(&self, files: Files) -> Layer {
        let diff_id = Digest::of(&serde_json::to_vec(&files).unwrap());
        self.layers.lock().unwrap().insert(diff_id.clone(), files);
        Layer {
            blob: Descriptor::new(oci::MEDIA_TYPE_OCI_LAYER, diff_id.clone(), 1),
            diff_id,
        }
    }

    /// The files of the stack named `key`, merged bottom to top.
    pub fn merged(&self, key: Option<&str>) -> Files {
        let ids = key
            .and_then(|k| self.chains.lock().unwrap().get(k).cloned())
            .unwrap_or_default();
        let layers = self.layers.lock().unwrap();
        let mut out = Files::new();
        for id in ids {
            out.extend(layers[&id].clone());
        }
        out
    }

    fn materialize(&self, key: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir_in(self.scratch.path()).unwrap();
        for (p, c) in self.merged(key) {
            let path = dir.path().join(&p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        dir
    }
}

/// The regular files under `root`, by relative path.
fn read_tree(root: &Path) -> Files {
    let mut out = Files::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

impl Layers for FakeLayers {
    fn unpack(&self, layers: &[Layer], _: &CancelToken) -> Result<Option<String>, BackendError> {
        let ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let Some(top) = oci::chain_ids(&ids).pop() else {
            return Ok(None);
        };
        let key = top.hex().to_string();
        self.chains.lock().unwrap().insert(key.clone(), ids);
        Ok(Some(key))
    }

    fn prepare(&self, parent: Option<&str>) -> Result<Box<dyn Workspace + '_>, BackendError> {
        if let Some(hook) = self.on_prepare.lock().unwrap().as_ref() {
            hook();
        }
        Ok(Box::new(FakeWorkspace {
            layers: self,
            base: self.merged(parent),
            dir: self.materialize(parent),
        }))
    }

    fn view(&self, parent: Option<&str>) -> Result<Box<dyn Mounted + '_>, BackendError> {
        Ok(Box::new(FakeView(self.materialize(parent))))
    }

    fn fetch(&self, _: &Descriptor) -> Result<(), BackendError> {
        Ok(())
    }
}

struct FakeWorkspace<'a> {
    layers: &'a FakeLayers,
    base: Files,
    dir: tempfile::TempDir,
}

impl Workspace for FakeWorkspace<'_> {
    fn rootfs(&self) -> &Path {
        self.dir.path()
    }

    fn commit(self: Box<Self>, _below: &[Layer]) -> Result<Layer, BackendError> {
        let changed: Files = read_tree(self.dir.path())
            .into_iter()
            .filter(|(p, c)| self.base.get(p) != Some(c))
            .collect();
        *self.layers.commits.lock().unwrap() += 1;
        Ok(self.layers.store(changed))
    }
}

struct FakeView(tempfile::TempDir);

impl Mounted for FakeView {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A cache in a map; the step lock is a set of keys under a condvar.
#[derive(Default)]
pub struct FakeCache {
    pub records: Mutex<HashMap<String, CacheRecord>>,
    running: Arc<(Mutex<HashSet<String>>, Condvar)>,
}

struct Running(Arc<(Mutex<HashSet<String>>, Condvar)>, String);

impl Drop for Running {
    fn drop(&mut self) {
        self.0 .0.lock().unwrap().remove(&self.1);
        self.0 .1.notify_all();
    }
}

impl StepCache for FakeCache {
    fn lookup(&self, key: &str) -> Lookup {
        let hit = self.records.lock().unwrap().get(key).cloned();
        Lookup {
            recorded: hit.is_some(),
            hit,
        }
    }

    fn put(&self, record: &CacheRecord) -> Result<(), BackendError> {
        self.records
            .lock()
            .unwrap()
            .insert(record.key.clone(), record.clone());
        Ok(())
    }

    fn nearest(&self, family: &str, key: &str) -> Option<CacheRecord> {
        self.records
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.family == family && r.key != key)
            .max_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)))
            .cloned()
    }

    fn lock(
        &self,
        key: &str,
        on_wait: &mut dyn FnMut(),
        cancel: &CancelToken,
    ) -> Result<Option<StepGuard>, BackendError> {
        let (set, cv) = &*self.running;
        let mut held = set.lock().unwrap();
        let mut told = false;
        while held.contains(key) {
            if !told {
                told = true;
                on_wait();
            }
            if cancel.is_cancelled() {
                return Ok(None);
            }
            held = cv
                .wait_timeout(held, std::time::Duration::from_millis(10))
                .unwrap()
                .0;
        }
        held.insert(key.to_string());
        Ok(Some(StepGuard(Box::new(Running(
            self.running.clone(),
            key.to_string(),
        )))))
    }

    fn export(&self, _: &ExportKeys<'_>) -> Result<Vec<ExportedCache>, BackendError> {
        Ok(Vec::new())
    }
}

/// A base image of one layer holding `files`.
pub fn base_image(layers: &FakeLayers, files: &[(&str, &str)]) -> BaseImage {
    let layer = layers.add(files);
    BaseImage {
        id: Digest::of(layer.diff_id.as_str().as_bytes()),
        layers: vec![layer.clone()],
        config: OciConfig {
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.diff_id],
            },
            ..Default::default()
        },
    }
}

/// Work directories under a temporary dir.
pub fn work_dirs(root: &Path) -> WorkDirs {
    let p = |n: &str| -> PathBuf {
        let d = root.join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    WorkDirs {
        tmp: p("tmp"),
        cache_mounts: p("cache-mounts"),
        stat_caches: p("stat"),
    }
}

/// A build context and fake backends sharing one cache and image list,
/// with a base image `base` of one file: where the core tests build.
pub struct Backends {
    pub ctx: tempfile::TempDir,
    pub work: tempfile::TempDir,
    pub images: FakeImages,
    pub layers: FakeLayers,
    pub cache: FakeCache,
}

impl Backends {
    pub fn new() -> Backends {
        let b = Backends {
            ctx: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            images: FakeImages::default(),
            layers: FakeLayers::default(),
            cache: FakeCache::default(),
        };
        let base = base_image(&b.layers, &[("etc/os-release", "fake\n")]);
        b.images
            .bases
            .lock()
            .unwrap()
            .insert("base:latest".into(), base);
        b
    }

    /// `dockerfile` compiled as image `app` of the context, tagged `tags`.
    pub fn graph(&self, dockerfile: &str, tags: &[&str]) -> rbk_compiler::BuildGraph {
        let mut c = rbk_compiler::Compiler::new(&rbk_compiler::NoResolver);
        c.add(&rbk_compiler::Input {
            name: "app".into(),
            file: "Dockerfile".into(),
            source: dockerfile.into(),
            context: self.ctx.path().display().to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
        .unwrap();
        c.finish()
    }

    /// The session's services over these backends.
    pub fn services<'a>(
        &'a self,
        bases: &'a rbk_scheduler::step::from::BaseImages<'a>,
        executor: &'a dyn rbk_runtime::sandbox::Executor,
        reporter: &'a dyn rbk_scheduler::progress::Reporter,
    ) -> rbk_scheduler::Services<'a> {
        rbk_scheduler::Services {
            bases,
            images: &self.images,
            layers: &self.layers,
            cache: &self.cache,
            executor,
            reporter,
            dirs: work_dirs(self.work.path()),
        }
    }
}
