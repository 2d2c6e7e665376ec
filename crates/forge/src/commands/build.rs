//! `forge build`: docker/buildx's flags; progress as BuildKit prints it.

use super::human::{fail, open_store, source_date_epoch};
use super::progress::BuildProgress;
use super::pull::LayerDisplay;
use super::pull_resolver::PullingResolver;
use super::Source;
use anyhow::Context as _;
use forge_build::build::{build, BuildError, BuildRequest};
use forge_build::cache::{self, CacheMode, ImportedCache};
use forge_build::context_stream::{read_stdin_context, ExtractedContext, StdinContext};
use forge_build::graph::Network;
use forge_build::solve::{Secret, SolveError};
use forge_oci::Reference;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Name and optionally a tag (`name:tag`); may be repeated
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` for standard input)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set a build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// The stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    no_cache: bool,
    /// Always look up base images in their registry (a tag may have moved)
    #[arg(long)]
    pull: bool,
    /// Push the image to its registry under every -t name (as --output=type=registry)
    #[arg(long)]
    push: bool,
    /// Target platform (`os/arch[/variant]`; the host's only: forge does not emulate)
    #[arg(long, value_delimiter = ',')]
    platform: Vec<String>,
    /// Do not use the cache for these stages (by name; may be repeated or comma-separated)
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    no_cache_filter: Vec<String>,
    /// Set metadata for the image (`KEY=VALUE`)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Network for RUN instructions: default, none or host
    #[arg(long)]
    network: Option<String>,
    /// A secret for RUN --mount=type=secret: `id=ID[,src=PATH|,env=VAR]`
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Progress output: auto, tty, plain or quiet
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Print only the image id
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image id to this file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Steps run at once (default: the number of cores)
    #[arg(long)]
    jobs: Option<usize>,
    /// Also write the result: `type=oci|docker|tar|local,dest=PATH` (a bare path:
    /// local; `-` or `dest=-`: a tar or archive on stdout), or push it: `type=registry,name=NAME[,NAME…]` (also `type=image,push=true`)
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Export the build cache: `type=local,dest=DIR` or `type=registry,ref=NAME`
    /// (a bare NAME: registry), with `mode=min` (default: the final stage's steps) or
    /// `mode=max` (every step)
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Use an exported build cache: `type=local,src=DIR` or `type=registry,ref=NAME`
    /// (a bare NAME: registry)
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Write build result metadata (JSON, as buildx does) to this file
    #[arg(long)]
    metadata_file: Option<PathBuf>,
    /// The build context: a directory, or `-` for a tar archive (or a lone Dockerfile)
    /// on standard input
    context: PathBuf,
}

/// Where a build cache goes or comes from (buildx's `--cache-to` / `--cache-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CacheSpec {
    Local { dir: PathBuf, mode: CacheMode },
    Registry { reference: String, mode: CacheMode },
}

impl CacheSpec {
    /// `to`: an export (`dest=`), else an import (`src=`).
    fn parse(spec: &str, to: bool) -> Result<CacheSpec, String> {
        if !spec.contains('=') {
            return Ok(CacheSpec::Registry {
                reference: spec.to_string(),
                mode: CacheMode::Min,
            });
        }
        let mut kind = None;
        let mut fields = BTreeMap::new();
        for field in spec.split(',') {
            match key_value(field) {
                (k, Some(v)) if k == "type" => kind = Some(v),
                (k, Some(v)) => {
                    fields.insert(k, v);
                }
                (k, None) => return Err(format!("invalid cache field \"{k}\" in \"{spec}\"")),
            }
        }
        let mode = match fields.get("mode").map(String::as_str) {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(other) => return Err(format!("invalid cache mode \"{other}\" (min or max)")),
        };
        let field = |name: &str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("cache \"{spec}\" needs {name}="))
        };
        match kind.as_deref() {
            Some("local") => Ok(CacheSpec::Local {
                dir: PathBuf::from(field(if to { "dest" } else { "src" })?),
                mode,
            }),
            Some("registry") => Ok(CacheSpec::Registry {
                reference: field("ref")?,
                mode,
            }),
            Some(other) => Err(format!(
                "cache type \"{other}\" not supported by forge (local, registry)"
            )),
            None => Err(format!("cache \"{spec}\" needs type=")),
        }
    }
}

