//! Lowering: typed Dockerfile instructions → build [`Graph`] plus, per stage,
//! the image config and history the stage produces. BuildKit's
//! `dockerfile2llb` semantics:
//!
//! - ARGs before the first FROM are global: they (and the platform args
//!   `BUILDPLATFORM`, `TARGETARCH`, …) expand FROM lines. Inside a stage an ARG
//!   must be declared to be seen; its value is the `--build-arg`, else its
//!   default, else the global ARG of that name. ARGs never reach the image
//!   config; RUN sees them as environment variables, and ENV always wins over
//!   an ARG of the same name.
//! - Words of the instructions that expand variables are expanded with the
//!   environment as it was before the instruction (`ENV a=1 b=$a` gives `b`
//!   the old `a`).
//! - A stage is lowered only when the target needs it (through FROM,
//!   `COPY --from`, `RUN --mount=from=`); forward references are followed, a
//!   cycle is an error.
//! - ONBUILD triggers of a base image run first in the stage that uses it.

use crate::graph::{AddOptions, Copy, Exec, ExecMount, Graph, Network, Op, Source, VertexId};
use forge_dockerfile::instructions::{
    CommandLine, Healthcheck, InstructionKind, MountType, NetworkMode, Security, Sharing,
};
use forge_dockerfile::shell::{Lexer, ShellError};
use forge_dockerfile::{Dockerfile, Instruction, Span, Stage};
use forge_oci::image::{ContainerConfig, EmptyObject, HealthConfig};
use forge_oci::{Digest, ImageConfig};
use std::collections::BTreeMap;

/// The platform forge builds for: the host's (no emulation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: String,
}

impl Platform {
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: variant.into(),
        }
    }

    /// `os/arch[/variant]`.
    pub fn format(&self) -> String {
        if self.variant.is_empty() {
            format!("{}/{}", self.os, self.arch)
        } else {
            format!("{}/{}/{}", self.os, self.arch, self.variant)
        }
    }
}

/// Finds base images (in the store, or by pulling).
pub trait ImageResolver {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String>;
}

/// A base image, as lowering needs it.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The normalised reference.
    pub reference: String,
    pub manifest: Digest,
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    pub build_args: BTreeMap<String, String>,
    /// Stage name to build; default the last stage.
    pub target: Option<String>,
    /// Default network for RUN (`--network`).
    pub network: Option<Network>,
    /// `--label`s, applied to the final stage.
    pub labels: BTreeMap<String, String>,
}

/// Why lowering failed; the span points into the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LowerError {
    pub message: String,
    pub span: Option<Span>,
}

fn error_at(span: Span, message: impl Into<String>) -> LowerError {
    LowerError {
        message: message.into(),
        span: Some(span),
    }
}

/// One history entry of a stage, tied to the vertex whose layer it made.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub created_by: String,
    /// The vertex that made this step's layer (diffed against `parent`), or
    /// `None` for a metadata-only step.
    pub layer: Option<LayerSource>,
}

/// A layer: the changes between `parent` (or nothing) and `vertex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSource {
    pub vertex: VertexId,
    pub parent: Option<VertexId>,
}

/// What a stage produces.
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub index: usize,
    pub name: Option<String>,
    /// The final filesystem.
    pub root: VertexId,
    /// The image config without `rootfs` and `history` (filled at export).
    pub config: ImageConfig,
    /// The base image's history entries, then one per instruction.
    pub base_history: Vec<forge_oci::History>,
    /// The base image's layers (diffIDs), bottom first.
    pub base_layers: Vec<Digest>,
    pub steps: Vec<Step>,
    /// The environment its last step ran with (ENV and ARG values): a stage built
    /// `FROM` this one starts with it, as BuildKit's LLB state carries it.
    pub step_env: Vec<(String, String)>,
}

/// The result of lowering.
#[derive(Debug, Clone)]
pub struct Plan {
    pub graph: Graph,
    /// Lowered stages, by stage index (`None`: not needed by the target).
    pub stages: Vec<Option<StageOutput>>,
    pub target: usize,
}

impl Plan {
    pub fn target(&self) -> &StageOutput {
        self.stages[self.target]
            .as_ref()
            .expect("the target stage is always lowered")
    }
}

/// Build args BuildKit knows without an ARG (proxy settings).
const PREDEFINED_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Lowers `dockerfile` for `opts.target` (default: the last stage).
pub fn lower(
    dockerfile: &Dockerfile,
    opts: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<Plan, LowerError> {
    let platform = Platform::host();
    let mut lowerer = Lowerer {
        df: dockerfile,
        opts,
        resolver,
        platform: platform.clone(),
        lexer: Lexer::new(dockerfile.escape),
        graph: Graph::default(),
        stages: vec![None; dockerfile.stages.len()],
        in_progress: vec![false; dockerfile.stages.len()],
        global: Vec::new(),
        images: BTreeMap::new(),
    };
    lowerer.global = lowerer.global_args()?;
    if dockerfile.stages.is_empty() {
        return Err(LowerError {
            message: "the Dockerfile has no FROM instruction".into(),
            span: None,
        });
    }
    let target = match &opts.target {
        None => dockerfile.stages.len() - 1,
        Some(t) => dockerfile
            .stages
            .iter()
            .position(|s| s.name().is_some_and(|n| n.value == t.to_lowercase()))
            .ok_or_else(|| LowerError {
                message: format!("target stage \"{t}\" could not be found"),
                span: None,
            })?,
    };
    lowerer.check_stage_cycles()?;
    lowerer.stage(target)?;
    if !opts.labels.is_empty() {
        if let Some(out) = lowerer.stages[target].as_mut() {
            let cfg = out.config.config.get_or_insert_with(Default::default);
            let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(opts.labels.clone());
        }
    }
    Ok(Plan {
        graph: lowerer.graph,
        stages: lowerer.stages,
        target,
    })
}

struct Lowerer<'a> {
    df: &'a Dockerfile,
    opts: &'a LowerOptions,
    resolver: &'a dyn ImageResolver,
    platform: Platform,
    lexer: Lexer,
    graph: Graph,
    stages: Vec<Option<StageOutput>>,
    in_progress: Vec<bool>,
    /// Global args with values: platform args, then ARGs before FROM.
    global: Vec<(String, String)>,
    /// Resolved images by the reference written, so each is resolved once.
    images: BTreeMap<String, ResolvedImage>,
}

