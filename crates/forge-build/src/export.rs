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
    // An unchanged rebuild gives the image it gave before, as BuildKit does:
    // the result is keyed by everything but the timestamps.
    let mut timeless = config.clone();
    timeless.created = None;
    for h in timeless.history.iter_mut().flatten() {
        h.created = None;
    }
    let mut key_input =
        timeless
            .to_json()
            .map_err(|source| forge_store::StoreError::Serialise {
                what: "image config",
                source,
            })?;
    for l in &chain.layers {
        key_input.extend_from_slice(l.blob.as_str().as_bytes());
    }
    let record = store.dir(forge_store::StoreDir::Cache).join(format!(
        "export-{}.json",
        Digest::sha256_of(&key_input).hex()
    ));
    if let Some(previous) = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<(Descriptor, Digest)>(&b).ok())
        .filter(|(m, c)| {
            forge_oci::image::descriptor_digest(m).is_ok_and(|d| store.has_blob(&d))
                && store.has_blob(c)
        })
    {
        let (manifest_desc, id) = previous;
        store.add_image(&manifest_desc, names)?;
        return Ok(Exported {
            id,
            manifest_digest: forge_oci::image::descriptor_digest(&manifest_desc)?,
            manifest: manifest_desc,
        });
    }
    let config_desc = store.put_json(media_types::OCI_CONFIG, &config, "image config")?;
    let layers: Vec<Descriptor> = chain
        .layers
        .iter()
        .map(|l| descriptor(&l.media_type, &l.blob, l.size))
        .collect();
    let manifest = build_manifest(config_desc.clone(), layers, None, false);
    let manifest_desc = store.put_json(media_types::OCI_MANIFEST, &manifest, "image manifest")?;
    store.add_image(&manifest_desc, names)?;
    let id = forge_oci::image::descriptor_digest(&config_desc)?;
    // Best effort: without the record the next unchanged build only gets a
    // new timestamp.
    if let Ok(bytes) = serde_json::to_vec(&(&manifest_desc, &id)) {
        let _ = store.write_file(&record, &bytes);
    }
    Ok(Exported {
        id,
        manifest_digest: forge_oci::image::descriptor_digest(&manifest_desc)?,
        manifest: manifest_desc,
    })
}

/// Where `--output` writes the result, besides the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=oci,dest=FILE`: an oci-archive.
    Oci(std::path::PathBuf),
    /// `type=docker,dest=FILE`: a docker-archive, as `docker save` writes.
    Docker(std::path::PathBuf),
    /// `type=tar,dest=FILE`: a tar of the final root filesystem.
    Tar(std::path::PathBuf),
    /// `type=local,dest=DIR`: the final root filesystem in a directory.
    Local(std::path::PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("invalid --output {0:?}: expected type=oci|docker|tar|local,dest=PATH")]
    Spec(String),
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },
}

impl Output {
    /// Parses buildx's `type=…,dest=…` (a bare path means `type=local`, and `-`
    /// a tar of the root filesystem on stdout). `dest=-` of an archive is stdout.
    pub fn parse(spec: &str) -> Result<Output, OutputError> {
        if spec == "-" {
            return Ok(Output::Tar(STDOUT.into()));
        }
        if !spec.contains('=') {
            return Ok(Output::Local(spec.into()));
        }
        let mut kind = None;
        let mut dest = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest", v)) => dest = Some(std::path::PathBuf::from(v)),
                _ => return Err(OutputError::Spec(spec.into())),
            }
        }
        let dest = dest.ok_or_else(|| OutputError::Spec(spec.into()))?;
        match kind.as_deref() {
            Some("oci") => Ok(Output::Oci(dest)),
            Some("docker") => Ok(Output::Docker(dest)),
            Some("tar") => Ok(Output::Tar(dest)),
            Some("local") => Ok(Output::Local(dest)),
            _ => Err(OutputError::Spec(spec.into())),
        }
    }
}

/// The `dest` that means standard output.
const STDOUT: &str = "-";

impl Output {
    /// Whether this output goes to standard output.
    pub fn is_stdout(&self) -> bool {
        match self {
            Output::Oci(d) | Output::Docker(d) | Output::Tar(d) => d.as_os_str() == STDOUT,
            Output::Local(_) => false,
        }
    }
}

/// An archive's destination: a file (synced when done) or standard output.
enum Sink {
    File(std::fs::File),
    Stdout(std::io::Stdout),
}

impl Sink {
    fn create(dest: &std::path::Path) -> std::io::Result<Sink> {
        if dest.as_os_str() == STDOUT {
            Ok(Sink::Stdout(std::io::stdout()))
        } else {
            std::fs::File::create(dest).map(Sink::File)
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.sync_all(),
            Sink::Stdout(mut o) => std::io::Write::flush(&mut o),
        }
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stdout(o) => o.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(o) => o.flush(),
        }
    }
}

/// Writes the built image (`image`, already in the store) to `output`.
pub fn write_output(
    store: &Store,
    image: &Exported,
    names: &[Reference],
    chain: &Chain,
    output: &Output,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    let fail = |path: &std::path::Path, message: String| OutputError::Write {
        path: path.display().to_string(),
        message,
    };
    match output {
        Output::Oci(dest) | Output::Docker(dest) => {
            let record = store
                .resolve(image.id.as_str())
                .map_err(|e| fail(dest, e.to_string()))?
                .image;
            let format = if matches!(output, Output::Oci(_)) {
                forge_store::SaveFormat::OciArchive
            } else {
                forge_store::SaveFormat::DockerArchive
            };
            let file = Sink::create(dest).map_err(|e| fail(dest, e.to_string()))?;
            let images = [forge_store::SaveImage {
                image: record,
                names: names.to_vec(),
            }];
            let mtime = source_date_epoch.and_then(|t| u64::try_from(t).ok());
            let file = store
                .save(&images, format, std::io::BufWriter::new(file), mtime)
                .map_err(|e| fail(dest, e.to_string()))?;
            file.into_inner()
                .map_err(|e| fail(dest, e.to_string()))?
                .finish()
                .map_err(|e| fail(dest, e.to_string()))
        }
        Output::Local(dir) => unpack_chain(store, chain, dir).map_err(|m| fail(dir, m)),
        Output::Tar(dest) => {
            let staging = store.tmp_path("output");
            let result = (|| {
                unpack_chain(store, chain, &staging)?;
                let file = Sink::create(dest).map_err(|e| e.to_string())?;
                let opts = forge_oci::layer::LayerOptions {
                    compression: forge_oci::Compression::None,
                    source_date_epoch,
                    ..Default::default()
                };
                let (file, _) = forge_oci::layer::write_layer(&staging, &opts, file)
                    .map_err(|e| e.to_string())?;
                file.finish().map_err(|e| e.to_string())
            })();
            let _ = std::fs::remove_dir_all(&staging);
            result.map_err(|m| fail(dest, m))
        }
    }
}

/// Applies a chain's layers, bottom first, into `dir` (created if missing).
fn unpack_chain(store: &Store, chain: &Chain, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for layer in &chain.layers {
        let (blob, _) = store
            .open_blob(&layer.blob, "layer")
            .map_err(|e| e.to_string())?;
        forge_oci::layer::apply_layer(
            blob,
            dir,
            &forge_oci::layer::ApplyOptions {
                mode: forge_oci::layer::ApplyMode::Plain,
                same_owner: None,
            },
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
