//! The solver: runs the vertices a build needs, in parallel where the graph
//! allows, each one either taken from the cache or executed.
//!
//! A vertex's result is a [`Chain`]: the committed snapshots (one per layer)
//! of the filesystem it produced. Its cache key is a digest over the vertex's
//! own digest (op and inputs), its inputs' cache keys, and the content digest
//! of whatever it reads from the build context, so a key changes exactly when
//! the step's result could. Keys map to chains in the store's `cache/`,
//! written atomically; an entry whose snapshots or blobs are gone is a miss,
//! never an error. A failing step leaves the cache of the steps before it.

use crate::cache::{self, ImportedCache};
use crate::context::{BuildContext, StatCache};
use crate::deferred::DeferredBlobs;
use crate::graph::{ExecMount, Network, Op, Source, Vertex, VertexId};
use crate::lower::Plan;
use crate::ops::copy::{self, CopyRequest, CopySource};
use crate::ops::reuse::Previous;
use crate::progress::{Event, Progress};
use forge_oci::layer::SourceKind;
use forge_oci::{Algorithm, Compression, Digest, Hasher};
use forge_sandbox::{MountSpec, ProcessSpec, RootFs, RootFsView, SandboxSpec, Stdio};
use forge_store::active::{ActiveSnapshot, CommitOptions};
use forge_store::{Store, StoreDir};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// One layer of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub blob: Digest,
    pub size: u64,
    pub media_type: String,
    /// The blob is still being written ([`crate::deferred`]): `blob` and `size` are not
    /// known yet. Never stored: records are written once their layers are final.
    #[serde(skip)]
    pub pending: bool,
}

impl Layer {
    /// A layer whose blob is still to be written.
    pub(crate) fn pending(chain_id: Digest, diff_id: Digest, media_type: &str) -> Layer {
        Layer {
            chain_id,
            blob: diff_id.clone(),
            diff_id,
            size: 0,
            media_type: media_type.to_owned(),
            pending: true,
        }
    }
}

/// The filesystem a vertex produced: its layers, base first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub layers: Vec<Layer>,
}