/// The state of a stage while its instructions are lowered.
struct State {
    index: usize,
    root: VertexId,
    config: ImageConfig,
    /// Declared build args in scope, with values.
    args: Vec<(String, Option<String>)>,
    /// The environment steps see and words expand with: the base's ENV,
    /// then ENV instructions and ARGs with a value in order, the last writer
    /// of a name winning (BuildKit adds both to the step's environment; only
    /// ENV reaches the image config).
    step_env: Vec<(String, String)>,
    cmd_set: bool,
    steps: Vec<Step>,
    /// Instruction number for progress names.
    step_no: usize,
}

impl State {
    /// A stage's starting state: its base's filesystem, config and history;
    /// steps see the base's environment.
    fn new(index: usize, root: VertexId, config: ImageConfig, steps: Vec<Step>) -> State {
        let mut state = State {
            index,
            root,
            config,
            args: Vec::new(),
            step_env: Vec::new(),
            cmd_set: false,
            steps,
            step_no: 1,
        };
        state.step_env = state.env_pairs();
        state
    }

    fn container(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }

    fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .map(|env| {
                env.iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.clone(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn expansion_env(&self) -> Vec<(String, String)> {
        self.step_env.clone()
    }

    fn set_step_env(&mut self, key: &str, value: &str) {
        match self.step_env.iter().position(|(k, _)| k == key) {
            Some(i) => self.step_env[i].1 = value.to_string(),
            None => self.step_env.push((key.to_string(), value.to_string())),
        }
    }

    fn set_env(&mut self, key: &str, value: &str) {
        self.set_step_env(key, value);
        let env = self.container().env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter()
            .position(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key)
        {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    fn user(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn history(&mut self, created_by: String, layer: Option<LayerSource>) {
        self.steps.push(Step { created_by, layer });
    }
}

impl Lowerer<'_> {
    fn platform_args(&self) -> Vec<(String, String)> {
        let p = &self.platform;
        let mut out = Vec::new();
        for prefix in ["BUILD", "TARGET"] {
            out.push((format!("{prefix}PLATFORM"), p.format()));
            out.push((format!("{prefix}OS"), p.os.clone()));
            out.push((format!("{prefix}ARCH"), p.arch.clone()));
            out.push((format!("{prefix}VARIANT"), p.variant.clone()));
        }
        out
    }

    fn global_args(&self) -> Result<Vec<(String, String)>, LowerError> {
        let mut env = self.platform_args();
        for inst in &self.df.meta_args {
            let InstructionKind::Arg(defs) = &inst.kind else {
                continue;
            };
            for def in defs {
                let value = match (self.opts.build_args.get(&def.name.value), &def.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(self.expand(&d.value, &env, d.span)?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    env.push((def.name.value.clone(), v));
                }
            }
        }
        Ok(env)
    }

    fn expand(
        &self,
        word: &str,
        env: &[(String, String)],
        span: Span,
    ) -> Result<String, LowerError> {
        self.lexer
            .process_word(word, env)
            .map_err(|e: ShellError| error_at(span, e.to_string()))
    }

    fn expand_words(
        &self,
        word: &str,
        env: &[(String, String)],
        span: Span,
    ) -> Result<Vec<String>, LowerError> {
        self.lexer
            .process_words(word, env)
            .map_err(|e: ShellError| error_at(span, e.to_string()))
    }

    fn resolve_image(&mut self, reference: &str, span: Span) -> Result<ResolvedImage, LowerError> {
        if let Some(r) = self.images.get(reference) {
            return Ok(r.clone());
        }
        let resolved = self
            .resolver
            .resolve(reference)
            .map_err(|e| error_at(span, e))?;
        self.images.insert(reference.to_string(), resolved.clone());
        Ok(resolved)
    }

    /// A stage by `--from` / FROM name: a stage name (case-insensitive) or,
    /// for `--from`, a stage index.
    fn stage_by_name(&self, name: &str, allow_index: bool) -> Option<usize> {
        let lower = name.to_lowercase();
        if let Some(i) = self
            .df
            .stages
            .iter()
            .position(|s| s.name().is_some_and(|n| n.value == lower))
        {
            return Some(i);
        }
        if allow_index {
            if let Ok(i) = name.parse::<usize>() {
                if i < self.df.stages.len() {
                    return Some(i);
                }
            }
        }
        None
    }

    /// BuildKit's validateCircularDependency, before anything is lowered: a stage that
    /// reaches itself through `COPY --from` or `RUN --mount=from=` fails the build even
    /// when the target does not need it. The error names the first stage, in Dockerfile
    /// order, from which a cycle is found, at the instruction that starts it.
    fn check_stage_cycles(&self) -> Result<(), LowerError> {
        let deps: Vec<Vec<(usize, Span)>> = self
            .df
            .stages
            .iter()
            .map(|stage| {
                let mut deps = Vec::new();
                for inst in &stage.instructions {
                    match &inst.kind {
                        InstructionKind::Copy(c) => {
                            if let Some(i) = c
                                .from
                                .as_ref()
                                .and_then(|f| self.stage_by_name(&f.value, true))
                            {
                                deps.push((i, inst.span));
                            }
                        }
                        InstructionKind::Run(r) => {
                            for m in &r.mounts {
                                if let Some(i) = m
                                    .value
                                    .from
                                    .as_deref()
                                    .and_then(|f| self.stage_by_name(f, true))
                                {
                                    deps.push((i, inst.span));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                deps
            })
            .collect();
        fn visit(
            s: usize,
            deps: &[Vec<(usize, Span)>],
            visited: &mut [bool],
            path: &mut [bool],
        ) -> Option<Span> {
            if visited[s] {
                return None;
            }
            visited[s] = true;
            path[s] = true;
            for &(d, span) in &deps[s] {
                if path[d] {
                    return Some(span);
                }
                // The cycle is reported at its first step from the starting stage.
                if visit(d, deps, visited, path).is_some() {
                    return Some(span);
                }
            }
            path[s] = false;
            None
        }
        let n = deps.len();
        let (mut visited, mut path) = (vec![false; n], vec![false; n]);
        for s in 0..n {
            if let Some(span) = visit(s, &deps, &mut visited, &mut path) {
                let stage = &self.df.stages[s];
                let name = stage
                    .name()
                    .map_or_else(|| format!("stage-{s}"), |n| n.value.clone());
                return Err(error_at(
                    span,
                    format!("circular dependency detected on stage: {name}"),
                ));
            }
        }
        Ok(())
    }

    /// The output of stage `index`, lowering it (and what it needs) first.
    fn stage(&mut self, index: usize) -> Result<VertexId, LowerError> {
        if let Some(out) = &self.stages[index] {
            return Ok(out.root);
        }
        let stage: &Stage = &self.df.stages[index];
        if self.in_progress[index] {
            return Err(error_at(
                stage.from.span,
                "circular dependency detected on stage: ".to_string()
                    + stage.name().map_or("", |n| n.value.as_str()),
            ));
        }
        self.in_progress[index] = true;
        let from = stage.from();
        let base_name = self.expand(&from.image.value, &self.global.clone(), from.image.span)?;
        if let Some(p) = &from.platform {
            let p = self.expand(&p.value, &self.global.clone(), p.span)?;
            let host = self.platform.format();
            if p != host && p != format!("{}/{}", self.platform.os, self.platform.arch) {
                return Err(error_at(
                    from.platform.as_ref().map_or(stage.from.span, |p| p.span),
                    format!("platform {p} is not supported: forge builds for the host platform {host} only"),
                ));
            }
        }
        let name = stage.name().map(|n| n.value.clone());
        let total = stage.instructions.len() + 1;
        let label = |n: usize| match &name {
            Some(s) => format!("[{s} {n}/{total}]"),
            None => format!("[stage-{index} {n}/{total}]"),
        };
        let from_line = Some(stage.from.span.start.line);
        let base_stage = self
            .stage_by_name(&base_name, false)
            .filter(|&i| i != index && i < index);
        let (base_history, base_layers, triggers);
        let mut inherited_env = None;
        let (root, config, steps) = if let Some(b) = base_stage {
            let root = self.stage(b)?;
            let out = self.stages[b].as_ref().expect("lowered above");
            let mut config = out.config.clone();
            triggers = take_triggers(&mut config);
            // The base stage's steps are history of this image too.
            let steps = out.steps.clone();
            base_history = out.base_history.clone();
            base_layers = out.base_layers.clone();
            inherited_env = Some(out.step_env.clone());
            (root, config, steps)
        } else if base_name.eq_ignore_ascii_case("scratch") {
            let root = self.graph.add(
                Op::Scratch,
                vec![],
                label(1) + " FROM scratch",
                index,
                from_line,
            );
            let mut config = ImageConfig {
                architecture: self.platform.arch.clone(),
                os: self.platform.os.clone(),
                ..Default::default()
            };
            config.config = Some(ContainerConfig {
                env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
                ..Default::default()
            });
            triggers = Vec::new();
            base_history = Vec::new();
            base_layers = Vec::new();
            (root, config, Vec::new())
        } else {
            let image = self.resolve_image(&base_name, from.image.span)?;
            let root = self.graph.add(
                Op::Image {
                    reference: image.reference.clone(),
                    manifest: image.manifest.clone(),
                },
                vec![],
                format!("{} FROM {}", label(1), image.reference),
                index,
                from_line,
            );
            let mut config = image.config.clone();
            // BuildKit reads the base config into docker's OCI image type, so what it
            // does not know (`comment`, `container_config`, `docker_version`, an old
            // config's `Hostname` or `Image`) does not reach the new image.
            config.extra.clear();
            if let Some(cc) = config.config.as_mut() {
                cc.extra.clear();
                if let Some(h) = cc.healthcheck.as_mut() {
                    h.extra.clear();
                }
            }
            for h in config.history.iter_mut().flatten() {
                h.extra.clear();
            }
            base_history = config.history.take().unwrap_or_default();
            base_layers = std::mem::take(&mut config.rootfs.diff_ids);
            config.created = None;
            triggers = take_triggers(&mut config);
            if config
                .config
                .as_ref()
                .and_then(|c| c.env.as_ref())
                .is_none()
            {
                config.config.get_or_insert_with(Default::default).env =
                    Some(vec![format!("PATH={DEFAULT_PATH}")]);
            }
            (root, config, Vec::new())
        };
        let mut state = State::new(index, root, config, steps);
        if let Some(env) = inherited_env {
            // The base stage's ARG values stay in the environment of this stage's
            // steps (not in its image config), as BuildKit's state env does.
            state.step_env = env;
        }
        for trigger in triggers {
            let parsed = forge_dockerfile::parse(trigger.as_bytes()).map_err(|e| {
                error_at(stage.from.span, format!("ONBUILD trigger {trigger:?}: {e}"))
            })?;
            for node in parsed.nodes {
                let inst = forge_dockerfile::instructions::instruction(node).map_err(|e| {
                    error_at(stage.from.span, format!("ONBUILD trigger {trigger:?}: {e}"))
                })?;
                // Trigger errors point at the FROM that ran them.
                let mut inst = inst;
                inst.span = stage.from.span;
                self.dispatch(&mut state, &inst, &label)?;
            }
        }
        for inst in &stage.instructions {
            state.step_no += 1;
            self.dispatch(&mut state, inst, &label)?;
        }
        let root = state.root;
        self.stages[index] = Some(StageOutput {
            index,
            name,
            root,
            config: state.config,
            base_history,
            base_layers,
            steps: state.steps,
            step_env: state.step_env,
        });
        self.in_progress[index] = false;
        Ok(root)
    }

    /// The vertex a `--from` names: a stage (lowered on demand) or an image.
    fn copy_source(
        &mut self,
        from: &str,
        span: Span,
        current: usize,
    ) -> Result<Source, LowerError> {
        if let Some(i) = self.stage_by_name(from, true) {
            if i == current {
                return Err(error_at(
                    span,
                    format!("stage {from} cannot copy from itself"),
                ));
            }
            return Ok(Source::Vertex(self.stage(i)?));
        }
        let image = self.resolve_image(from, span)?;
        let v = self.graph.add(
            Op::Image {
                reference: image.reference.clone(),
                manifest: image.manifest.clone(),
            },
            vec![],
            format!("FROM {}", image.reference),
            current,
            None,
        );
        Ok(Source::Vertex(v))
    }

    fn dispatch(
        &mut self,
        st: &mut State,
        inst: &Instruction,
        label: &dyn Fn(usize) -> String,
    ) -> Result<(), LowerError> {
        let env = st.expansion_env();
        let line = Some(inst.span.start.line);
        let name = format!("{} {}", label(st.step_no), display_original(&inst.original));
        match &inst.kind {
            InstructionKind::From(_) => {}
            InstructionKind::Env(pairs) => {
                let mut expanded = Vec::new();
                for kv in pairs {
                    let k = self.expand(&kv.key.value, &env, kv.key.span)?;
                    let v = self.expand(&kv.value.value, &env, kv.value.span)?;
                    expanded.push((k, v));
                }
                let mut msg = String::from("ENV");
                for (k, v) in &expanded {
                    st.set_env(k, v);
                    msg.push_str(&format!(" {k}={v}"));
                }
                st.history(msg, None);
            }
            InstructionKind::Arg(defs) => {
                let mut parts = Vec::new();
                for def in defs {
                    let key = def.name.value.clone();
                    // History shows the Dockerfile's default, expanded (BuildKit
                    // expands ARG's words before dispatching it).
                    let default = match &def.default {
                        Some(d) => Some(self.expand(&d.value, &st.expansion_env(), d.span)?),
                        None => None,
                    };
                    let value = match (self.opts.build_args.get(&key), &default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(d.clone()),
                        (None, None) => self
                            .global
                            .iter()
                            .rev()
                            .find(|(k, _)| *k == key)
                            .map(|(_, v)| v.clone()),
                    };
                    parts.push(match &default {
                        Some(d) => format!("{key}={d}"),
                        None => key.clone(),
                    });
                    if let Some(v) = &value {
                        st.set_step_env(&key, v);
                    }
                    // A re-declared arg keeps its first place in RUN's history
                    // (BuildKit's runCommandString dedupes by first index).
                    match st.args.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => st.args.push((key, value)),
                    }
                }
                st.history(format!("ARG {}", parts.join(" ")), None);
            }
            InstructionKind::Label(pairs) => {
                let mut msg = String::from("LABEL");
                for kv in pairs {
                    let k = self.expand(&kv.key.value, &env, kv.key.span)?;
                    let v = self.expand(&kv.value.value, &env, kv.value.span)?;
                    msg.push_str(&format!(" {k}={v}"));
                    st.container()
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                st.history(msg, None);
            }
            InstructionKind::Maintainer(m) => {
                st.config.author = Some(m.value.clone());
                st.history(format!("MAINTAINER {}", m.value), None);
            }
            InstructionKind::Workdir(w) => {
                let path = self.expand(&w.value, &env, w.span)?;
                // BuildKit's NormalizeWorkdir: an absolute path is kept as written
                // (`/a/../b` stays, in the config and the history); a relative one is
                // joined to the current directory, which cleans it.
                let wd = if path.starts_with('/') {
                    path
                } else {
                    forge_dockerfile::dockerignore::clean_path(&format!(
                        "{}/{}",
                        st.workdir(),
                        path
                    ))
                };
                st.container().working_dir = Some(wd.clone());
                let layer = if wd != "/" {
                    let parent = st.root;
                    st.root = self.graph.add(
                        Op::Mkdir {
                            path: wd.clone(),
                            user: st.user(),
                        },
                        vec![parent],
                        name,
                        st.index,
                        line,
                    );
                    Some(LayerSource {
                        vertex: st.root,
                        parent: Some(parent),
                    })
                } else {
                    None
                };
                st.history(format!("WORKDIR {wd}"), layer);
            }
            InstructionKind::User(u) => {
                let user = self.expand(&u.value, &env, u.span)?;
                st.container().user = Some(user.clone());
                st.history(format!("USER {user}"), None);
            }
            InstructionKind::Shell(args) => {
                let shell: Vec<String> = args.iter().map(|a| a.value.clone()).collect();
                st.history(format!("SHELL [{}]", shell.join(" ")), None);
                st.container().shell = Some(shell);
            }
            InstructionKind::Cmd(cl) => {
                let cmd = self.command_args(st, cl);
                st.history(format!("CMD {}", go_quote_list(&cmd)), None);
                // `CMD []` clears it: BuildKit's config field is `omitempty`, so an
                // empty list is written as no Cmd at all (as ENTRYPOINT [] below).
                let c = st.container();
                c.cmd = if cmd.is_empty() { None } else { Some(cmd) };
                // BuildKit marks every CMD so (docker's Windows quirk, kept for
                // compatibility); ENTRYPOINT leaves it as it was.
                c.args_escaped = Some(true);
                st.cmd_set = true;
            }
            InstructionKind::Entrypoint(cl) => {
                let ep = self.command_args(st, cl);
                st.history(format!("ENTRYPOINT {}", go_quote_list(&ep)), None);
                let c = st.container();
                c.entrypoint = if ep.is_empty() { None } else { Some(ep) };
                if !st.cmd_set {
                    st.container().cmd = None;
                }
            }
            InstructionKind::Expose(ports) => {
                // History shows this instruction's port set as BuildKit prints
                // it: Go's `%v` of a map, keys sorted: `map[80/tcp:{}]`.
                let mut these = std::collections::BTreeSet::new();
                for p in ports {
                    for word in self.expand_words(&p.value, &env, p.span)? {
                        for key in expose_keys(&word).map_err(|m| error_at(p.span, m))? {
                            st.container()
                                .exposed_ports
                                .get_or_insert_with(BTreeMap::new)
                                .insert(key.clone(), EmptyObject {});
                            these.insert(key);
                        }
                    }
                }
                let set: Vec<String> = these.iter().map(|k| format!("{k}:{{}}")).collect();
                st.history(format!("EXPOSE map[{}]", set.join(" ")), None);
            }
            InstructionKind::Volume(v) => {
                let mut vols = Vec::new();
                for p in &v.paths {
                    for word in self.expand_words(&p.value, &env, p.span)? {
                        vols.push(word);
                    }
                }
                for vol in &vols {
                    st.container()
                        .volumes
                        .get_or_insert_with(BTreeMap::new)
                        .insert(vol.clone(), EmptyObject {});
                }
                st.history(format!("VOLUME [{}]", vols.join(" ")), None);
            }
            InstructionKind::Stopsignal(s) => {
                let sig = self.expand(&s.value, &env, s.span)?;
                st.container().stop_signal = Some(sig.clone());
                st.history(format!("STOPSIGNAL {sig}"), None);
            }
            InstructionKind::Healthcheck(h) => {
                let config = match h {
                    Healthcheck::None => HealthConfig {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    },
                    Healthcheck::Cmd {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let ns = |d: &Option<std::time::Duration>| {
                            d.map(|d| d.as_nanos() as i64).filter(|n| *n != 0)
                        };
                        HealthConfig {
                            test: Some(test.clone()),
                            interval: ns(interval),
                            timeout: ns(timeout),
                            start_period: ns(start_period),
                            start_interval: ns(start_interval),
                            retries: retries.map(i64::from).filter(|r| *r != 0),
                            ..Default::default()
                        }
                    }
                };
                st.history(format!("HEALTHCHECK {}", go_health_config(&config)), None);
                st.container().healthcheck = Some(config);
            }
            InstructionKind::Onbuild(o) => {
                st.container()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(o.expression.clone());
                // BuildKit records the trigger in the config only: no history.
            }
            InstructionKind::Run(run) => self.dispatch_run(st, run, &env, name, line)?,
            InstructionKind::Copy(c) => {
                let from = match &c.from {
                    Some(f) => {
                        literal_from(&self.lexer, f)?;
                        Some(self.copy_source(&f.value, f.span, st.index)?)
                    }
                    None => None,
                };
                let (copy, written) = self.copy_op(st, &c.sources, &env, from, c.parents, None)?;
                self.add_copy(st, copy, &written, "COPY", name, line)?;
            }
            InstructionKind::Add(a) => {
                let checksum = match &a.checksum {
                    Some(c) => Some(self.expand(&c.value, &env, c.span)?),
                    None => None,
                };
                let add = AddOptions {
                    unpack: a.unpack,
                    checksum,
                    keep_git_dir: a.keep_git_dir,
                };
                let (copy, written) = self.copy_op(st, &a.sources, &env, None, false, Some(add))?;
                self.add_copy(st, copy, &written, "ADD", name, line)?;
            }
        }
        Ok(())
    }

    /// CMD/ENTRYPOINT/RUN arguments: exec form as is, shell form wrapped in
    /// the stage's SHELL.
    fn command_args(&self, st: &State, cl: &CommandLine) -> Vec<String> {
        let args: Vec<String> = cl.args.iter().map(|a| a.value.clone()).collect();
        if cl.json {
            args
        } else {
            let mut shell = st.shell();
            shell.extend(args);
            shell
        }
    }

    fn dispatch_run(
        &mut self,
        st: &mut State,
        run: &forge_dockerfile::instructions::Run,
        env: &[(String, String)],
        name: String,
        line: Option<u32>,
    ) -> Result<(), LowerError> {
        let cl = &run.command;
        let mut mounts = Vec::new();
        let mut inputs = vec![st.root];
        let mut args: Vec<String> = cl.args.iter().map(|a| a.value.clone()).collect();
        if let Some(first) = cl.heredocs.first() {
            let whole_line_is_heredoc = args.len() == 1
                && !cl.json
                && args[0]
                    .trim()
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with("<<")
                && !args[0].trim().contains(char::is_whitespace);
            if whole_line_is_heredoc {
                let body = first.body();
                if body.starts_with("#!") {
                    // A script with an interpreter: mount it and run it.
                    let target = format!("/dev/pipes/{}", first.name);
                    mounts.push(ExecMount::Tmpfs {
                        target: "/dev/pipes".into(),
                        size: None,
                    });
                    args = vec![target.clone()];
                    mounts.push(ExecMount::Bind {
                        target,
                        from: Source::Context,
                        source: format!("inline:{body}"),
                        readonly: true,
                    });
                } else {
                    args = vec![body];
                }
            } else {
                // Give the shell the heredocs as it would read them itself.
                let mut full = args.join(" ");
                for h in &cl.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                args = vec![full];
            }
        }
        let args = if cl.json {
            args
        } else {
            let mut shell = st.shell();
            shell.extend(args);
            shell
        };
        for m in &run.mounts {
            let expand = |w: &str| self.expand(w, env, m.span).map_err(|e| e.message);
            let mount = forge_dockerfile::instructions::Mount::parse(&m.value.raw, Some(&expand))
                .map_err(|e| error_at(m.span, e.to_string()))?;
            let from = match &mount.from {
                Some(f) => Some(self.copy_source(f, m.span, st.index)?),
                None => None,
            };
            if let Some(Source::Vertex(v)) = &from {
                inputs.push(*v);
            }
            let target = |t: &Option<String>| -> Result<String, LowerError> {
                let t = t
                    .clone()
                    .ok_or_else(|| error_at(m.span, "mount target is required"))?;
                Ok(if t.starts_with('/') {
                    t
                } else {
                    forge_dockerfile::dockerignore::clean_path(&format!("{}/{t}", st.workdir()))
                })
            };
            mounts.push(match mount.kind {
                MountType::Bind => ExecMount::Bind {
                    target: target(&mount.target)?,
                    from: from.unwrap_or(Source::Context),
                    source: mount.source.clone().unwrap_or_else(|| "/".into()),
                    readonly: mount.readonly,
                },
                MountType::Cache => {
                    let t = target(&mount.target)?;
                    ExecMount::Cache {
                        id: mount.id.clone().unwrap_or_else(|| t.clone()),
                        target: t,
                        sharing: match mount.sharing {
                            Some(Sharing::Private) => "private",
                            Some(Sharing::Locked) => "locked",
                            _ => "shared",
                        }
                        .into(),
                        readonly: mount.readonly,
                        from,
                        source: mount.source.clone().unwrap_or_else(|| "/".into()),
                        uid: mount.uid.unwrap_or(0),
                        gid: mount.gid.unwrap_or(0),
                        mode: mount.mode.unwrap_or(0o755),
                    }
                }
                MountType::Tmpfs => ExecMount::Tmpfs {
                    target: target(&mount.target)?,
                    size: mount.size,
                },
                MountType::Secret => {
                    let id = mount
                        .id
                        .clone()
                        .or_else(|| {
                            mount
                                .target
                                .as_ref()
                                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
                        })
                        .unwrap_or_default();
                    let target = match (&mount.target, &mount.env) {
                        (Some(t), _) => Some(t.clone()),
                        (None, Some(_)) => None,
                        (None, None) => Some(format!("/run/secrets/{id}")),
                    };
                    ExecMount::Secret {
                        id,
                        target,
                        env: mount.env.clone(),
                        required: mount.required,
                        uid: mount.uid.unwrap_or(0),
                        gid: mount.gid.unwrap_or(0),
                        mode: mount.mode.unwrap_or(0o400),
                    }
                }
                MountType::Ssh => {
                    return Err(error_at(
                        m.span,
                        "RUN --mount=type=ssh is not supported by forge",
                    ))
                }
            });
        }
        let network = match run.network.as_ref().map(|n| n.value) {
            Some(NetworkMode::None) => Network::None,
            Some(NetworkMode::Host) => Network::Host,
            Some(NetworkMode::Default) | None => self.opts.network.unwrap_or(Network::Default),
        };
        let insecure = matches!(
            run.security.as_ref().map(|s| s.value),
            Some(Security::Insecure)
        );
        // The step's environment, then predefined proxy args given on the
        // command line and not declared or set.
        let mut run_env: Vec<String> = st
            .step_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut history_args = Vec::new();
        for (k, v) in &st.args {
            // BuildKit's runCommandString: every declared arg with the value
            // the step sees, `K=` when unset.
            let seen = st
                .step_env
                .iter()
                .find(|(e, _)| e == k)
                .map(|(_, v)| v.as_str());
            history_args.push(format!("{k}={}", seen.or(v.as_deref()).unwrap_or("")));
        }
        for p in PREDEFINED_ARGS {
            if let Some(v) = self.opts.build_args.get(p) {
                if !st.step_env.iter().any(|(k, _)| k == p) && !st.args.iter().any(|(k, _)| k == p)
                {
                    run_env.push(format!("{p}={v}"));
                }
            }
        }
        let exec = Exec {
            args: args.clone(),
            env: run_env,
            cwd: st.workdir(),
            user: st.user(),
            network,
            insecure,
            mounts,
        };
        let parent = st.root;
        st.root = self.graph.add(Op::Exec(exec), inputs, name, st.index, line);
        let mut created_by = String::from("RUN ");
        if !history_args.is_empty() {
            created_by.push_str(&format!(
                "|{} {} ",
                history_args.len(),
                history_args.join(" ")
            ));
        }
        created_by.push_str(&args.join(" "));
        created_by.push_str(" # buildkit");
        st.history(
            created_by,
            Some(LayerSource {
                vertex: st.root,
                parent: Some(parent),
            }),
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_op(
        &mut self,
        st: &State,
        s: &forge_dockerfile::instructions::Sources,
        env: &[(String, String)],
        from: Option<Source>,
        parents: bool,
        add: Option<AddOptions>,
    ) -> Result<(Copy, String), LowerError> {
        let mut sources = Vec::new();
        for p in &s.paths {
            sources.push(self.expand(&p.value, env, p.span)?);
        }
        let mut inline = Vec::new();
        for h in &s.heredocs {
            let body = h.body();
            let body = if h.expand {
                self.expand_heredoc(&body, env, h.span)?
            } else {
                body
            };
            inline.push((h.name.clone(), body));
        }
        let dest_raw = self.expand(&s.dest.value, env, s.dest.span)?;
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let joined = format!("{}/{}", st.workdir(), dest_raw);
            let mut d = forge_dockerfile::dockerignore::clean_path(&joined);
            if dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.") {
                d.push('/');
            }
            d
        };
        let opt =
            |o: &Option<forge_dockerfile::Spanned<String>>| -> Result<Option<String>, LowerError> {
                o.as_ref()
                    .map(|v| self.expand(&v.value, env, v.span))
                    .transpose()
            };
        let copy = Copy {
            from: from.unwrap_or(Source::Context),
            sources,
            inline,
            dest,
            chown: opt(&s.chown)?,
            chmod: opt(&s.chmod)?,
            link: s.link,
            exclude: s
                .exclude
                .iter()
                .map(|e| self.expand(&e.value, env, e.span))
                .collect::<Result<_, _>>()?,
            parents,
            add,
        };
        Ok((copy, dest_raw))
    }

    /// Heredoc bodies expand like a shell's unquoted heredoc: variables, but
    /// quotes stay as written.
    fn expand_heredoc(
        &self,
        body: &str,
        env: &[(String, String)],
        span: Span,
    ) -> Result<String, LowerError> {
        let mut lexer = self.lexer;
        lexer.skip_process_quotes = true;
        lexer
            .process_word(body, env)
            .map_err(|e| error_at(span, e.to_string()))
    }

    fn add_copy(
        &mut self,
        st: &mut State,
        copy: Copy,
        dest_written: &str,
        cmd: &str,
        name: String,
        line: Option<u32>,
    ) -> Result<(), LowerError> {
        let mut created_by = String::from(cmd);
        for s in &copy.sources {
            created_by.push(' ');
            created_by.push_str(s);
        }
        for (n, _) in &copy.inline {
            created_by.push_str(&format!(" <<{n}"));
        }
        created_by.push(' ');
        created_by.push_str(dest_written);
        created_by.push_str(" # buildkit");
        let parent = st.root;
        let mut inputs = Vec::new();
        let link = copy.link;
        if !link {
            inputs.push(parent);
        }
        if let Source::Vertex(v) = copy.from {
            inputs.push(v);
        }
        let layer;
        if link {
            // The copy is made on nothing; its layer is merged on top.
            let copied = self
                .graph
                .add(Op::Copy(copy), inputs, name.clone(), st.index, line);
            st.root = self
                .graph
                .add(Op::Merge, vec![parent, copied], name, st.index, line);
            layer = LayerSource {
                vertex: copied,
                parent: None,
            };
        } else {
            st.root = self.graph.add(Op::Copy(copy), inputs, name, st.index, line);
            layer = LayerSource {
                vertex: st.root,
                parent: Some(parent),
            };
        }
        st.history(created_by, Some(layer));
        Ok(())
    }
}

/// `COPY --from` takes a stage or image name as written: BuildKit refuses a value that
/// expansion would change (its message, with the workaround it suggests).
fn literal_from(lexer: &Lexer, from: &forge_dockerfile::Spanned<String>) -> Result<(), LowerError> {
    let unchanged = lexer
        .process_word(&from.value, &Vec::<(String, String)>::new())
        .is_ok_and(|w| w == from.value);
    if unchanged {
        Ok(())
    } else {
        Err(error_at(
            from.span,
            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
        ))
    }
}

/// ONBUILD triggers of a base config: taken out (grandchildren do not inherit
/// them) and returned to run.
fn take_triggers(config: &mut ImageConfig) -> Vec<String> {
    config
        .config
        .as_mut()
        .and_then(|c| c.on_build.take())
        .unwrap_or_default()
}

/// The original line for progress: continuations were already joined.
fn display_original(original: &str) -> String {
    let mut s = original.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(first) = s.get(..s.find(' ').unwrap_or(s.len())) {
        let upper = first.to_ascii_uppercase();
        s.replace_range(..first.len(), &upper);
    }
    s
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| forge_dockerfile::dump::go_quote(s))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// BuildKit's history text for HEALTHCHECK: Go's `%q` of the config struct pointer,
/// `&{["CMD-SHELL" "curl x"] "30s" "3s" "0s" "0s" '\x03'}` (test, interval, timeout,
/// start period, start interval, retries as a quoted rune).
fn go_health_config(c: &HealthConfig) -> String {
    let d = |ns: Option<i64>| format!("\"{}\"", go_duration(ns.unwrap_or(0)));
    format!(
        "&{{{} {} {} {} {} {}}}",
        go_quote_list(c.test.as_deref().unwrap_or_default()),
        d(c.interval),
        d(c.timeout),
        d(c.start_period),
        d(c.start_interval),
        go_quote_rune(c.retries.unwrap_or(0))
    )
}

/// Go's `time.Duration.String`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`, `2µs`, `3ns`.
fn go_duration(ns: i64) -> String {
    // `v / 10^prec` with the fraction's trailing zeros (and a bare point) dropped.
    fn frac(v: u64, prec: u32) -> String {
        let unit = 10u64.pow(prec);
        let (int, f) = (v / unit, v % unit);
        if f == 0 {
            return int.to_string();
        }
        let digits = format!("{f:0width$}", width = prec as usize);
        format!("{int}.{}", digits.trim_end_matches('0'))
    }
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let body = if u < 1_000_000_000 {
        match u {
            0..=999 => format!("{u}ns"),
            1_000..=999_999 => format!("{}µs", frac(u, 3)),
            _ => format!("{}ms", frac(u, 6)),
        }
    } else {
        let secs = frac(u % 60_000_000_000, 9);
        let minutes = u / 60_000_000_000;
        match (minutes / 60, minutes % 60) {
            (0, 0) => format!("{secs}s"),
            (0, m) => format!("{m}m{secs}s"),
            (h, m) => format!("{h}h{m}m{secs}s"),
        }
    };
    format!("{sign}{body}")
}

/// Go's `%q` of an int: a single-quoted rune literal (`'\x03'`, `'A'`).
fn go_quote_rune(n: i64) -> String {
    let escaped = match n {
        7 => "\\a".to_string(),
        8 => "\\b".to_string(),
        9 => "\\t".to_string(),
        10 => "\\n".to_string(),
        11 => "\\v".to_string(),
        12 => "\\f".to_string(),
        13 => "\\r".to_string(),
        39 => "\\'".to_string(),
        92 => "\\\\".to_string(),
        0..=31 | 127 => format!("\\x{n:02x}"),
        32..=126 => char::from(n as u8).to_string(),
        _ => match u32::try_from(n).ok().and_then(char::from_u32) {
            Some(c) if !c.is_control() => c.to_string(),
            Some(_) if n <= 0xffff => format!("\\u{n:04x}"),
            Some(_) => format!("\\U{n:08x}"),
            None => "\\ufffd".to_string(),
        },
    };
    format!("'{escaped}'")
}

/// EXPOSE `80`, `80/tcp`, `8000-8010/udp` → `"80/tcp"` keys (ranges expanded).
fn expose_keys(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for container port: {ports}"
        ));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats_of_the_healthcheck_history() {
        let cases = [
            (0, "0s"),
            (3, "3ns"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_250_000_000, "1h2m3.25s"),
            (-2_000_000_000, "-2s"),
        ];
        for (ns, want) in cases {
            assert_eq!(go_duration(ns), want, "{ns}ns");
        }
        assert_eq!(go_quote_rune(0), "'\\x00'");
        assert_eq!(go_quote_rune(3), "'\\x03'");
        assert_eq!(go_quote_rune(10), "'\\n'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(39), "'\\''");
    }

    struct Images;

    impl ImageResolver for Images {
        fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
            if reference.contains("missing") {
                return Err(format!("pull access denied for {reference}"));
            }
            let mut config = ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                ..Default::default()
            };
            config.config = Some(ContainerConfig {
                env: Some(vec!["PATH=/bin".into(), "FROM_IMAGE=1".into()]),
                cmd: Some(vec!["/bin/sh".into()]),
                ..Default::default()
            });
            Ok(ResolvedImage {
                reference: format!("docker.io/library/{reference}"),
                manifest: Digest::sha256_of(reference.as_bytes()),
                config,
            })
        }
    }

    fn plan(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan, LowerError> {
        let df = forge_dockerfile::parse_dockerfile(text.as_bytes()).expect("valid Dockerfile");
        let opts = LowerOptions {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: target.map(str::to_string),
            ..Default::default()
        };
        lower(&df, &opts, &Images)
    }

    fn env(p: &Plan) -> Vec<String> {
        p.target()
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    fn last_exec(p: &Plan) -> Exec {
        match &p.graph.vertices[p.target().root].op {
            Op::Exec(e) => e.clone(),
            other => panic!("not an exec: {other:?}"),
        }
    }

    #[test]
    fn global_args_expand_from_and_stage_args_must_be_declared() {
        let p = plan(
            "ARG BASE=busybox\nARG V=1\nFROM $BASE\nRUN echo $V\nARG V\nRUN echo $V\n",
            &[],
            None,
        )
        .expect("lowers");
        match &p.graph.vertices[0].op {
            Op::Image { reference, .. } => assert_eq!(reference, "docker.io/library/busybox"),
            other => panic!("{other:?}"),
        }
        let exec = last_exec(&p);
        assert!(exec.env.contains(&"V=1".to_string()), "{:?}", exec.env);
        let steps = &p.target().steps;
        assert_eq!(steps[0].created_by, "RUN /bin/sh -c echo $V # buildkit");
        assert_eq!(
            steps[2].created_by,
            "RUN |1 V=1 /bin/sh -c echo $V # buildkit"
        );
    }

    #[test]
    fn build_args_override_defaults_and_env_beats_arg() {
        let p = plan(
            "FROM busybox\nARG A=default\nENV B=$A\nARG C=x\nENV C=env\nRUN true\n",
            &[("A", "cli")],
            None,
        )
        .expect("lowers");
        let e = env(&p);
        assert!(e.contains(&"B=cli".to_string()), "{e:?}");
        assert!(
            !e.iter().any(|kv| kv.starts_with("A=")),
            "args never reach the config: {e:?}"
        );
        let exec = last_exec(&p);
        assert!(
            exec.env.contains(&"C=env".to_string()) && !exec.env.contains(&"C=x".to_string()),
            "{:?}",
            exec.env
        );
        assert!(exec.env.contains(&"A=cli".to_string()));
    }

    #[test]
    fn a_later_arg_overrides_env_for_the_steps_but_not_the_config() {
        let p = plan(
            "FROM busybox\nARG X=arg\nENV X=env\nRUN echo $X\nARG X=again\nRUN echo $X\n",
            &[("X", "cli")],
            None,
        )
        .expect("lowers");
        let steps: Vec<&str> = p
            .target()
            .steps
            .iter()
            .map(|s| s.created_by.as_str())
            .collect();
        assert_eq!(steps[2], "RUN |1 X=env /bin/sh -c echo $X # buildkit");
        assert_eq!(steps[4], "RUN |1 X=cli /bin/sh -c echo $X # buildkit");
        assert!(last_exec(&p).env.contains(&"X=cli".to_string()));
        assert!(
            env(&p).contains(&"X=env".to_string()),
            "the config keeps ENV's value"
        );
    }

    #[test]
    fn env_expands_with_values_from_before_the_instruction() {
        let p = plan(
            "FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
            &[],
            None,
        )
        .expect("lowers");
        let e = env(&p);
        assert!(e.contains(&"def=hello".to_string()), "{e:?}");
        assert!(e.contains(&"ghi=bye".to_string()), "{e:?}");
        assert!(e.contains(&"FROM_IMAGE=1".to_string()));
    }

    #[test]
    fn only_needed_stages_are_lowered_and_forward_refs_work() {
        let text = "FROM busybox AS a\nRUN echo a\nFROM busybox AS unused\nRUN echo unused\nFROM busybox AS b\nCOPY --from=late /x /x\nFROM busybox AS late\nRUN echo late\n";
        let p = plan(text, &[], Some("b")).expect("lowers");
        assert!(p.stages[0].is_none() && p.stages[1].is_none());
        assert!(p.stages[2].is_some() && p.stages[3].is_some());
        let err = plan(
            "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
            &[],
            Some("a"),
        )
        .expect_err("cycle");
        assert!(err.message.contains("circular dependency"), "{err}");
        let err = plan("FROM busybox\n", &[], Some("nope")).expect_err("unknown target");
        assert_eq!(err.message, "target stage \"nope\" could not be found");
    }

    #[test]
    fn entrypoint_resets_inherited_cmd_and_shell_form_uses_shell() {
        let p = plan(
            "FROM busybox\nSHELL [\"/bin/ash\", \"-eo\"]\nENTRYPOINT run me\n",
            &[],
            None,
        )
        .expect("lowers");
        let c = p.target().config.config.clone().expect("config");
        assert_eq!(c.cmd, None);
        assert_eq!(
            c.entrypoint,
            Some(vec!["/bin/ash".into(), "-eo".into(), "run me".into()])
        );
        let p = plan("FROM busybox\nCMD [\"a\"]\nENTRYPOINT [\"b\"]\n", &[], None).expect("lowers");
        let c = p.target().config.config.clone().expect("config");
        assert_eq!(c.cmd, Some(vec!["a".into()]), "a CMD of this stage is kept");
    }

    #[test]
    fn workdir_is_relative_to_the_previous_one_and_copy_dest_to_workdir() {
        let p = plan(
            "FROM busybox\nWORKDIR /app\nWORKDIR sub/../src\nCOPY a.txt ./\n",
            &[],
            None,
        )
        .expect("lowers");
        let c = p.target().config.config.clone().expect("config");
        assert_eq!(c.working_dir.as_deref(), Some("/app/src"));
        match &p.graph.vertices[p.target().root].op {
            Op::Copy(c) => assert_eq!(c.dest, "/app/src/"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn digests_are_stable_and_change_from_the_edited_line_on() {
        let a = plan(
            "FROM busybox\nRUN echo 1\nRUN echo 2\nRUN echo 3\n",
            &[],
            None,
        )
        .expect("lowers");
        let b = plan(
            "FROM busybox\nRUN echo 1\nRUN echo two\nRUN echo 3\n",
            &[],
            None,
        )
        .expect("lowers");
        let digests = |p: &Plan| {
            p.graph
                .vertices
                .iter()
                .map(|v| v.digest.clone())
                .collect::<Vec<_>>()
        };
        let (da, db) = (digests(&a), digests(&b));
        assert_eq!(da[..2], db[..2]);
        assert_ne!(da[2], db[2]);
        assert_ne!(da[3], db[3], "a later step changes with its parent");
        assert_eq!(
            da,
            digests(
                &plan(
                    "FROM busybox\nRUN echo 1\nRUN echo 2\nRUN echo 3\n",
                    &[],
                    None
                )
                .expect("lowers")
            )
        );
    }

    #[test]
    fn onbuild_triggers_run_in_the_child_stage() {
        let p = plan(
            "FROM busybox AS parent\nONBUILD RUN echo triggered\nFROM parent\nRUN echo own\n",
            &[],
            None,
        )
        .expect("lowers");
        let steps: Vec<&str> = p
            .target()
            .steps
            .iter()
            .map(|s| s.created_by.as_str())
            .collect();
        assert_eq!(
            steps,
            [
                "RUN /bin/sh -c echo triggered # buildkit",
                "RUN /bin/sh -c echo own # buildkit"
            ]
        );
        assert_eq!(
            p.target()
                .config
                .config
                .as_ref()
                .and_then(|c| c.on_build.clone()),
            None
        );
    }

    #[test]
    fn expose_volume_and_unresolvable_images() {
        let p = plan(
            "FROM busybox\nARG P=8080\nEXPOSE 80 $P/udp 9000-9001\nVOLUME /data\n",
            &[],
            None,
        )
        .expect("lowers");
        let c = p.target().config.config.clone().expect("config");
        let ports: Vec<String> = c.exposed_ports.expect("ports").into_keys().collect();
        assert_eq!(ports, ["80/tcp", "8080/udp", "9000/tcp", "9001/tcp"]);
        assert!(c.volumes.expect("volumes").contains_key("/data"));
        let err = plan("FROM missing:1\n", &[], None).expect_err("unresolvable");
        assert_eq!(err.span.map(|s| s.start.line), Some(1));
    }
}
