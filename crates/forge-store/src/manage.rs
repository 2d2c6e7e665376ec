//! Removing images (`rmi`, `image prune`) and accounting for space (`system df`), with
//! docker's rules.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    /// docker's conflict: the last name of an image a container uses, without force.
    #[error("conflict: unable to remove repository reference \"{name}\" (must force) - container {container} is using its referenced image {short_id}")]
    NameInUse {
        name: String,
        container: String,
        short_id: String,
    },
    /// docker's conflict: an id of an image a container uses.
    #[error("conflict: unable to delete {short_id} ({}) - image is being used by {} container {container}", if *.running { "cannot be forced" } else { "must be forced" }, if *.running { "running" } else { "stopped" })]
    ImageInUse {
        short_id: String,
        container: String,
        running: bool,
    },
}

/// A container's use of an image, which `rmi` and `image prune` respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The container's short id (the first one found, for messages).
    pub container: String,
    /// Whether any container using the image is running.
    pub running: bool,
}

/// Images containers use, by image id.
pub type ImagesInUse = BTreeMap<Digest, ImageUse>;

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
    /// Bytes of the stopped ones' writable layers.
    pub containers_reclaimable: u64,
    /// Named volumes.
    pub volumes: u64,
    /// Volumes used by a container.
    pub volumes_active: u64,
    /// Bytes in volumes.
    pub volumes_size: u64,
    /// Bytes in the volumes no container uses.
    pub volumes_reclaimable: u64,
    /// Build cache records (steps and exports).
    pub cache_entries: u64,
    /// Bytes of build cache: its records and memos, and the snapshots no image
    /// has (the steps' intermediate layers).
    pub cache_size: u64,
}

impl Store {
    /// docker's `rmi`: a name is untagged, and the image goes with its last name; an id
    /// untags every name (refused without `force` when they span several repositories)
    /// and deletes the image. Blobs are freed by the next garbage collection.
    ///
    /// An image a container uses (`in_use`) is never deleted: its last name goes only
    /// with `force` and the image stays, unnamed; by id it is refused (always, for a
    /// running container), or with `force` for a stopped one only untagged.
    pub fn remove(
        &self,
        s: &str,
        force: bool,
        in_use: &ImagesInUse,
    ) -> Result<Vec<Removal>, RemoveError> {
        let list = self.images()?;
        let resolved = resolve_in(&list.images, s)?;
        let image = resolved.image;
        let used = in_use.get(&image.id);
        let mut out = Vec::new();
        match resolved.matched {
            Matched::Name(name) => {
                let last_name = list
                    .images
                    .iter()
                    .filter(|i| i.id == image.id)
                    .map(|i| i.names.len())
                    .sum::<usize>()
                    <= 1;
                if let (Some(u), true, false) = (used, last_name, force) {
                    return Err(RemoveError::NameInUse {
                        name: name.familiar(),
                        container: u.container.clone(),
                        short_id: image.id.short_id().to_string(),
                    });
                }
                if let Some((_, gone)) = self.untag(&name)? {
                    out.push(Removal::Untagged(name));
                    if gone && used.is_some() {
                        // The container still needs it: keep it, unnamed.
                        self.add_image(&image.manifest, &[])?;
                        return Ok(out);
                    }
                    // The image goes with its last name; the same id may still be listed
                    // through another manifest (loaded from another format), and then
                    // it stays.
                    if gone && !self.images()?.images.iter().any(|i| i.id == image.id) {
                        out.push(Removal::Deleted(image.id.clone()));
                    }
                }
            }
            Matched::Id | Matched::Digest(_) => {
                if let Some(u) = used {
                    if u.running || !force {
                        return Err(RemoveError::ImageInUse {
                            short_id: image.id.short_id().to_string(),
                            container: u.container.clone(),
                            running: u.running,
                        });
                    }
                    for n in image.names.clone() {
                        if self.untag(&n)?.is_some() {
                            out.push(Removal::Untagged(n));
                        }
                    }
                    if !self.images()?.images.iter().any(|i| i.id == image.id) {
                        self.add_image(&image.manifest, &[])?;
                    }
                    return Ok(out);
                }
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

    /// Removes dangling images (no name), or with `all` every image; never one a
    /// container uses.
    pub fn prune_images(&self, all: bool, in_use: &ImagesInUse) -> Result<Vec<Removal>> {
        let list = self.images()?;
        let mut out = Vec::new();
        let mut done: HashSet<Digest> = HashSet::new();
        for image in &list.images {
            if (!all && !image.names.is_empty()) || in_use.contains_key(&image.id) {
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

    /// Space used by images and the build cache; `in_use`: the images containers
    /// use, whose layers are not reclaimable. Containers and volumes are the
    /// runtime's to count.
    pub fn disk_usage(&self, in_use: &ImagesInUse) -> Result<DiskUsage> {
        let list = self.images()?;
        let mut du = DiskUsage::default();
        let mut ids: HashSet<&Digest> = HashSet::new();
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        let mut active_layers: HashSet<Digest> = HashSet::new();
        for image in &list.images {
            let active = in_use.contains_key(&image.id);
            if ids.insert(&image.id) {
                du.images += 1;
                du.images_active += u64::from(active);
            }
            let chains = chain_ids(&image.config.rootfs.diff_ids);
            for (i, c) in chains.iter().enumerate() {
                if active {
                    active_layers.insert(c.clone());
                }
                if !sizes.contains_key(c) {
                    let size = match self.snapshot_meta(c) {
                        Ok(Some(m)) => m.size,
                        _ => image.layers.get(i).map_or(0, |l| l.size()),
                    };
                    sizes.insert(c.clone(), size);
                }
            }
        }
        du.images_size = sizes.values().sum();
        du.images_reclaimable = sizes
            .iter()
            .filter(|(c, _)| !active_layers.contains(*c))
            .map(|(_, n)| n)
            .sum();
        let cache_dir = self.dir(StoreDir::Cache);
        if let Ok(rd) = fs::read_dir(&cache_dir) {
            du.cache_entries = rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count() as u64;
        }
        du.cache_size = tree_size(&cache_dir);
        if let Ok(rd) = fs::read_dir(self.dir(StoreDir::Snapshots)) {
            for e in rd.flatten() {
                let name = e.file_name();
                let Ok(chain) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                    continue;
                };
                if !sizes.contains_key(&chain) {
                    du.cache_size += match self.snapshot_meta(&chain) {
                        Ok(Some(m)) => m.size,
                        _ => tree_size(&e.path()),
                    };
                }
            }
        }
        Ok(du)
    }
}
