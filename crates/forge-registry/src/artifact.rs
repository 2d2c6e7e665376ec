//! OCI artifacts that are not images, such as forge's build cache: a manifest read by
//! reference (mirrors first for docker.io names, as a pull), blobs fetched one at a
//! time when a caller needs them, and a manifest pushed with the blobs it names. The
//! transfers are a pull's and a push's: verified by digest, retried, HEAD-skipped.

use forge_oci::image::{descriptor_digest, Descriptor, ImageManifest};
use forge_oci::{Digest, ImageConfig, Reference};
use forge_store::{ImageRecord, Store, StoreError};

use crate::client::Client;
use crate::error::{PullError, PushError};
use crate::pull::{download_blob, resolve_manifest, Silent};
use crate::push::{push, PushOptions, Pushed};

/// The manifest `reference` names, as bytes (verified against its digest) and digest.
pub fn fetch_manifest_bytes(
    client: &Client,
    reference: &Reference,
) -> Result<(Vec<u8>, Digest), PullError> {
    let (_, fetched) = resolve_manifest(client, reference, &Silent)?;
    Ok((fetched.bytes, fetched.digest))
}

/// Puts blob `digest` (`size` bytes) of `reference`'s repository into `store`,
/// verified; nothing to do when the store has it.
pub fn fetch_blob(
    client: &Client,
    reference: &Reference,
    store: &Store,
    digest: &Digest,
    size: u64,
) -> Result<(), PullError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let endpoint = client.endpoint(reference.domain())?;
    let session = client.session(&endpoint, reference.path(), "pull", &[])?;
    download_blob(&session, store, digest, size, &|_| {}, None)
}

/// Pushes the manifest `manifest` (in `store`, with its config and layers) to `dest`.
pub fn push_manifest(
    client: &Client,
    store: &Store,
    manifest: &Descriptor,
    dest: &Reference,
) -> Result<Pushed, PushError> {
    let digest = descriptor_digest(manifest).map_err(|source| PushError::Descriptor {
        what: "manifest",
        source,
    })?;
    let bytes = store.read_blob(&digest, "manifest")?;
    let parsed: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
    let config_descriptor = parsed.config().clone();
    let id = descriptor_digest(&config_descriptor).map_err(|source| PushError::Descriptor {
        what: "config",
        source,
    })?;
    // push reads an image's descriptors only; an artifact's config is no image
    // config, so none is parsed.
    let record = ImageRecord {
        target: manifest.clone(),
        manifest: manifest.clone(),
        id,
        config_descriptor,
        config: ImageConfig::default(),
        layers: parsed.layers().clone(),
        names: Vec::new(),
    };
    push(
        client,
        store,
        &record,
        dest,
        &PushOptions::default(),
        &Silent,
    )
}