impl Chain {
    /// The chain id of the top snapshot (`None`: empty filesystem).
    pub fn top(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

/// A secret given with `--secret`: never in a layer, the config, the history
/// or a cache key.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub struct SolveOptions<'a> {
    pub store: &'a Store,
    pub context: Option<&'a BuildContext>,
    pub stat_cache: &'a Mutex<StatCache>,
    pub no_cache: bool,
    /// Shared caches consulted when the local cache misses (`--cache-from`).
    pub imported_caches: &'a [ImportedCache],
    /// Stages (by index) whose steps ignore the cache (`--no-cache-filter`).
    pub no_cache_stages: BTreeSet<usize>,
    pub secrets: &'a BTreeMap<String, Secret>,
    /// Steps run at once (at least 1).
    pub jobs: usize,
    pub source_date_epoch: Option<i64>,
    pub progress: &'a dyn Progress,
    /// What the build downloaded (ADD URLs), fetched once for key and copy.
    pub downloads: &'a crate::ops::Downloads,
    /// Where the sandbox keeps its lock files.
    pub sandbox_state: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    RunFailed {
        vertex: VertexId,
        name: String,
        line: Option<u32>,
        command: String,
        code: i32,
        /// The last lines of its output.
        tail: Vec<String>,
    },
    #[error("{name}: {message}")]
    Step {
        vertex: VertexId,
        name: String,
        line: Option<u32>,
        message: String,
    },
}

impl SolveError {
    pub fn line(&self) -> Option<u32> {
        match self {
            SolveError::RunFailed { line, .. } | SolveError::Step { line, .. } => *line,
        }
    }
}

/// Output lines kept for an error message.
const TAIL: usize = 20;

/// Solves `roots` and what they need; returns each needed vertex's chain and cache key.
pub fn solve(
    plan: &Plan,
    roots: &[VertexId],
    opts: &SolveOptions<'_>,
) -> Result<Vec<Option<(Chain, Digest)>>, SolveError> {
    let graph = &plan.graph;
    let needed = graph.needed(roots);
    struct State {
        results: Vec<Option<Solved>>,
        started: Vec<bool>,
        failed: Option<SolveError>,
        running: usize,
    }
    let state = Mutex::new(State {
        results: vec![None; graph.vertices.len()],
        started: vec![false; graph.vertices.len()],
        failed: None,
        running: 0,
    });
    let wake = Condvar::new();
    let queue: VecDeque<VertexId> = needed.iter().copied().collect();
    let jobs = opts.jobs.max(1).min(needed.len().max(1));
    let blobs = DeferredBlobs::new();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| blobs.run(opts.store));
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| loop {
                    let mut st = state.lock().expect("solver state lock");
                    let next = loop {
                        if st.failed.is_some() {
                            return;
                        }
                        let ready = queue.iter().copied().find(|&v| {
                            !st.started[v]
                                && graph.vertices[v]
                                    .inputs
                                    .iter()
                                    .all(|&i| st.results[i].is_some())
                        });
                        if let Some(v) = ready {
                            break v;
                        }
                        if queue.iter().all(|&v| st.started[v]) && st.running == 0 {
                            return;
                        }
                        st = wake.wait(st).expect("solver state lock");
                    };
                    st.started[next] = true;
                    st.running += 1;
                    let inputs: Vec<Solved> = graph.vertices[next]
                        .inputs
                        .iter()
                        .map(|&i| st.results[i].clone().expect("inputs are solved"))
                        .collect();
                    drop(st);
                    let outcome = solve_one(plan, next, &inputs, opts, &blobs);
                    let mut st = state.lock().expect("solver state lock");
                    st.running -= 1;
                    match outcome {
                        Ok(r) => st.results[next] = Some(r),
                        Err(e) => {
                            if st.failed.is_none() {
                                st.failed = Some(e);
                            }
                        }
                    }
                    wake.notify_all();
                })
            })
            .collect();
        // Every step is done (or the solve failed): the writer finishes the blobs and
        // records queued so far, failed or not, so the cache keeps the steps that ran.
        let panics: Vec<_> = workers.into_iter().filter_map(|w| w.join().err()).collect();
        blobs.close();
        let writer = writer.join();
        if let Some(p) = panics.into_iter().next() {
            std::panic::resume_unwind(p);
        }
        if let Err(p) = writer {
            std::panic::resume_unwind(p);
        }
    });
    let st = state.into_inner().expect("solver state lock");
    if let Some(e) = st.failed {
        return Err(e);
    }
    if let Some(message) = blobs.failure() {
        return Err(SolveError::Step {
            vertex: roots.first().copied().unwrap_or_default(),
            name: "exporting layers".into(),
            line: None,
            message,
        });
    }
    let mut out = Vec::with_capacity(st.results.len());
    for (vertex, r) in st.results.into_iter().enumerate() {
        out.push(match r {
            Some(s) => Some((
                blobs
                    .resolve(&s.chain)
                    .map_err(|m| step_error(&graph.vertices[vertex], vertex, m))?,
                s.key,
            )),
            None => None,
        });
    }
    Ok(out)
}

fn step_error(v: &Vertex, vertex: VertexId, message: impl std::fmt::Display) -> SolveError {
    SolveError::Step {
        vertex,
        name: v.name.clone(),
        line: v.line,
        message: message.to_string(),
    }
}

/// A solved vertex: its filesystem, its cache key, and whether it ran in this build
/// (rather than coming from the cache).
#[derive(Clone)]
struct Solved {
    chain: Chain,
    key: Digest,
    ran: bool,
}

