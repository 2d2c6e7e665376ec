//! forge's on-disk store.
//!
//! The store directory (`FORGE_ROOT`) is itself an OCI image layout, so peers read it as it
//! is (`skopeo inspect oci:$FORGE_ROOT:app:1.0`, `umoci unpack --image $FORGE_ROOT:app:1.0`):
//!
//! ```text
//! oci-layout, index.json   one descriptor per (name, manifest); untagged images unnamed
//! blobs/sha256/<hex>       manifests, configs, compressed layers, by digest
//! snapshots/<chain id>/    fs/ (one layer's diff, overlay format) + meta.json
//! cache/ statcache/        build cache and context stat cache (used by the builder)
//! containers/ volumes/     container state and named volumes (used by run)
//! tmp/                     staging on the same filesystem: every write lands here first
//! locks/                   index.lock, gc.lock (flock)
//! ```
//!
//! How the types fit together:
//!
//! - [`Store`] opens the directory and owns the rules: every write is staged in `tmp/`,
//!   fsynced and renamed into place ([`BlobWriter`], [`Store::put_blob`],
//!   [`Store::update_index`]), so no partial blob is ever visible under `blobs/`; reads
//!   verify digests ([`Store::read_blob`], [`Store::open_blob`]). It implements
//!   forge-oci's [`forge_oci::BlobSink`] and [`forge_oci::BlobSource`], so the archive
//!   readers and writers stream straight into and out of it.
//! - [`lock`] has the two file locks that let several forge processes share a store:
//!   `index.lock` around each `index.json` update, `gc.lock` held shared by every
//!   operation ([`Store::lease`]) and exclusively by garbage collection.
//! - [`images`] reads `index.json` as images ([`ImageRecord`]: manifest, config, names),
//!   resolves what a user typed the way docker does ([`Store::resolve`]), and tags and
//!   untags.
//! - [`snapshot`] unpacks layers into `snapshots/` (prepare in `tmp/`, commit by rename)
//!   keyed by chain ID, and gives the overlay lowerdirs of an image.
//! - [`active`] is the snapshotter the builder runs steps on: [`Store::prepare`] stages a
//!   writable [`ActiveSnapshot`] (upper and work dirs in `tmp/`) on a committed chain
//!   ([`Store::view`] gives its lowerdirs), [`Store::commit`] turns the upper into a layer
//!   blob and renames it into `snapshots/` as the new snapshot ([`CommittedLayer`]),
//!   [`Store::snapshot_layer`] rebases a layer onto another parent, and
//!   [`Store::remove_snapshot`] removes one nothing is on top of.
//! - [`import`], [`transfer`] (load and save) and [`manage`] (rmi, prune, df) are the
//!   operations behind the CLI commands of the same names; [`gc`] removes what nothing
//!   reaches. [`pgzip`] compresses layers on every core (pigz's independent blocks, so
//!   the bytes do not depend on the thread count); for committed steps' layers it cuts
//!   blocks by content and takes the ones [`gzmemo`] has seen from the blobs that hold
//!   them, so a rebuild after a small edit recompresses only the blocks around it.
//!
//! Errors are one enum, [`StoreError`], whose variants carry the path, digest or name they
//! are about.

pub mod active;
pub mod error;
pub mod gc;
pub mod gzmemo;
pub mod images;
pub mod import;
pub mod lock;
pub mod manage;
pub mod pgzip;
pub mod snapshot;
mod store;
pub mod transfer;

pub use active::{chain_id, ActiveSnapshot, CommitOptions, CommittedDiff, CommittedLayer};
pub use error::{Result, StoreError};
pub use gc::{GcReport, GcRoots};
pub use images::{ImageList, ImageRecord, Matched, Resolved, Retagged};
pub use import::{ImportOptions, Imported};
pub use lock::{Lease, LockGuard};
pub use manage::{DiskUsage, ImageUse, ImagesInUse, Removal, RemoveError};
pub use snapshot::{chain_ids, PreparedSnapshot, SnapshotMeta};
pub use store::{BlobWriter, Store, StoreDir, MAX_DOCUMENT_SIZE};
pub use transfer::{LoadOutcome, LoadedImage, SaveFormat, SaveImage};

use std::path::PathBuf;

/// The default store directory: `/var/lib/forge` for root, else `$XDG_DATA_HOME/forge`
/// (`~/.local/share/forge` when unset). The caller passes the environment in, so this
/// crate never reads it itself.
pub fn default_root(
    euid_is_root: bool,
    xdg_data_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    if euid_is_root {
        return PathBuf::from("/var/lib/forge");
    }
    match xdg_data_home.filter(|p| p.is_absolute()) {
        Some(x) => x.join("forge"),
        None => home
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(".local/share/forge"),
    }
}
