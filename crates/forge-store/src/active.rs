//! The snapshotter: writable snapshots for build steps, in containerd's vocabulary.
//!
//! - [`Store::prepare`] stages an [`ActiveSnapshot`] in `tmp/` on top of a committed chain:
//!   an empty upper dir (`fs/`, the future snapshot's content) and an overlay work dir,
//!   both on the store's filesystem. It hands out the chain's lowerdirs (top-most first),
//!   which the sandbox mounts with its own options (one `lowerdir+` per layer, `index`,
//!   `redirect_dir`, `metacopy` and `xino` off, so the upper stays a self-contained diff).
//! - [`Store::commit`] turns the upper dir into a layer blob (overlay whiteouts become
//!   `.wh.<name>` entries, opaque directories `.wh..wh..opq`) and then *renames* the
//!   staging directory into `snapshots/<chain id>/`: the upper dir becomes the new
//!   snapshot's `fs/` without a copy, so the next step mounts it as a lowerdir at once.
//!   [`Store::commit_diff`] does the same with only the tar's digest, leaving the
//!   compressed blob to [`Store::write_snapshot_blob`], which a build runs in the
//!   background while its next steps already use the snapshot.
//! - [`Store::view`] gives the lowerdirs of a committed chain, walking `meta.json`
//!   parents; snapshots made by [`Store::unpack`] (image layers), by
//!   [`Store::snapshot_layer`] and by [`Store::commit`] are all linked the same way.
//! - [`Store::remove_snapshot`] removes one committed snapshot that nothing is on top of.
//!
//! An active snapshot holds a [`Lease`] (`gc.lock` shared) for its whole life, so garbage
//! collection, which clears `tmp/` and unreachable snapshots, waits until the step is over.
//! If forge is killed mid-step the lease goes with the process and the staging directory is
//! an ordinary `tmp/` leftover, removed by the next [`Store::gc`].

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use forge_oci::layer::{write_layer, Compression, LayerOptions, SourceKind};
use forge_oci::Digest;

use crate::error::{io_err, Result, StoreError};
use crate::lock::Lease;
use crate::snapshot::{content_size, remove_tree, PreparedSnapshot, SnapshotMeta};
use crate::store::{sync_dir, Store, StoreDir};

/// More layers than any image has (overlayfs stacks at most 500): a longer walk means
/// the metadata loops.
const MAX_CHAIN_DEPTH: usize = 4096;

/// A writable snapshot for one step: overlay upper and work dirs staged in `tmp/`, on top
/// of a committed chain. Dropping it without [`Store::commit`] removes its directories.
#[derive(Debug)]
pub struct ActiveSnapshot {
    staged: PreparedSnapshot,
    parent: Option<Digest>,
    lowerdirs: Vec<PathBuf>,
    _lease: Lease,
}

impl ActiveSnapshot {
    /// The chain ID of the parent; `None` for a snapshot on nothing.
    pub fn parent(&self) -> Option<&Digest> {
        self.parent.as_ref()
    }

    /// The parent chain's snapshot dirs, top-most first (overlayfs' order); empty when
    /// there is no parent.
    pub fn lowerdirs(&self) -> &[PathBuf] {
        &self.lowerdirs
    }

    /// The empty directory (mode 0755) the step fills: an overlay upper dir, or a plain
    /// directory for file operations. It becomes the snapshot's `fs/` on commit.
    pub fn upper(&self) -> PathBuf {
        self.staged.fs()
    }

    /// The overlay work dir, on the same filesystem as [`upper`](Self::upper).
    pub fn work(&self) -> PathBuf {
        self.staged.dir().join("work")
    }
}

