//! The store's error type: one enum, every variant carrying the path, digest or name it is
//! about, so a message on its own tells the user what failed where.

use std::io;
use std::path::PathBuf;

use forge_oci::archive::ArchiveError;
use forge_oci::layer::{ApplyError, LayerWriteError};
use forge_oci::layout::LayoutError;
use forge_oci::{BlobSinkError, Digest, DigestError, ReferenceError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory of the store could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing (`create`, `rename`, …).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Taking a file lock failed.
    #[error("locking {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: nix::errno::Errno,
    },
    /// The OCI layout part of the store (index, blobs) failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Reading or writing an image archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Storing a blob failed (digest mismatch, I/O).
    #[error(transparent)]
    Blob(#[from] BlobSinkError),
    /// No image has that name or id (docker's wording).
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// A short id matches more than one image.
    #[error("short image id {prefix:?} is ambiguous: it matches {count} images")]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// How many images it matches.
        count: usize,
    },
    /// A blob an image needs is not in the store.
    #[error("blob {digest} ({what}) is missing from {path}")]
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// What it is (`manifest`, `config`, `layer`).
        what: &'static str,
        /// Where it should be.
        path: PathBuf,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {path} is corrupt: {reason}")]
    Corrupt {
        /// The blob file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A manifest, index or config does not parse.
    #[error("parsing {what} {digest}: {source}")]
    Json {
        /// What the document is.
        what: &'static str,
        /// Its blob.
        digest: Digest,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A descriptor names a digest we cannot use.
    #[error("bad digest in {what}: {source}")]
    Digest {
        /// The document.
        what: String,
        /// Why.
        source: DigestError,
    },
    /// A descriptor's media type is not an image manifest or index.
    #[error("{digest} is a {media_type}, not an image manifest or index")]
    NotAnImage {
        /// The descriptor's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// An index lists no manifest that is present in the store.
    #[error("image index {0} has no manifest in the store")]
    EmptyIndex(Digest),
    /// Manifest and config disagree on the number of layers.
    #[error(
        "image manifest {manifest} lists {layers} layers but its config has {diff_ids} diffIDs"
    )]
    LayerCount {
        /// The manifest.
        manifest: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// diffIDs in the config.
        diff_ids: usize,
    },
    /// A layer does not uncompress to the diffID its image's config names.
    #[error("layer {layer} has diffID {actual}, the image config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// From the config.
        expected: Digest,
        /// Computed while unpacking.
        actual: Digest,
    },
    /// Unpacking a layer (or an imported tarball) failed; `source` names the entry.
    #[error("{file}: {source}")]
    Apply {
        /// The tarball or layer blob.
        file: String,
        /// The applier's error.
        source: ApplyError,
    },
    /// Writing a layer from an unpacked tree failed.
    #[error(transparent)]
    LayerWrite(#[from] LayerWriteError),
    /// A name is not a valid image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A snapshot is not in the store (`needed_by`: the snapshot whose parent it is).
    #[error("snapshot {chain_id} is missing{}", needed_by.as_ref().map(|c| format!(" (the parent of snapshot {c})")).unwrap_or_default())]
    NoSnapshot {
        /// Its chain ID.
        chain_id: Digest,
        /// The snapshot on top of it that needs it, if the walk came from one.
        needed_by: Option<Digest>,
    },
    /// A snapshot cannot be removed while another one is on top of it.
    #[error("snapshot {chain_id} is the parent of snapshot {child}: remove that one first")]
    SnapshotInUse {
        /// The snapshot asked to be removed.
        chain_id: Digest,
        /// One snapshot whose parent it is.
        child: Digest,
    },
    /// Snapshot metadata loops back on itself or is deeper than any image can be.
    #[error("snapshot chain ending at {chain_id} is broken: {reason}")]
    BrokenChain {
        /// The top of the chain.
        chain_id: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document could not be serialised.
    #[error("serialising {what}: {source}")]
    Serialise {
        /// What.
        what: &'static str,
        /// The error.
        source: serde_json::Error,
    },
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}
