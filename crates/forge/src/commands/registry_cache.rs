//! `--cache-to` / `--cache-from type=registry,ref=…`: forge-build's cache records,
//! moved as an OCI artifact by forge-registry (verified pulls, HEAD-skipped pushes).

use forge_build::cache::{BlobFetcher, CacheRecords, CachedLayer, ImportedCache};
use forge_oci::image::descriptor_digest;
use forge_oci::Reference;
use forge_registry::artifact::{fetch_blob, fetch_manifest_bytes, push_manifest};
use forge_registry::Client;
use forge_store::Store;

/// The cache at `reference`: its records now, its layer blobs when a step needs them.
pub fn import(store: &Store, reference: &str) -> anyhow::Result<ImportedCache> {
    let reference = Reference::parse(reference)?;
    let client = super::pull::client()?;
    let (manifest, _) = fetch_manifest_bytes(&client, &reference)?;
    let records = CacheRecords::from_manifest(&manifest, &|d| {
        let digest = descriptor_digest(d).map_err(|e| e.to_string())?;
        fetch_blob(&client, &reference, store, &digest, d.size()).map_err(|e| e.to_string())?;
        store
            .read_blob(&digest, "build cache records")
            .map_err(|e| e.to_string())
    })?;
    Ok(ImportedCache::new(
        records,
        Box::new(RegistryFetcher { client, reference }),
    ))
}

/// Pushes `records` (and the blobs they name) to `reference`.
pub fn export(store: &Store, records: &CacheRecords, reference: &str) -> anyhow::Result<()> {
    let reference = Reference::parse(reference)?;
    let client = super::pull::client()?;
    let manifest = records.put_manifest(store)?;
    push_manifest(&client, store, &manifest, &reference)?;
    Ok(())
}

struct RegistryFetcher {
    client: Client,
    reference: Reference,
}

impl BlobFetcher for RegistryFetcher {
    fn fetch(&self, store: &Store, layer: &CachedLayer) -> Result<(), String> {
        fetch_blob(
            &self.client,
            &self.reference,
            store,
            &layer.digest,
            layer.size,
        )
        .map_err(|e| e.to_string())
    }
}
