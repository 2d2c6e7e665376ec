//! `import`: a rootfs tarball becomes a one-layer image, as `docker import` does.
//!
//! The tarball (plain, gzip or zstd, told apart by magic bytes) is unpacked with the safe
//! applier into a snapshot prepared in `tmp/`, then the layer is written from that tree
//! with forge's reproducible layer writer (entries sorted, numeric owners, PAX headers as
//! Go writes them, mtimes clamped to `SOURCE_DATE_EPOCH`, gzip without name or time).
//! Re-writing rather than streaming the input through is what makes the layer digest a
//! function of the rootfs alone: the same tree gives the same layer whatever the input's
//! compression, entry order, header flavour (GNU, PAX, ustar) or owner names, and the
//! clamping that reproducible builds need is possible. The unpacked tree is then committed
//! as the layer's snapshot, ready to run. Hostile entries (`..`, absolute names, writes
//! through symlinks, hardlinks out, device nodes without CAP_MKNOD) are refused by the
//! applier before anything is stored.

use std::io::Read;
use std::sync::Arc;

use forge_oci::image::{build_manifest, rfc3339_utc};
use forge_oci::layer::{
    unpack_rootfs, write_layer, ApplyMode, ApplyOptions, Compression, LayerInfo, LayerOptions,
    SourceKind,
};
use forge_oci::{media_types, ContainerConfig, History, ImageConfig, Reference, RootFs};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::images::{host_architecture, ImageRecord, Retagged};
use crate::pgzip::ParallelGzip;
use crate::snapshot::{content_size, SnapshotMeta};
use crate::store::Store;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The input's name for messages and the default comment (`-` for standard input, as
    /// docker records it).
    pub source: String,
    /// The commit message (`-m`); default `Imported from <source>`.
    pub message: Option<String>,
    /// The container config (from `--change`); empty by default.
    pub config: Option<ContainerConfig>,
    /// `SOURCE_DATE_EPOCH`: `created`, history and clamped mtimes.
    pub source_date_epoch: Option<i64>,
    /// Layer compression (gzip by default).
    pub compression: Compression,
    /// Compression level (gzip 0-9, zstd 1-22); [`DEFAULT_GZIP_LEVEL`] for gzip when
    /// `None`, zstd's default otherwise.
    pub level: Option<u32>,
    /// GOARCH of the image; the host's by default.
    pub architecture: Option<String>,
}

/// The gzip level of imported layers when none is asked for.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The new image (with its names).
    pub image: ImageRecord,
    /// The layer written.
    pub layer: LayerInfo,
    /// Names taken from other images.
    pub retagged: Vec<Retagged>,
}

/// `now` as Go's RFC 3339 with nanoseconds (trailing zeros trimmed), as docker writes
/// `created`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let base = rfc3339_utc(secs);
    let nanos = now.subsec_nanos();
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    format!("{}.{frac}Z", base.trim_end_matches('Z'))
}

impl Store {
    /// Writes the tree under `dir` (a plain directory, or an overlay upper dir
    /// whose whiteouts become `.wh.` entries) as a layer blob. gzip goes through
    /// [`ParallelGzip`] on every core (the tar itself, with its diffID, is made by
    /// forge-oci's writer); other compressions through forge-oci's writer alone.
    pub fn write_layer_blob(
        &self,
        dir: &std::path::Path,
        source: SourceKind,
        compression: Compression,
        level: Option<u32>,
        source_date_epoch: Option<i64>,
    ) -> Result<LayerInfo> {
        self.write_layer_blob_in(dir, source, compression, level, source_date_epoch, false)
    }

