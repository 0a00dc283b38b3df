//! A container's bundle, in the OCI runtime's sense: its root filesystem,
//! mounted, and the binds it gets — what the sandbox runs a container's
//! process in.
//!
//! The root is the store's [`Workspace`]: the image unpacked, the active
//! snapshot `run-<id>` prepared over it (resumed when `rbk start` runs a
//! kept container again) and mounted under the store's `tmp/`. Then its
//! volumes ([`super::binds`]), seeded from that root, and its
//! `/etc/hostname`.

use std::path::Path;

use rbk_store::images::{Image, Store};
use rbk_store::oci::ContainerConfig;
use rbk_store::snapshot::Snapshotter;
use rbk_store::workspace::{unpack_image, PrepareOptions, Workspace, WorkspaceError};

use super::binds::{hostname_file, volume_binds, TempDirs};
use super::state::layer_key;
use super::volume::Volume;
use super::{ContainerError, Record};
use crate::sandbox::BindMount;

/// What a container is made of besides its image.
#[derive(Debug, Clone, Copy)]
pub struct BundleSpec<'a> {
    /// The image as the user named it (for errors).
    pub image: &'a str,
    /// The image's config (its VOLUMEs become anonymous volumes).
    pub config: &'a ContainerConfig,
    /// The `-v` requests.
    pub volumes: &'a [Volume],
    /// Its host name, written to its `/etc/hostname`.
    pub hostname: &'a str,
}

/// A container's root, mounted, and its binds; released (unmounted, and
/// the layer and anonymous volumes removed unless the container keeps
/// them) when dropped.
pub struct Bundle<'a> {
    /// Removed before the root is released: declared first.
    _hostname: TempDirs,
    _volumes: TempDirs,
    workspace: Workspace<'a>,
    mounts: Vec<BindMount>,
}

impl<'a> Bundle<'a> {
    /// Makes the bundle of the container on `record` from `image`, its
    /// root in `snapshotter`, under the store at `root`.
    pub fn create(
        store: &Store,
        snapshotter: &'a dyn Snapshotter,
        image: &Image,
        record: &Record,
        spec: BundleSpec<'_>,
    ) -> Result<Self, ContainerError> {
        let root = store.root();
        let parent =
            unpack_image(store, snapshotter, image).map_err(|source| ContainerError::Unpack {
                image: image.id.to_string(),
                source: Box::new(source),
            })?;
        let key = layer_key(record.id());
        // `rbk start` finds the layer the container kept; a detached
        // container's layer stays until `rbk rm`.
        let opts = PrepareOptions {
            resume: true,
            keep: record.keeps_layer(),
            ..PrepareOptions::default()
        };
        let workspace = Workspace::prepare(root, snapshotter, &key, parent.as_deref(), opts)
            .map_err(|source| ContainerError::Root {
                image: spec.image.to_string(),
                source: Box::new(source),
            })?;
        let (mut mounts, volumes) = volume_binds(
            root,
            record.id(),
            workspace.rootfs(),
            spec.config,
            spec.volumes,
            record.keeps_layer(),
        )?;
        let (hostname_bind, hostname) = hostname_file(root, &key, spec.hostname)?;
        mounts.insert(0, hostname_bind);
        Ok(Bundle {
            _hostname: hostname,
            _volumes: volumes,
            workspace,
            mounts,
        })
    }

    /// Where the container's root is mounted.
    pub fn rootfs(&self) -> &Path {
        self.workspace.rootfs()
    }

    /// The binds the container gets: its `/etc/hostname`, then its volumes.
    pub fn take_mounts(&mut self) -> Vec<BindMount> {
        std::mem::take(&mut self.mounts)
    }

    /// Unmounts the root now, reporting a failure (dropping does it
    /// silently).
    pub fn unmount(&mut self) -> Result<(), WorkspaceError> {
        self.workspace.unmount()
    }
}