/// How [`Store::commit`] writes the layer.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// What the upper dir is: [`SourceKind::OverlayUpper`] for a dir that was an overlay's
    /// upper (0/0 character devices are whiteouts, `trusted.overlay.opaque` marks opaque
    /// dirs), [`SourceKind::Directory`] for a plain tree.
    pub source: SourceKind,
    /// Blob compression.
    pub compression: Compression,
    /// Compression level; the writer's default when `None`.
    pub level: Option<u32>,
    /// `SOURCE_DATE_EPOCH`: later mtimes are clamped to it.
    pub source_date_epoch: Option<i64>,
}

impl Default for CommitOptions {
    /// An overlay upper, gzip at the default level, no clamping. (Reading a plain tree as
    /// an overlay upper is harmless; the reverse would store whiteouts as devices.)
    fn default() -> Self {
        CommitOptions {
            source: SourceKind::OverlayUpper,
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: None,
        }
    }
}

/// The layer and snapshot a commit made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLayer {
    /// The new snapshot's key: `ChainID(parent, diff_id)`.
    pub chain_id: Digest,
    /// The digest of the uncompressed layer tar.
    pub diff_id: Digest,
    /// The layer blob's digest (in `blobs/`).
    pub blob: Digest,
    /// The layer blob's size in bytes.
    pub blob_size: u64,
    /// The OCI layer media type for the blob's compression.
    pub media_type: String,
}

/// The snapshot a [`Store::commit_diff`] made, whose blob is still to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedDiff {
    /// The new snapshot's key: `ChainID(parent, diff_id)`.
    pub chain_id: Digest,
    /// The digest of the uncompressed layer tar.
    pub diff_id: Digest,
}

/// `ChainID(parent, diff_id)` as the OCI image spec defines it.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