/// Cache key, then cache lookup, then execution.
///
/// A step whose input ran in this build runs too, whatever the cache holds: a cached
/// result was made from the input's earlier output, which this build replaced
/// (`--no-cache-filter` and a lost cache entry both come down to this).
fn solve_one(
    plan: &Plan,
    id: VertexId,
    inputs: &[Solved],
    opts: &SolveOptions<'_>,
    blobs: &DeferredBlobs,
) -> Result<Solved, SolveError> {
    let v = &plan.graph.vertices[id];
    let err = |m: &dyn std::fmt::Display| step_error(v, id, m);
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(b"forge-cache-v1\0");
    h.update(v.digest.as_str().as_bytes());
    for input in inputs {
        h.update(b"\0input\0");
        h.update(input.key.as_str().as_bytes());
    }
    for d in context_reads(v, opts).map_err(|e| err(&e))? {
        h.update(b"\0context\0");
        h.update(d.as_str().as_bytes());
    }
    let key = h.finish();
    let started = Instant::now();
    let cacheable = !matches!(v.op, Op::Image { .. } | Op::Scratch);
    let use_cache =
        !opts.no_cache && !opts.no_cache_stages.contains(&v.stage) && !inputs.iter().any(|i| i.ran);
    if cacheable && use_cache {
        let hit = cache::get(opts.store, &key).or_else(|| {
            opts.imported_caches
                .iter()
                .find_map(|c| c.restore(opts.store, &key))
        });
        if let Some(chain) = hit {
            opts.progress.event(Event::Cached {
                vertex: id,
                name: v.name.clone(),
            });
            return Ok(Solved {
                chain,
                key,
                ran: false,
            });
        }
    }
    if cacheable {
        opts.progress.event(Event::Started {
            vertex: id,
            name: v.name.clone(),
        });
    }
    let chains: Vec<&Chain> = inputs.iter().map(|i| &i.chain).collect();
    let result = execute(plan, id, &chains, opts, blobs);
    match result {
        Ok(chain) => {
            if cacheable {
                blobs.queue_record(key.clone(), chain.clone());
                opts.progress.event(Event::Done {
                    vertex: id,
                    name: v.name.clone(),
                    elapsed: started.elapsed(),
                });
            }
            Ok(Solved {
                chain,
                key,
                ran: cacheable,
            })
        }
        Err(e) => {
            opts.progress.event(Event::Failed {
                vertex: id,
                name: v.name.clone(),
                elapsed: started.elapsed(),
                message: e.to_string(),
            });
            Err(e)
        }
    }
}