/// The Dockerfile and the context a build reads, from the command line's paths or
/// standard input.
struct BuildInput {
    source: Source,
    /// The Dockerfile on disk (for `<Dockerfile>.dockerignore`), if it is one.
    dockerfile_path: Option<PathBuf>,
    context: Option<PathBuf>,
    /// Keeps a context extracted from standard input until the build is done.
    _extracted: Option<ExtractedContext>,
}

impl BuildInput {
    /// docker's rules: `-` as the context reads an archive (the Dockerfile inside it,
    /// at `-f`'s path, default `Dockerfile`) or, if standard input is no archive, a
    /// Dockerfile with no context; `-f -` reads the Dockerfile from standard input.
    fn read(store: &forge_store::Store, args: &Args) -> anyhow::Result<BuildInput> {
        let stdin_dockerfile = args.file.as_deref() == Some(std::path::Path::new("-"));
        if args.context.as_os_str() != "-" {
            let path = args
                .file
                .clone()
                .unwrap_or_else(|| args.context.join("Dockerfile"));
            return Ok(BuildInput {
                source: Source::read(&path)?,
                dockerfile_path: (!stdin_dockerfile).then_some(path),
                context: Some(args.context.clone()),
                _extracted: None,
            });
        }
        if stdin_dockerfile {
            anyhow::bail!(
                "invalid argument: can't use stdin for both build context and dockerfile"
            );
        }
        match read_stdin_context(store, std::io::stdin().lock())? {
            StdinContext::Dockerfile(bytes) => Ok(BuildInput {
                source: Source {
                    name: "Dockerfile".into(),
                    bytes,
                },
                dockerfile_path: None,
                context: None,
                _extracted: None,
            }),
            StdinContext::Archive(extracted) => {
                let name = args.file.clone().unwrap_or_else(|| "Dockerfile".into());
                let inside = name.components().all(|c| {
                    matches!(
                        c,
                        std::path::Component::Normal(_) | std::path::Component::CurDir
                    )
                });
                if !inside {
                    anyhow::bail!(
                        "the Dockerfile ({}) must be a path inside the context archive",
                        name.display()
                    );
                }
                let path = extracted.path().join(&name);
                let bytes = std::fs::read(&path).with_context(|| {
                    format!(
                        "the context archive has no Dockerfile at {}",
                        name.display()
                    )
                })?;
                Ok(BuildInput {
                    source: Source {
                        name: name.display().to_string(),
                        bytes,
                    },
                    dockerfile_path: Some(path),
                    context: Some(extracted.path().to_path_buf()),
                    _extracted: Some(extracted),
                })
            }
        }
    }
}

/// `type=registry,name=…` or `type=image,…,push=true`: the names to push to; `None`
/// for the other output types.
fn registry_output(spec: &str) -> Result<Option<Vec<String>>, String> {
    let mut kind = None;
    let mut names = Vec::new();
    let mut push = false;
    for field in spec.split(',') {
        match key_value(field) {
            (k, Some(v)) if k == "type" => kind = Some(v),
            (k, Some(v)) if k == "name" => names.push(v),
            (k, Some(v)) if k == "push" => push = v == "true",
            _ => {}
        }
    }
    match kind.as_deref() {
        Some("registry") => {}
        Some("image") if push => {}
        Some("image") => {
            return Err(format!(
                "output \"{spec}\": type=image stores the image already; add push=true to push it"
            ))
        }
        _ => return Ok(None),
    }
    if names.is_empty() {
        return Err(format!("output \"{spec}\" needs name="));
    }
    Ok(Some(names))
}

fn import_cache(store: &forge_store::Store, spec: &CacheSpec) -> anyhow::Result<ImportedCache> {
    match spec {
        CacheSpec::Local { dir, .. } => Ok(cache::import_local(dir)?),
        CacheSpec::Registry { reference, .. } => super::registry_cache::import(store, reference),
    }
}

fn export_cache(
    store: &forge_store::Store,
    outcome: &forge_build::build::BuildOutcome,
    spec: &CacheSpec,
) -> anyhow::Result<()> {
    match spec {
        CacheSpec::Local { dir, mode } => Ok(cache::export_local(
            store,
            &outcome.cache_records(*mode),
            dir,
        )?),
        CacheSpec::Registry { reference, mode } => {
            super::registry_cache::export(store, &outcome.cache_records(*mode), reference)
        }
    }
}

fn key_value(s: &str) -> (String, Option<String>) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (s.to_string(), None),
    }
}

