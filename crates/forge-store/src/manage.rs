//! Removing images (`rmi`, `image prune`) and accounting for space (`system df`), with
//! docker's rules.

use std::collections::{BTreeSet, HashSet};
use std::fs;

use forge_oci::{Digest, Reference};

use crate::error::{Result, StoreError};
use crate::images::{resolve_in, Matched};
use crate::snapshot::{chain_ids, tree_size};
use crate::store::{Store, StoreDir};

/// One line of `rmi` / `image prune` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A name was removed (`Untagged: app:1.0`).
    Untagged(Reference),
    /// An image left the store (`Deleted: sha256:…`, the image id).
    Deleted(Digest),
}

/// Why `rmi` refused.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The lookup failed (no such image, ambiguous id, unreadable store).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// docker's conflict: an id naming an image tagged in several repositories.
    #[error("conflict: unable to delete {short_id} (must be forced) - image is referenced in multiple repositories")]
    MultipleRepositories {
        /// The image's short id.
        short_id: String,
    },
}

/// `system df` figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Images in the store.
    pub images: u64,
    /// Images used by a container.
    pub images_active: u64,
    /// Bytes of their layers, each shared layer once.
    pub images_size: u64,
    /// Bytes that removing every unused image would free.
    pub images_reclaimable: u64,
    /// Containers.
    pub containers: u64,
    /// Running containers.
    pub containers_active: u64,
    /// Bytes of their writable layers.
    pub containers_size: u64,
    /// Named volumes.
    pub volumes: u64,
    /// Volumes used by a container.
    pub volumes_active: u64,
    /// Bytes in volumes.
    pub volumes_size: u64,
    /// Build cache entries.
    pub cache_entries: u64,
    /// Bytes of build cache.
    pub cache_size: u64,
}

impl Store {
    /// docker's `rmi`: a name is untagged, and the image goes with its last name; an id
    /// untags every name (refused without `force` when they span several repositories)
    /// and deletes the image. Blobs are freed by the next garbage collection.
    pub fn remove(&self, s: &str, force: bool) -> Result<Vec<Removal>, RemoveError> {
        let list = self.images()?;
        let resolved = resolve_in(&list.images, s)?;
        let image = resolved.image;
        let mut out = Vec::new();
        match resolved.matched {
            Matched::Name(name) => {
                if let Some((_, gone)) = self.untag(&name)? {
                    out.push(Removal::Untagged(name));
                    // The image goes with its last name; the same id may still be listed
                    // through another manifest (loaded from another format), and then
                    // it stays.
                    if gone && !self.images()?.images.iter().any(|i| i.id == image.id) {
                        out.push(Removal::Deleted(image.id.clone()));
                    }
                }
            }
            Matched::Id | Matched::Digest(_) => {
                let repos: BTreeSet<String> =
                    image.names.iter().map(Reference::repository).collect();
                if repos.len() > 1 && !force {
                    return Err(RemoveError::MultipleRepositories {
                        short_id: image.id.short_id().to_string(),
                    });
                }
                // Every listing of this id (normally one).
                for other in list.images.iter().filter(|i| i.id == image.id) {
                    for n in self.remove_image(&other.target_digest())? {
                        out.push(Removal::Untagged(n));
                    }
                }
                out.push(Removal::Deleted(image.id.clone()));
            }
        }
        Ok(out)
    }

    /// Removes dangling images (no name), or with `all` every image no container uses.
    pub fn prune_images(&self, all: bool) -> Result<Vec<Removal>> {
        let list = self.images()?;
        let mut out = Vec::new();
        let mut done: HashSet<Digest> = HashSet::new();
        for image in &list.images {
            if !all && !image.names.is_empty() {
                continue;
            }
            for n in self.remove_image(&image.target_digest())? {
                out.push(Removal::Untagged(n));
            }
            if done.insert(image.id.clone()) {
                out.push(Removal::Deleted(image.id.clone()));
            }
        }
        Ok(out)
    }

    /// Space used by images, containers, volumes and the build cache.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let list = self.images()?;
        let mut du = DiskUsage::default();
        let mut ids: HashSet<&Digest> = HashSet::new();
        let mut layers: HashSet<Digest> = HashSet::new();
        for image in &list.images {
            if ids.insert(&image.id) {
                du.images += 1;
            }
            let chains = chain_ids(&image.config.rootfs.diff_ids);
            for (i, c) in chains.iter().enumerate() {
                if layers.insert(c.clone()) {
                    du.images_size += match self.snapshot_meta(c) {
                        Ok(Some(m)) => m.size,
                        _ => image.layers.get(i).map_or(0, |l| l.size()),
                    };
                }
            }
        }
        // No container uses an image yet: all of it is reclaimable.
        du.images_reclaimable = du.images_size;
        let count = |d: StoreDir| -> (u64, u64) {
            let dir = self.dir(d);
            match fs::read_dir(&dir) {
                Ok(rd) => rd
                    .flatten()
                    .fold((0, 0), |(n, sz), e| (n + 1, sz + tree_size(&e.path()))),
                Err(_) => (0, 0),
            }
        };
        (du.containers, du.containers_size) = count(StoreDir::Containers);
        (du.volumes, du.volumes_size) = count(StoreDir::Volumes);
        (du.cache_entries, du.cache_size) = count(StoreDir::Cache);
        Ok(du)
    }
}