impl Store {
    /// The lowerdirs, top-most first, of the committed chain ending at `chain_id`
    /// (walking `meta.json` parents); empty for `None`. Fails naming the missing snapshot
    /// if any of the chain is gone.
    pub fn view(&self, chain_id: Option<&Digest>) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        let mut next = chain_id.cloned();
        let mut needed_by: Option<Digest> = None;
        while let Some(c) = next {
            if dirs.len() >= MAX_CHAIN_DEPTH {
                return Err(StoreError::BrokenChain {
                    chain_id: chain_id.cloned().unwrap_or(c),
                    reason: format!("more than {MAX_CHAIN_DEPTH} layers (a parent loop?)"),
                });
            }
            let meta = self
                .snapshot_meta(&c)?
                .ok_or_else(|| StoreError::NoSnapshot {
                    chain_id: c.clone(),
                    needed_by: needed_by.clone(),
                })?;
            if meta.chain_id != c {
                return Err(StoreError::Corrupt {
                    path: self.snapshot_dir(&c).join("meta.json"),
                    reason: format!("it names chain ID {}", meta.chain_id),
                });
            }
            dirs.push(self.snapshot_fs(&c));
            next = meta.parent;
            needed_by = Some(c);
        }
        Ok(dirs)
    }

    /// Stages a writable snapshot on top of `parent` (a committed chain ID; `None` for
    /// an empty base). Holds a [`Lease`] until committed or dropped.
    pub fn prepare(&self, parent: Option<&Digest>) -> Result<ActiveSnapshot> {
        let lease = self.lease()?;
        let lowerdirs = self.view(parent)?;
        let staged = self.prepare_snapshot()?;
        let work = staged.dir().join("work");
        fs::create_dir(&work).map_err(io_err("create", &work))?;
        fs::set_permissions(&work, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", &work))?;
        Ok(ActiveSnapshot {
            staged,
            parent: parent.cloned(),
            lowerdirs,
            _lease: lease,
        })
    }

    /// Turns the active snapshot's upper dir into a layer blob (through
    /// [`Store::write_layer_blob`] with `opts.source`) and a committed snapshot keyed by
    /// `ChainID(parent, diffID)`, whose `fs/` is the upper dir itself (renamed, not
    /// copied; the work dir is removed first). An upper dir with no entries makes no
    /// layer: `Ok(None)`, and the staging directories are removed.
    ///
    /// The upper must no longer be written to (the step's processes have exited). If the
    /// same chain ID was committed meanwhile (another process ran the same step), that
    /// snapshot is kept and ours discarded; the blob is the same either way.
    pub fn commit(
        &self,
        active: ActiveSnapshot,
        opts: &CommitOptions,
    ) -> Result<Option<CommittedLayer>> {
        let Some(upper) = self.clear_work(&active)? else {
            return Ok(None); // dropped: the staging dir goes
        };
        let layer = self.snapshot_layer_blob(&upper, opts)?;
        let chain = self.commit_upper(
            active,
            &layer.diff_id,
            Some(&layer.digest),
            layer.uncompressed_size,
        )?;
        Ok(Some(CommittedLayer {
            chain_id: chain,
            diff_id: layer.diff_id,
            blob: layer.digest,
            blob_size: layer.size,
            media_type: opts.compression.oci_media_type().to_owned(),
        }))
    }

    /// [`Store::commit`] without the blob: the snapshot is committed under
    /// `ChainID(parent, diffID)` once its uncompressed tar has been hashed, and the
    /// compressed blob is left to [`Store::write_snapshot_blob`], which can run while the
    /// next step already uses the snapshot. A build's steps need only the diffID; the
    /// blob is needed by its export and cache records, so compressing off the step's
    /// critical path overlaps it with the steps after. `Ok(None)` as `commit` for an
    /// empty upper dir.
    pub fn commit_diff(
        &self,
        active: ActiveSnapshot,
        opts: &CommitOptions,
    ) -> Result<Option<CommittedDiff>> {
        let Some(upper) = self.clear_work(&active)? else {
            return Ok(None);
        };
        let tar_opts = LayerOptions {
            compression: Compression::None,
            level: None,
            source_date_epoch: opts.source_date_epoch,
            source: opts.source,
        };
        let (_, tar) = write_layer(&upper, &tar_opts, io::sink())?;
        let chain_id = self.commit_upper(active, &tar.diff_id, None, tar.uncompressed_size)?;
        Ok(Some(CommittedDiff {
            chain_id,
            diff_id: tar.diff_id,
        }))
    }

    /// Writes the layer blob of a snapshot [`Store::commit_diff`] committed, with the
    /// same options, and checks that its tar still hashes to the committed diffID
    /// (snapshots are never written to after commit; a difference means one was).
    pub fn write_snapshot_blob(
        &self,
        diff: &CommittedDiff,
        opts: &CommitOptions,
    ) -> Result<CommittedLayer> {
        let _lease = self.lease()?;
        let fs = self.snapshot_fs(&diff.chain_id);
        let layer = self.snapshot_layer_blob(&fs, opts)?;
        if layer.diff_id != diff.diff_id {
            return Err(StoreError::Corrupt {
                path: fs,
                reason: format!(
                    "its layer hashes to {} but was committed as {}",
                    layer.diff_id, diff.diff_id
                ),
            });
        }
        Ok(CommittedLayer {
            chain_id: diff.chain_id.clone(),
            diff_id: layer.diff_id,
            blob: layer.digest,
            blob_size: layer.size,
            media_type: opts.compression.oci_media_type().to_owned(),
        })
    }

    /// The blob of a step's tree, as `opts` says, gzip in memo mode (a rebuild often
    /// writes a step's layer again with few changes: see [`crate::gzmemo`]).
    fn snapshot_layer_blob(
        &self,
        dir: &std::path::Path,
        opts: &CommitOptions,
    ) -> Result<forge_oci::layer::LayerInfo> {
        self.write_layer_blob_in(
            dir,
            opts.source,
            opts.compression,
            opts.level,
            opts.source_date_epoch,
            true,
        )
    }

    /// The upper dir of `active` with its overlay work dir removed, or `None` when the
    /// step left it empty.
    fn clear_work(&self, active: &ActiveSnapshot) -> Result<Option<PathBuf>> {
        let upper = active.upper();
        let mut entries = fs::read_dir(&upper).map_err(io_err("read", &upper))?;
        if entries.next().is_none() {
            return Ok(None);
        }
        drop(entries);
        let work = active.work();
        remove_tree(&work).map_err(io_err("remove", &work))?;
        Ok(Some(upper))
    }

    /// Makes the upper dir of `active` durable and commits it as the snapshot of
    /// `diff_id` on its parent; returns the chain ID.
    fn commit_upper(
        &self,
        active: ActiveSnapshot,
        diff_id: &Digest,
        blob: Option<&Digest>,
        uncompressed_size: u64,
    ) -> Result<Digest> {
        let upper = active.upper();
        let chain = chain_id(active.parent.as_ref(), diff_id);
        let meta = SnapshotMeta {
            chain_id: chain.clone(),
            parent: active.parent.clone(),
            diff_id: diff_id.clone(),
            layer: blob.cloned(),
            size: content_size(&upper)?,
            uncompressed_size: Some(uncompressed_size),
        };
        // The step wrote the upper without fsyncs: make it durable before the snapshot is
        // visible under its name (fsync, then rename). One syncfs(2) covers the tree;
        // with it, step overlays could be mounted `volatile` without losing durability.
        let dir = fs::File::open(&upper).map_err(io_err("open", &upper))?;
        nix::unistd::syncfs(&dir).map_err(|e| io_err("syncfs", &upper)(e.into()))?;
        drop(dir);
        let ActiveSnapshot { staged, _lease, .. } = active;
        self.commit_snapshot(staged, &meta)?;
        Ok(chain)
    }

    /// Makes sure the snapshot of layer `blob` (diffID `diff_id`) on top of `parent`
    /// exists, unpacking the blob (overlay format, verified against both digests) if it
    /// is missing; returns its chain ID. This is how a layer made on one parent (`COPY
    /// --link`) is rebased onto another.
    pub fn snapshot_layer(
        &self,
        parent: Option<&Digest>,
        blob: &Digest,
        diff_id: &Digest,
    ) -> Result<Digest> {
        let _lease = self.lease()?;
        let chain = chain_id(parent, diff_id);
        if self.has_snapshot(&chain) {
            return Ok(chain);
        }
        if let Some(p) = parent {
            if !self.has_snapshot(p) {
                return Err(StoreError::NoSnapshot {
                    chain_id: p.clone(),
                    needed_by: Some(chain),
                });
            }
        }
        self.unpack_layer(blob, diff_id, &chain, parent.cloned())?;
        Ok(chain)
    }

    /// Removes a committed snapshot. Refused ([`StoreError::SnapshotInUse`]) while
    /// another committed snapshot names it as parent; [`StoreError::NoSnapshot`] if it
    /// does not exist. The directory is renamed into `tmp/` first, so a crash half way
    /// leaves no partial snapshot under its name.
    pub fn remove_snapshot(&self, chain_id: &Digest) -> Result<()> {
        let _lease = self.lease()?;
        if !self.has_snapshot(chain_id) {
            return Err(StoreError::NoSnapshot {
                chain_id: chain_id.clone(),
                needed_by: None,
            });
        }
        for other in self.snapshots()? {
            if &other == chain_id {
                continue;
            }
            if let Ok(Some(meta)) = self.snapshot_meta(&other) {
                if meta.parent.as_ref() == Some(chain_id) {
                    return Err(StoreError::SnapshotInUse {
                        chain_id: chain_id.clone(),
                        child: other,
                    });
                }
            }
        }
        let dir = self.snapshot_dir(chain_id);
        let doomed = self.tmp_path("removed-snapshot");
        fs::rename(&dir, &doomed).map_err(io_err("rename", &dir))?;
        sync_dir(&self.dir(StoreDir::Snapshots))?;
        remove_tree(&doomed).map_err(io_err("remove", &doomed))
    }
}