fn parse_secret(spec: &str) -> Result<(String, Secret), String> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for field in spec.split(',') {
        match key_value(field) {
            (k, Some(v)) if k == "id" => id = Some(v),
            (k, Some(v)) if k == "src" || k == "source" => src = Some(v),
            (k, Some(v)) if k == "env" => env = Some(v),
            (k, _) => return Err(format!("unexpected key '{k}' in '{spec}'")),
        }
    }
    let id = id
        .or_else(|| src.clone())
        .or_else(|| env.clone())
        .ok_or("secret needs an id")?;
    let bytes = match (src, env) {
        (Some(path), _) => std::fs::read(&path).map_err(|e| format!("secret {id}: {path}: {e}"))?,
        (None, Some(var)) => std::env::var(&var)
            .map_err(|_| format!("secret {id}: environment variable {var} is not set"))?
            .into_bytes(),
        (None, None) => std::env::var(&id)
            .map_err(|_| format!("secret {id}: no src or env, and no variable {id}"))?
            .into_bytes(),
    };
    Ok((id, Secret(bytes)))
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let mut tags = Vec::new();
    for t in &args.tags {
        match Reference::parse(t) {
            Ok(r) => tags.push(r),
            Err(e) => return Ok(fail(format!("invalid tag \"{t}\": {e}"))),
        }
    }
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match key_value(a) {
            (k, Some(v)) => {
                build_args.insert(k, v);
            }
            (k, None) => {
                if let Ok(v) = std::env::var(&k) {
                    build_args.insert(k, v);
                }
            }
        }
    }
    let labels = args
        .labels
        .iter()
        .map(|l| {
            let (k, v) = key_value(l);
            (k, v.unwrap_or_default())
        })
        .collect();
    let network = match args.network.as_deref() {
        None | Some("default") => None,
        Some("none") => Some(Network::None),
        Some("host") => Some(Network::Host),
        Some(other) => {
            return Ok(fail(format!(
                "network mode \"{other}\" not supported by forge build (default, none, host)"
            )))
        }
    };
    let mut secrets = BTreeMap::new();
    for s in &args.secrets {
        match parse_secret(s) {
            Ok((id, secret)) => {
                secrets.insert(id, secret);
            }
            Err(e) => return Ok(fail(e)),
        }
    }
    let mut cache_to = Vec::new();
    for spec in &args.cache_to {
        match CacheSpec::parse(spec, true) {
            Ok(c) => cache_to.push(c),
            Err(e) => return Ok(fail(e)),
        }
    }
    let mut cache_from = Vec::new();
    for spec in &args.cache_from {
        match CacheSpec::parse(spec, false) {
            Ok(c) => cache_from.push(c),
            Err(e) => return Ok(fail(e)),
        }
    }
    let mut outputs = Vec::new();
    let mut push_to: Vec<Reference> = Vec::new();
    if args.push {
        push_to.extend(tags.iter().cloned());
        if tags.is_empty() {
            return Ok(fail("--push needs a name to push to (-t NAME)"));
        }
    }
    for o in &args.outputs {
        match registry_output(o) {
            Ok(Some(names)) => {
                for n in names {
                    match Reference::parse(&n) {
                        Ok(r) => push_to.push(r),
                        Err(e) => return Ok(fail(format!("invalid name \"{n}\": {e}"))),
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => return Ok(fail(e)),
        }
        match forge_build::export::Output::parse(o) {
            Ok(o) => outputs.push(o),
            Err(e) => return Ok(fail(e)),
        }
    }
    let host = forge_build::Platform::host();
    for p in &args.platform {
        let mut parts = p.split('/');
        let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if os != host.os || arch != host.arch {
            return Ok(fail(format!(
                "platform {p} is not supported: forge builds for the host platform {} only",
                host.format()
            )));
        }
    }
    if outputs.iter().filter(|o| o.is_stdout()).count() > 1 {
        return Ok(fail("only one --output can write to stdout"));
    }
    // The image's names: -t's, and the names it is pushed to.
    for n in &push_to {
        if !tags.contains(n) {
            tags.push(n.clone());
        }
    }
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let input = match BuildInput::read(&store, &args) {
        Ok(input) => input,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    let BuildInput {
        source,
        dockerfile_path,
        context,
        _extracted,
    } = input;
    // A cache that cannot be read only misses, as in buildx: say so and go on.
    let mut imported_caches = Vec::new();
    for spec in &cache_from {
        match import_cache(&store, spec) {
            Ok(c) => imported_caches.push(c),
            Err(e) => eprintln!("WARNING: importing cache {spec:?}: {e:#}"),
        }
    }
    let client = match super::pull::client() {
        Ok(c) => c,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    let resolver = PullingResolver::new(&store, &client, args.pull, true);
    let progress = match BuildProgress::new(&args.progress, args.quiet) {
        Ok(p) => p,
        Err(e) => return Ok(fail(e)),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let outcome = build(BuildRequest {
        store: &store,
        dockerfile: source.bytes.clone(),
        dockerfile_name: source.name.clone(),
        dockerfile_path,
        context,
        tags: tags.clone(),
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args
            .no_cache_filter
            .iter()
            .flat_map(|f| f.split(','))
            .map(str::to_owned)
            .collect(),
        labels,
        network,
        secrets,
        jobs,
        source_date_epoch: source_date_epoch(),
        progress: &progress,
        resolver: &resolver,
        imported_caches: &imported_caches,
    });
    progress.finish(outcome.is_ok());
    match outcome {
        Ok(out) => {
            let id = out.image.id.to_string();
            let chain = out
                .results
                .get(out.plan.target().root)
                .cloned()
                .flatten()
                .unwrap_or_default();
            for o in &outputs {
                if let Err(e) = forge_build::export::write_output(
                    &store,
                    &out.image,
                    &tags,
                    &chain,
                    o,
                    source_date_epoch(),
                ) {
                    return Ok(fail(e));
                }
            }
            if !push_to.is_empty() {
                let image = match store.resolve(&id) {
                    Ok(r) => r.image,
                    Err(e) => return Ok(fail(e)),
                };
                for dest in &push_to {
                    let display = LayerDisplay::new(true, Vec::new());
                    let pushed = forge_registry::push(
                        &client,
                        &store,
                        &image,
                        dest,
                        &forge_registry::PushOptions::default(),
                        &display,
                    );
                    display.finish();
                    match pushed {
                        Ok(p) => progress
                            .result_line(&format!("pushing manifest for {dest}@{} done", p.digest)),
                        Err(e) => return Ok(fail(format!("pushing {dest}: {e}"))),
                    }
                }
            }
            for spec in &cache_to {
                if let Err(e) = export_cache(&store, &out, spec) {
                    return Ok(fail(format!("exporting cache: {e:#}")));
                }
            }
            if let Some(path) = &args.metadata_file {
                let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
                let meta = serde_json::json!({
                    "containerimage.config.digest": id,
                    "containerimage.digest": out.image.manifest_digest.to_string(),
                    "containerimage.descriptor": {
                        "mediaType": forge_oci::media_types::OCI_MANIFEST,
                        "digest": out.image.manifest_digest.to_string(),
                        "size": out.image.manifest.size(),
                    },
                    "image.name": names.join(","),
                });
                std::fs::write(path, serde_json::to_vec_pretty(&meta)?)?;
            }
            progress.result_line(&format!("writing image {id} done"));
            for t in &tags {
                progress.result_line(&format!("naming to {t} done"));
            }
            if let Some(path) = &args.iidfile {
                std::fs::write(path, &id)?;
            }
            // An archive on stdout is all stdout carries.
            if args.quiet && !outputs.iter().any(|o| o.is_stdout()) {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildError::Dockerfile(d)) => {
            source.report(&d);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            let line = match &e {
                BuildError::Solve(s) => s.line(),
                BuildError::Lower(l) => l.span.map(|s| s.start.line),
                _ => None,
            };
            eprintln!("ERROR: failed to solve: {e}");
            if let BuildError::Solve(SolveError::RunFailed { tail, .. }) = &e {
                if !tail.is_empty() {
                    eprintln!("------\n{}\n------", tail.join("\n"));
                }
            }
            if let Some(line) = line {
                show_line(&source, line);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The failing instruction in context, as buildx shows it.
fn show_line(source: &Source, line: u32) {
    let text = source.text();
    let lines: Vec<&str> = text.lines().collect();
    let l = line as usize;
    eprintln!("{}:{line}", source.name);
    eprintln!("--------------------");
    for n in l.saturating_sub(2).max(1)..=(l + 2).min(lines.len()) {
        let marker = if n == l { ">>>" } else { "   " };
        eprintln!(" {n:>3} | {marker} {}", lines[n - 1]);
    }
    eprintln!("--------------------");
}
