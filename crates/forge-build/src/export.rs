//! Assembling a stage's result into an image in the store: the config (the
//! stage's config with `rootfs.diff_ids` from its result chain and one
//! history entry per step, `empty_layer` when the step added no layer), an
//! OCI manifest, both stored as blobs, and the names.

use crate::lower::{Plan, StageOutput};
use crate::solve::Chain;
use forge_oci::image::{build_manifest, descriptor, rfc3339_utc, Descriptor};
use forge_oci::{media_types, Digest, History, Reference};
use forge_store::Store;

/// The comment BuildKit puts on every history entry it makes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

#[derive(Debug, Clone)]
pub struct Exported {
    /// The image id: the config's digest.
    pub id: Digest,
    pub manifest: Descriptor,
    pub manifest_digest: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the target stage was not built")]
    NotBuilt,
    #[error(transparent)]
    Store(#[from] forge_store::StoreError),
    #[error(transparent)]
    Digest(#[from] forge_oci::DigestError),
}

/// When the image and its history entries were created: `SOURCE_DATE_EPOCH`,
/// else now.
pub fn created(source_date_epoch: Option<i64>) -> String {
    match source_date_epoch {
        Some(t) => rfc3339_utc(t),
        None => forge_store::import::now_rfc3339(),
    }
}

/// Builds the image config for `stage` from the solved `results`.
pub fn image_config(
    plan: &Plan,
    stage: &StageOutput,
    results: &[Option<Chain>],
    source_date_epoch: Option<i64>,
) -> Result<(forge_oci::ImageConfig, Chain), ExportError> {
    let chain = results
        .get(stage.root)
        .and_then(|c| c.clone())
        .ok_or(ExportError::NotBuilt)?;
    let now = created(source_date_epoch);
    let layers_of = |v: usize| {
        results
            .get(v)
            .and_then(|c| c.as_ref())
            .map_or(0, |c| c.layers.len())
    };
    let mut history = stage.base_history.clone();
    for step in &stage.steps {
        let made_layer = step.layer.is_some_and(|l| {
            let before = l.parent.map_or(0, layers_of);
            layers_of(l.vertex) > before
        });
        history.push(History {
            created: Some(now.clone()),
            created_by: Some(step.created_by.clone()),
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: (!made_layer).then_some(true),
            ..Default::default()
        });
    }
    let mut config = stage.config.clone();
    let _ = plan;
    config.created = Some(now);
    config.rootfs.diff_ids = chain.layers.iter().map(|l| l.diff_id.clone()).collect();
    config.history = Some(history);
    Ok((config, chain))
}

/// Stores the image of `stage` and names it.
pub fn export(
    store: &Store,
    plan: &Plan,
    stage: &StageOutput,
    results: &[Option<Chain>],
    names: &[Reference],
    source_date_epoch: Option<i64>,
) -> Result<Exported, ExportError> {
    let (config, chain) = image_config(plan, stage, results, source_date_epoch)?;
    let config_desc = store.put_json(media_types::OCI_CONFIG, &config, "image config")?;
    let layers: Vec<Descriptor> = chain
        .layers
        .iter()
        .map(|l| descriptor(&l.media_type, &l.blob, l.size))
        .collect();
    let manifest = build_manifest(config_desc.clone(), layers, None, false);
    let manifest_desc = store.put_json(media_types::OCI_MANIFEST, &manifest, "image manifest")?;
    store.add_image(&manifest_desc, names)?;
    Ok(Exported {
        id: forge_oci::image::descriptor_digest(&config_desc)?,
        manifest_digest: forge_oci::image::descriptor_digest(&manifest_desc)?,
        manifest: manifest_desc,
    })
}
