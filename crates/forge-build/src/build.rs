//! One build, end to end: parse the Dockerfile, open the context, lower
//! against the store's images, solve, export and name the image.

use crate::cache::{CacheMode, CacheRecords, ImportedCache};
use crate::context::{BuildContext, ContextError, StatCache};
use crate::export::{self, ExportError, Exported};
use crate::graph::Network;
use crate::lower::{self, ImageResolver, LowerError, LowerOptions, Plan, ResolvedImage};
use crate::progress::{Event, Progress};
use crate::solve::{self, Chain, Secret, SolveError, SolveOptions};
use forge_dockerfile::Diagnostic;
use forge_oci::{Digest, Reference};
use forge_store::Store;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Everything a build needs.
pub struct BuildRequest<'a> {
    pub store: &'a Store,
    /// The Dockerfile's bytes and the name diagnostics show.
    pub dockerfile: Vec<u8>,
    pub dockerfile_name: String,
    /// Where the Dockerfile lives (for `<name>.dockerignore`), if on disk.
    pub dockerfile_path: Option<PathBuf>,
    /// The context directory; `None` when only a Dockerfile was given.
    pub context: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Stage names whose steps ignore the cache (`--no-cache-filter`); names that no
    /// stage has are ignored, as BuildKit does.
    pub no_cache_filter: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub network: Option<Network>,
    pub secrets: BTreeMap<String, Secret>,
    pub jobs: usize,
    pub source_date_epoch: Option<i64>,
    pub progress: &'a dyn Progress,
    /// Where base images come from ([`StoreResolver`]: the store only).
    pub resolver: &'a dyn ImageResolver,
    /// Shared caches to consult when the local cache misses (`--cache-from`).
    pub imported_caches: &'a [ImportedCache],
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", .0.message)]
    Dockerfile(Diagnostic),
    #[error("{0}")]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Solve(#[from] SolveError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// What a build made.
#[derive(Debug)]
pub struct BuildOutcome {
    pub image: Exported,
    pub plan: Plan,
    /// Each solved vertex's filesystem, by vertex.
    pub results: Vec<Option<Chain>>,
    /// Each solved vertex's cache key, by vertex (what `--cache-to` exports).
    pub cache_keys: Vec<Option<Digest>>,
}

impl BuildOutcome {
    /// The records `--cache-to` exports in `mode`.
    pub fn cache_records(&self, mode: CacheMode) -> CacheRecords {
        CacheRecords::of_build(&self.plan, &self.results, &self.cache_keys, mode)
    }
}

/// Base images come from the store (pulling is not there yet).
pub struct StoreResolver<'a>(pub &'a Store);

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
        let resolved = self.0.resolve(reference).map_err(|e| match e {
            forge_store::StoreError::NoSuchImage(_) => format!(
                "failed to resolve source metadata for {reference}: image not found in the store (import or load it first)"
            ),
            other => other.to_string(),
        })?;
        let image = resolved.image;
        let manifest =
            forge_oci::image::descriptor_digest(&image.manifest).map_err(|e| e.to_string())?;
        let name = Reference::parse(reference)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| reference.to_string());
        Ok(ResolvedImage {
            reference: name,
            manifest,
            config: image.config,
        })
    }
}

pub fn build(req: BuildRequest<'_>) -> Result<BuildOutcome, BuildError> {
    // Garbage collection waits while a build holds the store.
    let _lease = req
        .store
        .lease()
        .map_err(|e| BuildError::Export(ExportError::Store(e)))?;
    let dockerfile =
        forge_dockerfile::parse_dockerfile(&req.dockerfile).map_err(BuildError::Dockerfile)?;
    let context = match &req.context {
        Some(dir) => Some(BuildContext::open(dir, req.dockerfile_path.as_deref())?),
        None => None,
    };
    let plan = lower::lower(
        &dockerfile,
        &LowerOptions {
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            network: req.network,
            labels: req.labels.clone(),
        },
        req.resolver,
    )?;
    let stat_cache = Mutex::new(StatCache::load(
        &req.store
            .dir(forge_store::StoreDir::StatCache)
            .join("stat.json"),
    ));
    let target = plan.target();
    let sandbox_state = req.store.root().join("sandbox");
    // A forge killed mid-RUN cannot remove its sandbox's cgroups, lock and
    // scratch files; the sandbox crate leaves that to the next run
    // (`cleanup_stale` skips sandboxes still running, so concurrent builds
    // are safe). Best effort: leftovers never fail a build.
    let _ = forge_sandbox::cleanup_stale(&sandbox_state);
    let results = solve::solve(
        &plan,
        &[target.root],
        &SolveOptions {
            store: req.store,
            context: context.as_ref(),
            stat_cache: &stat_cache,
            no_cache: req.no_cache,
            imported_caches: req.imported_caches,
            no_cache_stages: plan
                .stages
                .iter()
                .flatten()
                .filter(|s| {
                    s.name.as_ref().is_some_and(|n| {
                        req.no_cache_filter
                            .iter()
                            .any(|f| f.eq_ignore_ascii_case(n))
                    })
                })
                .map(|s| s.index)
                .collect(),
            secrets: &req.secrets,
            jobs: req.jobs,
            source_date_epoch: req.source_date_epoch,
            progress: req.progress,
            downloads: &crate::ops::Downloads::default(),
            sandbox_state,
        },
    );
    // The stat cache is worth keeping even when a step failed.
    if let Ok(mut c) = stat_cache.lock() {
        let _ = c.save();
    }
    let (results, cache_keys): (Vec<_>, Vec<_>) = results?
        .into_iter()
        .map(|r| match r {
            Some((chain, key)) => (Some(chain), Some(key)),
            None => (None, None),
        })
        .unzip();
    req.progress.event(Event::Info("exporting to image".into()));
    let image = export::export(
        req.store,
        &plan,
        target,
        &results,
        &req.tags,
        req.source_date_epoch,
    )?;
    Ok(BuildOutcome {
        image,
        plan,
        results,
        cache_keys,
    })
}