    /// [`Store::write_layer_blob`], with gzip in memo mode when `memo`: the layers of
    /// committed steps, which a rebuild often writes again with few changes (see
    /// [`crate::gzmemo`]).
    pub(crate) fn write_layer_blob_in(
        &self,
        dir: &std::path::Path,
        source: SourceKind,
        compression: Compression,
        level: Option<u32>,
        source_date_epoch: Option<i64>,
        memo: bool,
    ) -> Result<LayerInfo> {
        let mut layer_opts = LayerOptions {
            compression,
            level: level.and_then(|l| i32::try_from(l).ok()),
            source_date_epoch,
            source,
        };
        if compression != Compression::Gzip {
            let (w, layer) = write_layer(dir, &layer_opts, self.blob_writer()?)?;
            w.commit(Some(&layer.digest))?;
            return Ok(layer);
        }
        layer_opts.compression = Compression::None;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let blob = self.blob_writer()?;
        let tmp = blob.tmp_path().to_path_buf();
        let io = |source| StoreError::Io {
            op: "write",
            path: tmp.clone(),
            source,
        };
        let level = level.unwrap_or(DEFAULT_GZIP_LEVEL);
        let memo = memo.then(|| Arc::new(self.block_memo()));
        let gz = match &memo {
            Some(memo) => ParallelGzip::with_memo(blob, level, threads, Arc::clone(memo)),
            None => ParallelGzip::new(blob, level, threads),
        }
        .map_err(io)?;
        let (gz, tar) = write_layer(dir, &layer_opts, gz)?;
        let (blob, blocks) = gz.finish_with_blocks().map_err(io)?;
        let info = blob.commit(None)?;
        if let Some(memo) = memo {
            memo.record(&info.digest, &blocks);
        }
        Ok(LayerInfo {
            digest: info.digest,
            size: info.size,
            diff_id: tar.diff_id,
            uncompressed_size: tar.uncompressed_size,
            compression: Compression::Gzip,
        })
    }

    /// Imports the rootfs tarball read from `input` as a new image named `names`.
    pub fn import<R: Read>(
        &self,
        input: R,
        opts: &ImportOptions,
        names: &[Reference],
    ) -> Result<Imported> {
        let _lease = self.lease()?;
        let prepared = self.prepare_snapshot()?;
        let apply = ApplyOptions {
            mode: ApplyMode::Plain,
            same_owner: None,
        };
        // The input's own digests are not needed: the layer is written anew below.
        unpack_rootfs(input, &prepared.fs(), &apply).map_err(|source| StoreError::Apply {
            file: opts.source.clone(),
            source,
        })?;

        let layer = self.write_layer_blob(
            &prepared.fs(),
            SourceKind::Directory,
            opts.compression,
            opts.level,
            opts.source_date_epoch,
        )?;

        let size = content_size(&prepared.fs())?;
        if !self.has_snapshot(&layer.diff_id) {
            let meta = SnapshotMeta {
                chain_id: layer.diff_id.clone(),
                parent: None,
                diff_id: layer.diff_id.clone(),
                layer: Some(layer.digest.clone()),
                size,
                uncompressed_size: Some(layer.uncompressed_size),
            };
            self.commit_snapshot(prepared, &meta)?;
        }

        let created = match opts.source_date_epoch {
            Some(t) => rfc3339_utc(t),
            None => now_rfc3339(),
        };
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", opts.source));
        let mut extra = std::collections::BTreeMap::new();
        extra.insert("comment".to_string(), Value::String(comment.clone()));
        let config = ImageConfig {
            created: Some(created.clone()),
            architecture: opts
                .architecture
                .clone()
                .unwrap_or_else(|| host_architecture().to_string()),
            os: "linux".into(),
            config: Some(opts.config.clone().unwrap_or_default()),
            rootfs: RootFs {
                diff_ids: vec![layer.diff_id.clone()],
                ..RootFs::default()
            },
            history: Some(vec![History {
                created: Some(created),
                comment: Some(comment),
                ..History::default()
            }]),
            extra,
            ..ImageConfig::default()
        };
        let cfg = self.put_json(media_types::OCI_CONFIG, &config, "image config")?;
        let manifest = build_manifest(cfg, vec![layer.descriptor()], None, false);
        let md = self.put_json(media_types::OCI_MANIFEST, &manifest, "image manifest")?;
        let retagged = self.add_image(&md, names)?;
        let mut image = self.image_for(&md)?;
        image.names = names.to_vec();
        Ok(Imported {
            image,
            layer,
            retagged,
        })
    }
}