/// Content digests of what the vertex reads from the build context.
fn context_reads(v: &Vertex, opts: &SolveOptions<'_>) -> Result<Vec<Digest>, String> {
    let mut out = Vec::new();
    let digest_of = |c: &crate::graph::Copy| -> Result<Digest, String> {
        let ctx = opts
            .context
            .ok_or_else(|| "this step reads the build context, but there is none".to_string())?;
        let mut cache = opts.stat_cache.lock().map_err(|e| e.to_string())?;
        copy::source_digest(c, ctx, &mut cache, Some(opts.downloads)).map_err(|e| e.to_string())
    };
    match &v.op {
        Op::Copy(c) if c.from == Source::Context => out.push(digest_of(c)?),
        Op::Exec(e) => {
            for m in &e.mounts {
                if let ExecMount::Bind {
                    from: Source::Context,
                    source,
                    ..
                } = m
                {
                    if source.starts_with("inline:") {
                        continue;
                    }
                    out.push(digest_of(&crate::graph::Copy {
                        from: Source::Context,
                        sources: vec![source.clone()],
                        inline: Vec::new(),
                        dest: "/".into(),
                        chown: None,
                        chmod: None,
                        link: false,
                        exclude: Vec::new(),
                        parents: false,
                        add: None,
                    })?);
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// A read-only view of a chain's filesystem, as a path. Holding it keeps
/// the detached mount alive.
struct View {
    _mount: Option<RootFsView>,
    path: Option<PathBuf>,
}

impl View {
    fn open(store: &Store, chain: &Chain) -> Result<View, String> {
        let lowerdirs = store.view(chain.top()).map_err(|e| e.to_string())?;
        match lowerdirs.as_slice() {
            [] => Ok(View {
                _mount: None,
                path: None,
            }),
            [single] => Ok(View {
                _mount: None,
                path: Some(single.clone()),
            }),
            _ => {
                let mount = RootFsView::open(&RootFs::Overlay {
                    lowerdirs,
                    upperdir: None,
                    workdir: None,
                })
                .map_err(|e| e.to_string())?;
                // The detached mount is reachable through its descriptor.
                let path = mount.path();
                Ok(View {
                    _mount: Some(mount),
                    path: Some(path),
                })
            }
        }
    }

    fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

fn commit(
    store: &Store,
    blobs: &DeferredBlobs,
    active: ActiveSnapshot,
    parent: &Chain,
    source: SourceKind,
    sde: Option<i64>,
    step: &str,
) -> Result<Chain, String> {
    let opts = CommitOptions {
        source,
        compression: Compression::Gzip,
        level: None,
        source_date_epoch: sde,
    };
    let committed = store
        .commit_diff(active, &opts)
        .map_err(|e| e.to_string())?;
    let mut chain = parent.clone();
    let layer = match committed {
        Some(diff) => blobs.queue_blob(diff, opts, step)?,
        // BuildKit exports a layer for every RUN, COPY, ADD and WORKDIR step, an empty
        // tar when the step changed nothing, and its history says so (`empty_layer`
        // false): the image's layer list must match step for step.
        None => empty_layer(store, parent, sde)?,
    };
    chain.layers.push(layer);
    Ok(chain)
}

/// The layer of a step that changed nothing: a tar with no entries on top of `parent`.
fn empty_layer(store: &Store, parent: &Chain, sde: Option<i64>) -> Result<Layer, String> {
    let empty = tempdir_in(store)?;
    let blob = store
        .write_layer_blob(
            empty.path(),
            SourceKind::Directory,
            Compression::Gzip,
            None,
            sde,
        )
        .map_err(|e| e.to_string())?;
    let chain_id = store
        .snapshot_layer(parent.top(), &blob.digest, &blob.diff_id)
        .map_err(|e| e.to_string())?;
    Ok(Layer {
        chain_id,
        diff_id: blob.diff_id,
        blob: blob.digest,
        size: blob.size,
        media_type: Compression::Gzip.oci_media_type().to_owned(),
        pending: false,
    })
}

fn execute(
    plan: &Plan,
    id: VertexId,
    inputs: &[&Chain],
    opts: &SolveOptions<'_>,
    blobs: &DeferredBlobs,
) -> Result<Chain, SolveError> {
    let v = &plan.graph.vertices[id];
    let err = |m: String| step_error(v, id, m);
    let store = opts.store;
    match &v.op {
        Op::Scratch => Ok(Chain::default()),
        Op::Image {
            reference,
            manifest,
        } => image_chain(store, reference, manifest).map_err(err),
        Op::Merge => {
            let base = inputs.first().copied().cloned().unwrap_or_default();
            // Rebasing unpacks the top's blobs where the snapshot is missing.
            let top = match inputs.get(1) {
                Some(top) => blobs.resolve(top).map_err(err)?,
                None => Chain::default(),
            };
            let mut chain = base;
            for l in top.layers {
                let chain_id = store
                    .snapshot_layer(chain.top(), &l.blob, &l.diff_id)
                    .map_err(|e| err(e.to_string()))?;
                chain.layers.push(Layer { chain_id, ..l });
            }
            Ok(chain)
        }
        Op::Mkdir { path, user } => {
            let parent = inputs.first().copied().cloned().unwrap_or_default();
            let view = View::open(store, &parent).map_err(err)?;
            let active = store
                .prepare(parent.top())
                .map_err(|e| err(e.to_string()))?;
            crate::ops::workdir::make_workdir(view.path(), &active.upper(), path, user)
                .map_err(err)?;
            commit(
                store,
                blobs,
                active,
                &parent,
                SourceKind::Directory,
                opts.source_date_epoch,
                &v.name,
            )
            .map_err(err)
        }
        Op::Copy(c) => {
            let (dest, source_chain) = if c.link {
                (Chain::default(), inputs.first().copied())
            } else {
                (inputs[0].clone(), inputs.get(1).copied())
            };
            let dest_view = View::open(store, &dest).map_err(err)?;
            let source_view = match (&c.from, source_chain) {
                (Source::Vertex(_), Some(chain)) => Some(View::open(store, chain).map_err(err)?),
                _ => None,
            };
            let empty = tempdir_in(store).map_err(err)?;
            let source =
                match (&c.from, &source_view) {
                    (Source::Context, _) => CopySource::Context(opts.context.ok_or_else(|| {
                        err("COPY from the build context, but there is none".into())
                    })?),
                    (Source::Vertex(_), Some(view)) => {
                        CopySource::Tree(view.path().unwrap_or(empty.path()))
                    }
                    (Source::Vertex(_), None) => CopySource::Tree(empty.path()),
                };
            let active = store.prepare(dest.top()).map_err(|e| err(e.to_string()))?;
            let upper = active.upper();
            // The last run of this step (same definition and inputs, other context
            // content) lends its unchanged files: see ops::reuse.
            let previous = Previous::load(store, &v.digest);
            let outcome = copy::copy_reusing(
                &CopyRequest {
                    op: c,
                    source,
                    dest_view: dest_view.path(),
                    users_view: None,
                    diff_dir: &upper,
                    downloads: Some(opts.downloads),
                },
                previous.as_ref(),
            )
            .map_err(|e| {
                err(format!(
                    "{} failed: {e}",
                    if c.add.is_some() { "ADD" } else { "COPY" }
                ))
            })?;
            drop(source_view);
            let chain = commit(
                store,
                blobs,
                active,
                &dest,
                SourceKind::Directory,
                opts.source_date_epoch,
                &v.name,
            )
            .map_err(err)?;
            if let Some(layer) = chain.layers.last() {
                // Without the record the next run only copies everything again.
                let _ = Previous::save(store, &v.digest, &layer.chain_id, &outcome.stamps);
            }
            Ok(chain)
        }
        Op::Exec(e) => run_exec(v, id, e, inputs, opts, blobs),
    }
}

fn tempdir_in(store: &Store) -> Result<TempDir, String> {
    let path = store.tmp_path("empty");
    std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(TempDir(path))
}

/// A directory under the store's tmp/, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The chain of an image in the store, unpacked.
fn image_chain(store: &Store, reference: &str, manifest: &Digest) -> Result<Chain, String> {
    let list = store.images().map_err(|e| e.to_string())?;
    let image = list
        .images
        .into_iter()
        .find(|i| {
            forge_oci::image::descriptor_digest(&i.manifest)
                .ok()
                .as_ref()
                == Some(manifest)
        })
        .ok_or_else(|| format!("image {reference} ({manifest}) is no longer in the store"))?;
    let chain_ids = store.unpack(&image).map_err(|e| e.to_string())?;
    let mut layers = Vec::new();
    for ((desc, diff_id), chain_id) in image
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
        .zip(chain_ids)
    {
        layers.push(Layer {
            chain_id,
            diff_id: diff_id.clone(),
            blob: forge_oci::image::descriptor_digest(desc).map_err(|e| e.to_string())?,
            size: desc.size(),
            media_type: forge_oci::image::media_type_str(desc),
            pending: false,
        });
    }
    Ok(Chain { layers })
}

fn run_exec(
    v: &Vertex,
    id: VertexId,
    e: &crate::graph::Exec,
    inputs: &[&Chain],
    opts: &SolveOptions<'_>,
    blobs: &DeferredBlobs,
) -> Result<Chain, SolveError> {
    let err = |m: String| step_error(v, id, m);
    let parent = inputs[0];
    // A mount's `from=` vertex is one of the step's inputs (lower adds them in order).
    let input_chain = |source: VertexId| {
        v.inputs
            .iter()
            .position(|&i| i == source)
            .and_then(|pos| inputs.get(pos).copied())
    };
    let store = opts.store;
    let active = store
        .prepare(parent.top())
        .map_err(|e| err(e.to_string()))?;
    let lowerdirs = active.lowerdirs().to_vec();
    // Users resolve in the step's root filesystem.
    let (uid, gid, groups, home) = {
        let view = View::open(store, parent).map_err(err)?;
        let spec = if e.user.is_empty() {
            "0"
        } else {
            e.user.as_str()
        };
        match view.path() {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|x| err(x.to_string()))?;
                let u = forge_sandbox::users::resolve_user_in(std::os::fd::AsFd::as_fd(&f), spec)
                    .map_err(|x| err(format!("unable to find user {spec}: {x}")))?;
                (u.uid, u.gid, u.additional_gids, u.home)
            }
            None => (0, 0, Vec::new(), PathBuf::from("/")),
        }
    };
    let scratch = tempdir_in(store).map_err(err)?;
    let mut mounts = Vec::new();
    let mut env = e.env.clone();
    // As runc does for BuildKit: HOME from the user's passwd entry unless the
    // step's environment sets it.
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        env.push(format!("HOME={}", home.display()));
    }
    let mut held_locks = Vec::new();
    for (i, m) in e.mounts.iter().enumerate() {
        match m {
            ExecMount::Tmpfs { target, size } => mounts.push(MountSpec::Tmpfs {
                target: target.into(),
                size: *size,
                mode: 0o1777,
            }),
            ExecMount::Cache {
                target,
                id: cache_id,
                sharing,
                readonly,
                uid,
                gid,
                mode,
                ..
            } => {
                let name = Digest::sha256_of(cache_id.as_bytes());
                let mounts_dir = store.dir(StoreDir::Cache).join("mounts");
                std::fs::create_dir_all(&mounts_dir).map_err(|x| err(x.to_string()))?;
                let lock_of = |instance: &str| mounts_dir.join(format!("{instance}.lock"));
                let instance = match sharing.as_str() {
                    // BuildKit's sharing modes: `shared` lets steps use the cache
                    // at once; `locked` makes them take turns; `private` gives a
                    // step that finds the cache in use another instance of it
                    // (kept, and reused by later steps that find it free).
                    "private" => {
                        let mut n = 0usize;
                        loop {
                            let instance = match n {
                                0 => name.hex().to_string(),
                                n => format!("{}-{n}", name.hex()),
                            };
                            let lock = forge_store::lock::try_lock(
                                &lock_of(&instance),
                                forge_store::lock::LockMode::Exclusive,
                            )
                            .map_err(|x| err(x.to_string()))?;
                            if let Some(lock) = lock {
                                held_locks.push(lock);
                                break instance;
                            }
                            n += 1;
                        }
                    }
                    "locked" => {
                        let instance = name.hex().to_string();
                        held_locks.push(
                            forge_store::lock::lock(
                                &lock_of(&instance),
                                forge_store::lock::LockMode::Exclusive,
                            )
                            .map_err(|x| err(x.to_string()))?,
                        );
                        instance
                    }
                    _ => name.hex().to_string(),
                };
                let dir = mounts_dir.join(&instance);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|x| err(x.to_string()))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))
                        .map_err(|x| err(x.to_string()))?;
                    std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid))
                        .map_err(|x| err(x.to_string()))?;
                }
                mounts.push(MountSpec::Bind {
                    source: dir,
                    target: target.into(),
                    readonly: *readonly,
                });
            }
            ExecMount::Bind {
                target,
                from,
                source,
                readonly,
            } => {
                if let Some(content) = source.strip_prefix("inline:") {
                    let file = scratch.path().join(format!("inline-{i}"));
                    std::fs::write(&file, content).map_err(|x| err(x.to_string()))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                        .map_err(|x| err(x.to_string()))?;
                    mounts.push(MountSpec::Bind {
                        source: file,
                        target: target.into(),
                        readonly: true,
                    });
                    continue;
                }
                // The mount shows the context as BuildKit transfers it: only what
                // `.dockerignore` lets through, symlinks never followed out of it.
                // Binding the host directory itself would expose ignored files (and
                // let writes of an `rw` bind reach the user's tree), so the selected
                // sources are staged with the COPY engine into a private directory,
                // the same selection the step's cache key digests. A stage's or an
                // image's tree is staged the same way (owners kept), so writes to an
                // `rw` mount never reach its snapshots.
                let empty = tempdir_in(store).map_err(err)?;
                let view;
                let source_tree = match from {
                    Source::Context => CopySource::Context(opts.context.ok_or_else(|| {
                        err("RUN --mount from the build context, but there is none".into())
                    })?),
                    Source::Vertex(vertex) => {
                        let chain = input_chain(*vertex).ok_or_else(|| {
                            err(format!(
                                "RUN --mount from={vertex}: not an input of the step"
                            ))
                        })?;
                        view = View::open(store, chain).map_err(err)?;
                        CopySource::Tree(view.path().unwrap_or(empty.path()))
                    }
                };
                let stage_dir = scratch.path().join(format!("bind-{i}"));
                std::fs::create_dir_all(&stage_dir).map_err(|x| err(x.to_string()))?;
                let select = crate::graph::Copy {
                    from: from.clone(),
                    sources: vec![source.clone()],
                    inline: Vec::new(),
                    dest: "/mnt".into(),
                    chown: None,
                    chmod: None,
                    link: false,
                    exclude: Vec::new(),
                    parents: false,
                    add: None,
                };
                copy::copy(&CopyRequest {
                    op: &select,
                    source: source_tree,
                    dest_view: None,
                    users_view: None,
                    diff_dir: &stage_dir,
                    downloads: Some(opts.downloads),
                })
                .map_err(|x| err(format!("RUN --mount=type=bind,source={source}: {x}")))?;
                let source_path = stage_dir.join("mnt");
                mounts.push(MountSpec::Bind {
                    source: source_path,
                    target: target.into(),
                    readonly: *readonly,
                });
            }
            ExecMount::Secret {
                id: secret_id,
                target,
                env: env_name,
                required,
                uid,
                gid,
                mode,
            } => {
                let Some(secret) = opts.secrets.get(secret_id) else {
                    if *required {
                        return Err(err(format!("secret {secret_id} not found")));
                    }
                    continue;
                };
                if let Some(name) = env_name {
                    env.push(format!("{name}={}", String::from_utf8_lossy(&secret.0)));
                }
                if let Some(target) = target {
                    let file = scratch.path().join(format!("secret-{i}"));
                    std::fs::write(&file, &secret.0).map_err(|x| err(x.to_string()))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                        .map_err(|x| err(x.to_string()))?;
                    std::os::unix::fs::chown(&file, Some(*uid), Some(*gid))
                        .map_err(|x| err(x.to_string()))?;
                    mounts.push(MountSpec::Bind {
                        source: file,
                        target: target.into(),
                        readonly: true,
                    });
                }
            }
        }
    }
    let (reader, writer) = nix::unistd::pipe().map_err(|x| err(x.to_string()))?;
    let writer = Arc::new(writer);
    let mut process = ProcessSpec::new(e.args.clone());
    // BuildKit's RUN leaves no_new_privs off: `sudo` and other setuid programs
    // work in a step as they do in docker.
    process.no_new_privileges = false;
    process.env = env;
    process.cwd = PathBuf::from(&e.cwd);
    process.uid = uid;
    process.gid = gid;
    process.additional_gids = groups;
    process.stdin = Stdio::Null;
    process.stdout = Stdio::Fd(writer.clone());
    process.stderr = Stdio::Fd(writer);
    let mut spec = SandboxSpec::new(
        RootFs::Overlay {
            lowerdirs,
            upperdir: Some(active.upper()),
            workdir: Some(active.work()),
        },
        process,
    );
    spec.hostname = "buildkitsandbox".into();
    // A step has no limits: its pid namespace holds its processes, and the cgroup
    // attach would cost each RUN a kernel grace period.
    spec.use_cgroup = false;
    // The commit syncs the upper dir; a step cut short is discarded.
    spec.volatile_upper = true;
    spec.network = match e.network {
        Network::None => forge_sandbox::Network::None,
        Network::Host | Network::Default => forge_sandbox::Network::Host,
    };
    spec.mounts = mounts;
    spec.state_dir = opts.sandbox_state.clone();
    if e.insecure {
        spec.capabilities = Some(forge_sandbox::CapSet::all());
    }
    let tail = Mutex::new(VecDeque::with_capacity(TAIL));
    let status = std::thread::scope(|s| -> Result<forge_sandbox::ExitStatus, String> {
        let sandbox = forge_sandbox::Sandbox::spawn(&spec);
        // The spec holds the pipe's write end; drop it so EOF comes when the
        // process (and all it started) is gone.
        drop(spec);
        let sandbox = sandbox.map_err(|x| x.to_string())?;
        let reader_thread = s.spawn(|| {
            let r = BufReader::new(std::fs::File::from(reader));
            for line in r.split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                opts.progress.event(Event::Output {
                    vertex: id,
                    line: line.clone(),
                });
                let mut t = tail.lock().expect("tail lock");
                if t.len() == TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let status = sandbox.wait().map_err(|x| x.to_string());
        let _ = reader_thread.join();
        status
    })
    .map_err(err)?;
    drop(held_locks);
    match status.code() {
        0 => commit(
            store,
            blobs,
            active,
            parent,
            SourceKind::OverlayUpper,
            opts.source_date_epoch,
            &v.name,
        )
        .map_err(err),
        code => Err(SolveError::RunFailed {
            vertex: id,
            name: v.name.clone(),
            line: v.line,
            command: e.args.join(" "),
            code,
            tail: tail.into_inner().expect("tail lock").into(),
        }),
    }
}
