//! The build cache. Locally, `cache/<key>.json` in the store maps a step's cache key to
//! the chain of layers it produced. Between machines, the records of a build travel as
//! an OCI artifact any registry or OCI layout holds (`--cache-to` / `--cache-from`): an
//! image manifest with `artifactType` [`CACHE_ARTIFACT_TYPE`], whose config blob is the
//! record table ([`CacheRecords`]: key → the chain's layers) and whose layers are the
//! ordinary layer blobs the records name.
//!
//! An imported cache is consulted when the local cache misses. A record is taken only
//! when its key matches, and only once every blob it names is in the store (fetched and
//! verified by digest) and its snapshots are unpacked; anything wrong with it is a miss,
//! never a failed build.

use crate::solve::{Chain, Layer};
use forge_oci::image::{build_manifest, descriptor, descriptor_digest, Descriptor};
use forge_oci::layout::{LayoutError, OciLayout};
use forge_oci::Digest;
use forge_store::{Store, StoreDir, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `artifactType` of a cache manifest.
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.forge.buildcache.v1";
/// Media type of a cache manifest's config: the record table.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.forge.buildcache.config.v1+json";
/// The name a cache manifest has in a local cache directory's `index.json`.
pub const LOCAL_CACHE_TAG: &str = "latest";

fn record_path(store: &Store, key: &Digest) -> PathBuf {
    store
        .dir(StoreDir::Cache)
        .join(format!("{}.json", key.hex()))
}

/// A local cache entry, if it is complete: every snapshot and blob still there.
pub(crate) fn get(store: &Store, key: &Digest) -> Option<Chain> {
    let bytes = std::fs::read(record_path(store, key)).ok()?;
    let chain: Chain = serde_json::from_slice(&bytes).ok()?;
    chain
        .layers
        .iter()
        .all(|l| store.has_snapshot(&l.chain_id) && store.has_blob(&l.blob))
        .then_some(chain)
}

/// Records a result atomically; a reader never sees half.
pub(crate) fn put(store: &Store, key: &Digest, chain: &Chain) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(chain).map_err(|source| StoreError::Serialise {
        what: "cache record",
        source,
    })?;
    store.write_file(&record_path(store, key), &bytes)
}

/// One layer of a shared record: what it takes to fetch, verify and unpack it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub digest: Digest,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// The record table of a shared cache: cache key → the chain's layers, base first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecords {
    pub records: BTreeMap<Digest, Vec<CachedLayer>>,
}

/// Which steps a cache export keeps (buildx's `mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the exported stage only.
    Min,
    /// Every step the build ran or took from the cache, intermediate stages included.
    Max,
}

