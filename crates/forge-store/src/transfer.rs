//! `load` and `save`: image archives and OCI layout directories in and out of the store.
//!
//! Loading streams the archive through [`forge_oci::archive::read_archive`] into the store
//! (every blob staged in `tmp/`, verified, renamed into `blobs/`), then unpacks every
//! layer into its snapshot (verifying each layer's digest and diffID again, and refusing
//! hostile entries), and only then names the images, all in one `index.json` update. A
//! load that fails or is killed at any point leaves at most unreferenced blobs and `tmp/`
//! entries, which the next garbage collection removes; `index.json` never names an image
//! whose blobs are not all there.
//!
//! An image reached through a multi-platform index is stored as its platform manifest
//! (the index itself is not kept), as docker's classic store does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use forge_oci::archive::{
    self, read_archive, read_archive_path, ArchiveFormat, ExportImage, Loaded, WriteOptions,
};
use forge_oci::layer::Compression;
use forge_oci::{BlobSource, BlobSourceError, Digest, Reference};

use crate::error::Result;
use crate::images::{ImageRecord, Retagged};
use crate::snapshot::chain_ids;
use crate::store::Store;

/// One image a load stored.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The image.
    pub image: ImageRecord,
    /// The names it got.
    pub names: Vec<Reference>,
    /// Names in the archive that are not valid references (ignored).
    pub invalid_names: Vec<String>,
}

/// The result of a load.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    /// What the archive was.
    pub format: ArchiveFormat,
    /// Its compression.
    pub compression: Compression,
    /// The images, in archive order.
    pub images: Vec<LoadedImage>,
    /// Names taken from images already in the store.
    pub retagged: Vec<Retagged>,
}

/// Output formats of [`Store::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// A tar of an OCI image layout.
    OciArchive,
    /// `docker save`'s format (uncompressed layers, `manifest.json`).
    DockerArchive,
}

/// One image to save, under the names to give it.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The image.
    pub image: ImageRecord,
    /// Its names in the output (none when saved by id).
    pub names: Vec<Reference>,
}

impl Store {
    /// Loads an archive file or an image directory (OCI layout, unpacked docker-archive).
    pub fn load_path(&self, path: &Path) -> Result<LoadOutcome> {
        let _lease = self.lease()?;
        let mut sink = self.clone();
        let loaded = read_archive_path(path, &mut sink)?;
        self.finish_load(loaded)
    }

    /// Loads an archive from a stream (oci-archive or docker-archive, compressed or not).
    pub fn load_reader<R: Read>(&self, r: R) -> Result<LoadOutcome> {
        let _lease = self.lease()?;
        let mut sink = self.clone();
        let loaded = read_archive(r, &mut sink)?;
        self.finish_load(loaded)
    }

    fn finish_load(&self, loaded: Loaded) -> Result<LoadOutcome> {
        let mut images = Vec::new();
        for li in &loaded.images {
            let image = self.image_for(&li.manifest)?;
            self.unpack(&image)?;
            let mut names = Vec::new();
            let mut invalid_names = Vec::new();
            for n in &li.names {
                match Reference::parse(n) {
                    Ok(r) if r.digest().is_none() => {
                        if !names.contains(&r) {
                            names.push(r)
                        }
                    }
                    _ => invalid_names.push(n.clone()),
                }
            }
            images.push(LoadedImage {
                image,
                names,
                invalid_names,
            });
        }
        // Name everything at once, now that every blob and snapshot is in place.
        let mut retagged = Vec::new();
        for li in &mut images {
            retagged.extend(self.add_image(&li.image.target, &li.names)?);
            li.image.names = li.names.clone();
        }
        Ok(LoadOutcome {
            format: loaded.format,
            compression: loaded.compression,
            images,
            retagged,
        })
    }

    /// Writes `images` to `w` as an oci-archive or a docker-archive. Blobs are copied as
    /// bytes and verified on the way; the tar's mtimes are `mtime` (0 when `None`).
    pub fn save<W: Write>(
        &self,
        images: &[SaveImage],
        format: SaveFormat,
        w: W,
        mtime: Option<u64>,
    ) -> Result<W> {
        let _lease = self.lease()?;
        let source = SaveSource::new(self, images);
        let opts = WriteOptions { mtime };
        let w = match format {
            SaveFormat::OciArchive => {
                archive::write_oci_archive(w, &export(images, false), &source, &opts)?
            }
            SaveFormat::DockerArchive => {
                archive::write_docker_archive(w, &export(images, true), &source, &opts)?
            }
        };
        Ok(w)
    }

    /// Writes `images` into an OCI layout directory (created if needed; other images
    /// already there are kept).
    pub fn save_dir(&self, images: &[SaveImage], dir: &Path) -> Result<()> {
        let _lease = self.lease()?;
        let source = SaveSource::new(self, images);
        archive::write_oci_layout(dir, &export(images, false), &source)?;
        Ok(())
    }
}

fn export(images: &[SaveImage], docker: bool) -> Vec<ExportImage> {
    images
        .iter()
        .map(|s| ExportImage {
            // docker-archive holds single-platform manifests only.
            manifest: if docker {
                s.image.manifest.clone()
            } else {
                s.image.target.clone()
            },
            names: s.names.iter().map(Reference::familiar).collect(),
        })
        .collect()
}

/// The store as a blob source that also knows the uncompressed size of the layers it has
/// unpacked (so a docker-archive, whose layers are uncompressed, needs one pass per layer).
struct SaveSource<'s> {
    store: &'s Store,
    uncompressed: HashMap<Digest, u64>,
}

impl<'s> SaveSource<'s> {
    fn new(store: &'s Store, images: &[SaveImage]) -> SaveSource<'s> {
        let mut uncompressed = HashMap::new();
        for s in images {
            // The uncompressed tar is a function of the diffID, whichever blob the
            // snapshot was unpacked from.
            let chains = chain_ids(&s.image.config.rootfs.diff_ids);
            for (layer, c) in s.image.layers.iter().zip(&chains) {
                let Ok(l) = Digest::from_oci(layer.digest()) else {
                    continue;
                };
                if let Ok(Some(m)) = store.snapshot_meta(c) {
                    if let Some(u) = m.uncompressed_size {
                        uncompressed.insert(l, u);
                    }
                }
            }
        }
        SaveSource {
            store,
            uncompressed,
        }
    }
}

impl BlobSource for SaveSource<'_> {
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + '_>, u64), BlobSourceError> {
        BlobSource::open(self.store, digest)
    }

    fn uncompressed_size(&self, digest: &Digest) -> Option<u64> {
        self.uncompressed.get(digest).copied()
    }
}
