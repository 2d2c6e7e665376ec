//! OCI image formats for forge.
//!
//! How the types fit together:
//!
//! - [`Digest`] is the one content id (`sha256:<hex>`) used everywhere: blob names, image
//!   ids (the config's digest), layer diffIDs. [`HashingWriter`] / [`HashingReader`] compute
//!   one while bytes stream through.
//! - [`Reference`] is a user-facing image name, normalised the way docker does
//!   (`app` → `docker.io/library/app:latest`), with a familiar short form for display.
//! - [`media_types`] names every media type forge reads or writes; [`image`] holds the
//!   image config ([`ImageConfig`], which keeps docker's extra fields and unknown ones) and
//!   re-exports oci-spec's manifest, index and descriptor types.
//! - [`layer`] turns a directory (or an overlay upper dir) into a reproducible layer tar,
//!   compressed and hashed in one pass ([`layer::write_layer`]), and applies a layer tar to a
//!   directory without ever writing outside it ([`layer::apply_layer`]).
//! - [`sink`] is the seam to the store: archive readers hand every blob to a [`BlobSink`],
//!   which verifies its digest while writing, and writers read blobs from a [`BlobSource`].
//! - [`layout`] reads and writes OCI image layout directories; [`archive`] reads and writes
//!   oci-archive and docker-archive tarballs and tells which one a file or directory is.
//!
//! Blobs we did not create are always copied as bytes, never re-serialised, so a loaded
//! image saves back with the same digests. Nothing here reads the environment or holds a
//! layer in memory: options such as `SOURCE_DATE_EPOCH` are passed in, and every layer and
//! archive is a stream.
//!
//! A build step's layer, end to end:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use forge_oci::{image, layer, media_types, BlobSink, ImageConfig, OciLayout};
//! let mut store = OciLayout::create("/tmp/layout".as_ref())?;
//! let opts = layer::LayerOptions {
//!     source: layer::SourceKind::OverlayUpper,
//!     source_date_epoch: Some(0),
//!     ..layer::LayerOptions::gzip()
//! };
//! let tmp = std::fs::File::create("/tmp/layer.tmp")?;
//! let (_, info) = layer::write_layer("/tmp/upper".as_ref(), &opts, tmp)?;
//! store.put(&mut std::fs::File::open("/tmp/layer.tmp")?, Some(&info.digest))?;
//! let mut config = ImageConfig::default();
//! config.rootfs.diff_ids.push(info.diff_id.clone());
//! let cfg = store.put_json(media_types::OCI_CONFIG, &config)?;
//! let manifest = image::build_manifest(cfg, vec![info.descriptor()], None, false);
//! let m = store.put_json(media_types::OCI_MANIFEST, &manifest)?;
//! store.tag("app:latest", &m)?;
//! # Ok(())
//! # }
//! ```

pub mod archive;
pub mod digest;
pub mod image;
pub mod layer;
pub mod layout;
pub mod media_types;
pub mod reference;
pub mod sink;

pub use digest::{Algorithm, Digest, DigestError, Hasher, HashingReader, HashingWriter};
pub use image::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use layer::{apply_layer, write_layer, Compression};
pub use layout::OciLayout;
pub use reference::{FormatProblem, Reference, ReferenceError};
pub use sink::{BlobInfo, BlobSink, BlobSinkError, BlobSource, BlobSourceError, MemoryBlobs};