impl CacheRecords {
    /// The records of a finished build: for each solved step in `mode`'s scope, its key
    /// and its chain.
    pub fn of_build(
        plan: &crate::Plan,
        results: &[Option<Chain>],
        keys: &[Option<Digest>],
        mode: CacheMode,
    ) -> CacheRecords {
        let target = plan.target().index;
        let mut records = BTreeMap::new();
        for (id, v) in plan.graph.vertices.iter().enumerate() {
            if matches!(v.op, crate::Op::Image { .. } | crate::Op::Scratch) {
                continue;
            }
            if mode == CacheMode::Min && v.stage != target {
                continue;
            }
            let (Some(Some(chain)), Some(Some(key))) = (results.get(id), keys.get(id)) else {
                continue;
            };
            let layers = chain
                .layers
                .iter()
                .map(|l| CachedLayer {
                    digest: l.blob.clone(),
                    diff_id: l.diff_id.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
                .collect();
            records.insert(key.clone(), layers);
        }
        CacheRecords { records }
    }

    /// Every blob the records name, once each, in a stable order.
    pub fn blobs(&self) -> Vec<CachedLayer> {
        let mut seen = BTreeMap::new();
        for l in self.records.values().flatten() {
            seen.entry(l.digest.clone()).or_insert_with(|| l.clone());
        }
        seen.into_values().collect()
    }

    /// Writes the record table and a manifest naming it and every blob into the store;
    /// returns the manifest's descriptor (what a registry push or a layout tags).
    pub fn put_manifest(&self, store: &Store) -> Result<Descriptor, CacheError> {
        let config = store.put_json(CACHE_CONFIG_MEDIA_TYPE, self, "cache records")?;
        let layers = self
            .blobs()
            .iter()
            .map(|l| descriptor(&l.media_type, &l.digest, l.size))
            .collect();
        let mut manifest = build_manifest(config, layers, None, false);
        manifest.set_artifact_type(Some(CACHE_ARTIFACT_TYPE.into()));
        Ok(store.put_json(
            forge_oci::media_types::OCI_MANIFEST,
            &manifest,
            "cache manifest",
        )?)
    }

    /// Reads the record table a cache manifest names, from any blob source; `None` when
    /// the manifest is not a forge build cache.
    pub fn from_manifest(
        manifest: &[u8],
        read_blob: &dyn Fn(&Descriptor) -> Result<Vec<u8>, String>,
    ) -> Result<CacheRecords, CacheError> {
        let manifest: forge_oci::image::ImageManifest = serde_json::from_slice(manifest)
            .map_err(|e| CacheError::Invalid(format!("manifest: {e}")))?;
        let config = manifest.config();
        if config.media_type().to_string() != CACHE_CONFIG_MEDIA_TYPE {
            return Err(CacheError::Invalid(format!(
                "not a forge build cache (config media type {})",
                config.media_type()
            )));
        }
        let bytes = read_blob(config).map_err(CacheError::Invalid)?;
        let expected = descriptor_digest(config).map_err(|e| CacheError::Invalid(e.to_string()))?;
        if Digest::sha256_of(&bytes) != expected {
            return Err(CacheError::Invalid(format!(
                "cache config does not match its digest {expected}"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Invalid(format!("records: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cache directory {path}: {source}")]
    Layout {
        path: PathBuf,
        #[source]
        source: LayoutError,
    },
    #[error("invalid build cache: {0}")]
    Invalid(String),
}

/// Brings a blob a shared record names into the store, verified against its digest.
pub trait BlobFetcher: Send + Sync {
    fn fetch(&self, store: &Store, layer: &CachedLayer) -> Result<(), String>;
}

/// A shared cache a build consults when its local cache misses.
pub struct ImportedCache {
    records: CacheRecords,
    fetcher: Box<dyn BlobFetcher>,
}

impl ImportedCache {
    pub fn new(records: CacheRecords, fetcher: Box<dyn BlobFetcher>) -> ImportedCache {
        ImportedCache { records, fetcher }
    }

    /// Records it holds.
    pub fn len(&self) -> usize {
        self.records.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.records.is_empty()
    }

    /// The chain recorded for `key`, its blobs fetched and its snapshots unpacked, and
    /// recorded in the local cache too; `None` on any miss or failure.
    pub(crate) fn restore(&self, store: &Store, key: &Digest) -> Option<Chain> {
        let layers = self.records.records.get(key)?;
        let mut chain = Chain::default();
        for l in layers {
            if !store.has_blob(&l.digest) {
                self.fetcher.fetch(store, l).ok()?;
                if !store.has_blob(&l.digest) {
                    return None;
                }
            }
            let chain_id = store
                .snapshot_layer(chain.top(), &l.digest, &l.diff_id)
                .ok()?;
            chain.layers.push(Layer {
                chain_id,
                diff_id: l.diff_id.clone(),
                blob: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                pending: false,
            });
        }
        // Only a cache that cannot be written is lost here: the chain is sound.
        let _ = put(store, key, &chain);
        Some(chain)
    }
}

/// `--cache-to type=local,dest=DIR`: the cache as an OCI image layout (`index.json`
/// names the cache manifest [`LOCAL_CACHE_TAG`]); blobs already there are kept.
pub fn export_local(store: &Store, records: &CacheRecords, dir: &Path) -> Result<(), CacheError> {
    let layout_err = |source| CacheError::Layout {
        path: dir.to_path_buf(),
        source,
    };
    let manifest = records.put_manifest(store)?;
    let mut layout = match OciLayout::open(dir) {
        Ok(l) => l,
        Err(_) => OciLayout::create(dir).map_err(layout_err)?,
    };
    let manifest_digest =
        descriptor_digest(&manifest).map_err(|e| CacheError::Invalid(e.to_string()))?;
    let manifest_bytes = store.read_blob(&manifest_digest, "cache manifest")?;
    let parsed: forge_oci::image::ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| CacheError::Invalid(e.to_string()))?;
    let mut blobs: Vec<Digest> =
        vec![descriptor_digest(parsed.config()).map_err(|e| CacheError::Invalid(e.to_string()))?];
    blobs.extend(records.blobs().into_iter().map(|l| l.digest));
    blobs.push(manifest_digest);
    for d in blobs {
        if layout.has_blob(&d) {
            continue;
        }
        let (mut reader, _) = store.open_blob(&d, "cache blob")?;
        forge_oci::sink::BlobSink::put(&mut layout, &mut reader, Some(&d))
            .map_err(|e| CacheError::Invalid(format!("writing blob {d}: {e}")))?;
    }
    layout.tag(LOCAL_CACHE_TAG, &manifest).map_err(layout_err)
}

/// `--cache-from type=local,src=DIR`: the records of a cache directory written by
/// [`export_local`], fetching blobs from it on demand.
pub fn import_local(dir: &Path) -> Result<ImportedCache, CacheError> {
    let layout_err = |source| CacheError::Layout {
        path: dir.to_path_buf(),
        source,
    };
    let layout = OciLayout::open(dir).map_err(layout_err)?;
    let manifest = layout.resolve(LOCAL_CACHE_TAG).map_err(layout_err)?;
    let digest = descriptor_digest(&manifest).map_err(|e| CacheError::Invalid(e.to_string()))?;
    let bytes = layout.read_blob(&digest).map_err(layout_err)?;
    let records = CacheRecords::from_manifest(&bytes, &|d| {
        let digest = descriptor_digest(d).map_err(|e| e.to_string())?;
        layout.read_blob(&digest).map_err(|e| e.to_string())
    })?;
    Ok(ImportedCache::new(
        records,
        Box::new(LayoutFetcher {
            dir: dir.to_path_buf(),
        }),
    ))
}

/// Copies blobs from a local cache directory into the store, verifying each.
struct LayoutFetcher {
    dir: PathBuf,
}

impl BlobFetcher for LayoutFetcher {
    fn fetch(&self, store: &Store, layer: &CachedLayer) -> Result<(), String> {
        let layout = OciLayout::open(&self.dir).map_err(|e| e.to_string())?;
        let (mut reader, _) = layout.open_blob(&layer.digest).map_err(|e| e.to_string())?;
        store
            .put_blob(&mut reader, Some(&layer.digest))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
