//! BuildKit's build checks that need no build: what `docker build --check`
//! reports, computed from the parse tree and the typed instructions alone.
//!
//! BuildKit runs its rules in three places, and so does [`check`], in the same
//! order (the order only matters for warnings on one line; output is sorted
//! by line, as buildx prints it):
//!
//! 1. the parser's own findings (`NoEmptyContinuation`);
//! 2. rules run while instructions are typed (`instructions/parse.go`):
//!    `MaintainerDeprecated`, `StageNameCasing`, `FromAsCasing`,
//!    `InvalidDefinitionDescription`; then over all stages
//!    (`convert.go`): `ReservedStageName`, `DuplicateStageName`,
//!    `ConsistentInstructionCasing`, `InvalidDefaultArgInFrom`, and per FROM
//!    `UndefinedArgInFrom`, `RedundantTargetPlatform`,
//!    `FromPlatformFlagConstDisallowed`, `InvalidBaseImagePlatform`;
//! 3. rules run while each stage is dispatched, with the stage's ARG/ENV
//!    scope tracked as the build would: `UndefinedVar` (in every word an
//!    instruction expands), `LegacyKeyValueFormat`, `SecretsUsedInArgOrEnv`,
//!    `WorkdirRelativePath`, `JSONArgsRecommended`,
//!    `MultipleInstructionsDisallowed`, `CopyIgnoredFile`,
//!    `ExposeProtoCasing`, `ExposeInvalidFormat`.
//!
//! What a build knows and a check does not is a base image's config. Where a
//! rule needs it (the image's `Env` for `UndefinedVar`, its `Shell` for
//! `JSONArgsRecommended`, its platform for `InvalidBaseImagePlatform`) the
//! caller may pass it in [`CheckOptions::images`]. Without it a stage built
//! on a registry image has an unknown environment: there `UndefinedVar` only
//! reports near misses of names the Dockerfile defines (`$VERSON` when
//! `VERSION` is an ARG, `$PAHT` for `PATH`), not names the image may set
//! (`$GOPATH`); a stage on `scratch`, or on a stage that is, is checked as
//! BuildKit checks it. `InvalidBaseImagePlatform` needs the image's platform
//! and is not checked without it; no SHELL is assumed in images.
//!
//! The `# check=` directive (or the `BUILDKIT_DOCKERFILE_CHECK` build arg,
//! which replaces it) selects rules: `skip=Rule1,Rule2` or `skip=all`,
//! `experimental=Rule` or `experimental=all` (experimental rules,
//! `CopyIgnoredFile` and `InvalidDefinitionDescription`, only run when asked
//! for), and `error=true` ([`CheckReport::error_on_warning`]).
//!
//! The `.dockerignore` matcher here follows `moby/patternmatcher` (Go's
//! `filepath.Match` syntax plus `**`, `!` exceptions, last match wins). It is
//! private to this module for now; the build's context module will own it.

use crate::ast::{Ast, Node};
use crate::diagnostic::Diagnostic;
use crate::dump::go_quote;
use crate::instructions::{Dockerfile, Instruction, InstructionKind, KeyValue, Mount, Stage};
use crate::shell::{Expansion, Lexer};
use crate::span::Span;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One build check: BuildKit's `linter.LinterRule` without its formatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    /// The documentation page; empty for the one rule BuildKit gives none.
    pub url: &'static str,
    /// Runs only when `# check=experimental=` names it (or `all`).
    pub experimental: bool,
}

macro_rules! rules {
    ($($id:ident = $name:literal, $desc:literal, $url:literal, $exp:literal;)*) => {
        $(
            #[doc = $desc]
            pub const $id: Rule = Rule { name: $name, description: $desc, url: $url, experimental: $exp };
        )*
        /// Every rule, in BuildKit's `ruleset.go` order.
        pub const RULES: &[Rule] = &[$($id),*];
    };
}

rules! {
    STAGE_NAME_CASING = "StageNameCasing", "Stage names should be lowercase",
        "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/", false;
    FROM_AS_CASING = "FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword",
        "https://docs.docker.com/go/dockerfile/rule/from-as-casing/", false;
    NO_EMPTY_CONTINUATION = "NoEmptyContinuation", "Empty continuation lines will become errors in a future release",
        "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/", false;
    CONSISTENT_INSTRUCTION_CASING = "ConsistentInstructionCasing", "All commands within the Dockerfile should use the same casing (either upper or lower)",
        "https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/", false;
    DUPLICATE_STAGE_NAME = "DuplicateStageName", "Stage names should be unique",
        "https://docs.docker.com/go/dockerfile/rule/duplicate-stage-name/", false;
    RESERVED_STAGE_NAME = "ReservedStageName", "Reserved words should not be used as stage names",
        "https://docs.docker.com/go/dockerfile/rule/reserved-stage-name/", false;
    JSON_ARGS_RECOMMENDED = "JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/", false;
    MAINTAINER_DEPRECATED = "MaintainerDeprecated", "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/", false;
    UNDEFINED_ARG_IN_FROM = "UndefinedArgInFrom", "FROM command must use declared ARGs",
        "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/", false;
    WORKDIR_RELATIVE_PATH = "WorkdirRelativePath", "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
        "https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/", false;
    UNDEFINED_VAR = "UndefinedVar", "Variables should be defined before their use",
        "https://docs.docker.com/go/dockerfile/rule/undefined-var/", false;
    MULTIPLE_INSTRUCTIONS_DISALLOWED = "MultipleInstructionsDisallowed", "Multiple instructions of the same type should not be used in the same stage",
        "https://docs.docker.com/go/dockerfile/rule/multiple-instructions-disallowed/", false;
    LEGACY_KEY_VALUE_FORMAT = "LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used",
        "https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/", false;
    INVALID_BASE_IMAGE_PLATFORM = "InvalidBaseImagePlatform", "Base image platform does not match expected target platform",
        "", false;
    REDUNDANT_TARGET_PLATFORM = "RedundantTargetPlatform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
        "https://docs.docker.com/go/dockerfile/rule/redundant-target-platform/", false;
    SECRETS_USED_IN_ARG_OR_ENV = "SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands",
        "https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/", false;
    INVALID_DEFAULT_ARG_IN_FROM = "InvalidDefaultArgInFrom", "Default value for global ARG results in an empty or invalid base image name",
        "https://docs.docker.com/go/dockerfile/rule/invalid-default-arg-in-from/", false;
    FROM_PLATFORM_FLAG_CONST_DISALLOWED = "FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value",
        "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/", false;
    COPY_IGNORED_FILE = "CopyIgnoredFile", "Attempting to Copy file that is excluded by .dockerignore",
        "https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/", true;
    INVALID_DEFINITION_DESCRIPTION = "InvalidDefinitionDescription", "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
        "https://docs.docker.com/go/dockerfile/rule/invalid-definition-description/", true;
    EXPOSE_PROTO_CASING = "ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase",
        "https://docs.docker.com/go/dockerfile/rule/expose-proto-casing/", false;
    EXPOSE_INVALID_FORMAT = "ExposeInvalidFormat", "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
        "https://docs.docker.com/go/dockerfile/rule/expose-invalid-format/", false;
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule's name, e.g. `FromAsCasing`.
    pub rule: &'static str,
    /// The rule's one-line description.
    pub description: &'static str,
    /// The rule's documentation page (may be empty).
    pub url: &'static str,
    /// The instruction the warning is about (for `MultipleInstructionsDisallowed`,
    /// the earlier instruction, the one that will be ignored).
    pub span: Span,
    /// BuildKit's message for this occurrence.
    pub message: String,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Sorted by line; warnings on one line keep the order BuildKit finds them in.
    pub warnings: Vec<Warning>,
    /// `# check=error=true`: warnings fail the build.
    pub error_on_warning: bool,
}

impl CheckReport {
    /// BuildKit's error when `error=true` and there are warnings:
    /// `lint violation found for rules: A, B` (rule names sorted and unique).
    pub fn error(&self) -> Option<String> {
        if !self.error_on_warning || self.warnings.is_empty() {
            return None;
        }
        let rules: BTreeSet<&str> = self.warnings.iter().map(|w| w.rule).collect();
        Some(format!(
            "lint violation found for rules: {}",
            rules.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// What the base image of a stage looks like, when the caller knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The config's `Env`, in order.
    pub env: Vec<(String, String)>,
    /// The config's `Shell` (empty when unset).
    pub shell: Vec<String>,
    /// `os/arch[/variant]` of the image, when known.
    pub platform: Option<String>,
}

/// Looks up a base image by the name written in FROM (variables expanded).
pub type ImageLookup<'a> = &'a dyn Fn(&str) -> Option<ImageInfo>;

/// Inputs of a check besides the Dockerfile itself. All optional.
#[derive(Default)]
pub struct CheckOptions<'a> {
    /// `--build-arg` values. `BUILDKIT_DOCKERFILE_CHECK` among them replaces the
    /// `# check=` directive, as in BuildKit.
    pub build_args: BTreeMap<String, String>,
    /// The context's `.dockerignore` patterns, as [`crate::dockerignore::read`] gives
    /// them.
    pub dockerignore: Vec<String>,
    /// The target platform (`--platform`); the host's when unset.
    pub platform: Option<String>,
    /// Base image configs, when the caller has them.
    pub images: Option<ImageLookup<'a>>,
}

/// A `# check=` (or `BUILDKIT_DOCKERFILE_CHECK`) value that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("failed to parse check options: {message}")]
    Directive { message: String, span: Span },
    #[error("failed to parse build-arg:BUILDKIT_DOCKERFILE_CHECK: {message}")]
    BuildArg { message: String },
}

impl From<CheckError> for Diagnostic {
    fn from(e: CheckError) -> Self {
        let span = match &e {
            CheckError::Directive { span, .. } => *span,
            CheckError::BuildArg { .. } => Span::default(),
        };
        Diagnostic::error(span, e.to_string())
    }
}

/// The rule selection of `# check=`: BuildKit's `linter.Config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub experimental_all: bool,
    pub experimental: Vec<String>,
    pub error: bool,
}

impl LintConfig {
    /// Parses `skip=A,B;experimental=C;error=true` as BuildKit's
    /// `ParseLintOptions`; the error text is BuildKit's.
    pub fn parse(value: &str) -> Result<LintConfig, String> {
        let value = value.trim();
        let mut config = LintConfig::default();
        if value.is_empty() {
            return Ok(config);
        }
        // strings.SplitN(s, ";", 3): a fourth part stays inside the third.
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {}", go_quote(part)));
            };
            let list =
                |v: &str| -> Vec<String> { v.split(',').map(|r| r.trim().to_string()).collect() };
            match k.trim() {
                "skip" => match v.trim() {
                    "all" => config.skip_all = true,
                    v => config.skip = list(v),
                },
                "experimental" => match v.trim() {
                    "all" => config.experimental_all = true,
                    v => config.experimental = list(v),
                },
                "error" => {
                    config.error = go_parse_bool(v.trim()).ok_or_else(|| {
                        format!(
                            "failed to parse check option {}: strconv.ParseBool: parsing {}: invalid syntax",
                            go_quote(part),
                            go_quote(v.trim())
                        )
                    })?;
                }
                k => return Err(format!("invalid check option {}", go_quote(k))),
            }
        }
        Ok(config)
    }

    /// Whether `rule` runs under this configuration (BuildKit's `Linter.Run`:
    /// `skip` does not reach experimental rules, which need `experimental`).
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.iter().any(|r| r == rule.name)
        } else {
            !(self.skip_all || self.skip.iter().any(|r| r == rule.name))
        }
    }
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Runs every enabled build check over a parsed and typed Dockerfile. `ast`
/// and `dockerfile` must be the same file (`dockerfile = lower(ast)`).
pub fn check(
    ast: &Ast,
    dockerfile: &Dockerfile,
    opts: &CheckOptions<'_>,
) -> Result<CheckReport, CheckError> {
    let config = match opts.build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        Some(v) => LintConfig::parse(v).map_err(|message| CheckError::BuildArg { message })?,
        None => match ast.directives.iter().find(|d| d.name == "check") {
            Some(d) => LintConfig::parse(&d.value).map_err(|message| CheckError::Directive {
                message,
                span: d.span,
            })?,
            None => LintConfig::default(),
        },
    };
    let mut checker = Checker {
        lint: Linter {
            config,
            warnings: Vec::new(),
        },
        opts,
        lexer: Lexer::new(dockerfile.escape),
        ignore: crate::dockerignore::Matcher::new(&opts.dockerignore)
            .ok()
            .filter(|m| !m.is_empty()),
    };
    checker.run(ast, dockerfile);
    let Linter {
        config,
        mut warnings,
    } = checker.lint;
    // buildx sorts by line; a stable sort keeps BuildKit's order within a line.
    warnings.sort_by_key(|w| w.span.start.line);
    Ok(CheckReport {
        warnings,
        error_on_warning: config.error,
    })
}

struct Linter {
    config: LintConfig,
    warnings: Vec<Warning>,
}

impl Linter {
    fn run(&mut self, rule: &Rule, span: Span, message: String) {
        if self.config.enabled(rule) {
            self.warnings.push(Warning {
                rule: rule.name,
                description: rule.description,
                url: rule.url,
                span,
                message,
            });
        }
    }
}

/// Variables set by SBOM scanning; never put in the environment, never reported.
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// `system.DefaultPathEnv("linux")`: the PATH a stage gets when its image has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An ordered environment: a later `set` of a name replaces its value in place.
#[derive(Debug, Clone, Default)]
struct Env(Vec<(String, String)>);

impl Env {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl crate::shell::ShellEnv for Env {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self, name)
    }
}

/// A stage's dispatch state: what BuildKit's `dispatchState` holds that the
/// checks read.
#[derive(Debug, Clone, Default)]
struct StageState {
    env: Env,
    /// False when the stage descends from an image whose `Env` is unknown.
    env_known: bool,
    /// Names of the ARGs declared so far (`d.buildArgs`), with or without value.
    declared_args: Vec<String>,
    /// A SHELL is set (by the image or an instruction).
    shell_set: bool,
    /// A WORKDIR was set by this Dockerfile in this stage or an ancestor stage.
    workdir_set: bool,
}

/// Spans of the last CMD, ENTRYPOINT and HEALTHCHECK in a stage.
#[derive(Default)]
struct Trackers {
    cmd: Option<Span>,
    entrypoint: Option<Span>,
    healthcheck: Option<Span>,
}

struct Checker<'o, 'a> {
    lint: Linter,
    opts: &'o CheckOptions<'a>,
    lexer: Lexer,
    ignore: Option<crate::dockerignore::Matcher>,
}

impl Checker<'_, '_> {
    fn run(&mut self, ast: &Ast, df: &Dockerfile) {
        // 1. The parser's warnings.
        for w in &ast.warnings {
            if w.message.starts_with("Empty continuation line") {
                // BuildKit locates it on the instruction's last line only.
                self.lint.run(
                    &NO_EMPTY_CONTINUATION,
                    Span::at(w.span.end),
                    "Empty continuation line".into(),
                );
            }
        }

        // 2. Rules run while typing instructions, in file order. The typed
        // instructions come in the same order as the nodes they were made of.
        let typed: Vec<&Instruction> = df
            .meta_args
            .iter()
            .chain(
                df.stages
                    .iter()
                    .flat_map(|s| std::iter::once(&s.from).chain(s.instructions.iter())),
            )
            .collect();
        if typed.len() == ast.nodes.len() {
            for (node, inst) in ast.nodes.iter().zip(&typed) {
                self.parse_time(node, inst);
            }
        }

        // 3. Stage names and instruction casing.
        self.stage_names(&df.stages);
        self.command_casing(&df.stages);

        // 4. Global ARGs and the FROM lines.
        let platforms = Platforms::new(self.opts.platform.as_deref());
        let target_name = df
            .stages
            .last()
            .and_then(|s| s.name())
            .map(|n| n.value.clone())
            .unwrap_or_default();
        let default_args = platforms.default_args(&self.opts.build_args, &target_name);
        self.invalid_default_args(df, &default_args);
        let (global, all_args) = self.meta_args(default_args, df, &self.opts.build_args);
        let from_arg_keys: BTreeSet<String> = all_args
            .iter()
            .cloned()
            .chain(global.keys().map(str::to_string))
            .collect();

        // 5. Dispatch, stage by stage.
        let mut states: Vec<StageState> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (index, stage) in df.stages.iter().enumerate() {
            let base_name = self.check_from(stage, &global, &from_arg_keys, &platforms);
            let base = by_name.get(&base_name).copied();
            let mut state = match base {
                Some(b) => states[b].clone(),
                None if base_name == "scratch" => StageState {
                    env_known: true,
                    ..StageState::default()
                },
                None => self.image_state(stage, &base_name, &global, &platforms),
            };
            if state.env.get("PATH").is_none() {
                state.env.set("PATH", DEFAULT_PATH.to_string());
            }
            // ONBUILD triggers of a base stage run first, located at this FROM.
            let triggers: Vec<&Instruction> = match base {
                Some(b) => df.stages[b]
                    .instructions
                    .iter()
                    .filter_map(|i| match &i.kind {
                        InstructionKind::Onbuild(o) => Some(o.trigger.as_ref()),
                        _ => None,
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut trackers = Trackers::default();
            for trigger in triggers {
                self.dispatch(&mut state, &mut trackers, trigger, stage.from.span, &global);
            }
            for inst in &stage.instructions {
                self.dispatch(&mut state, &mut trackers, inst, inst.span, &global);
            }
            states.push(state);
            if let Some(name) = stage.name() {
                by_name.insert(name.value.clone(), index);
            }
        }
    }

    /// Rules BuildKit runs in `ParseInstructionWithLinter`.
    fn parse_time(&mut self, node: &Node, inst: &Instruction) {
        match &inst.kind {
            InstructionKind::Maintainer(_) => self.lint.run(
                &MAINTAINER_DEPRECATED,
                inst.span,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            InstructionKind::From(from) => {
                let args = &node.args;
                if args.len() == 3 {
                    let name = &args[2].value;
                    if *name != name.to_lowercase() {
                        self.lint.run(
                            &STAGE_NAME_CASING,
                            inst.span,
                            format!("Stage name '{name}' should be lowercase"),
                        );
                    }
                    let from = &node.keyword.value;
                    let as_kw = &args[1].value;
                    let from_lower = *from == from.to_lowercase();
                    let from_upper = *from == from.to_uppercase();
                    let mismatch = if from_lower {
                        *as_kw != as_kw.to_lowercase()
                    } else if from_upper {
                        *as_kw != as_kw.to_uppercase()
                    } else {
                        false
                    };
                    if mismatch {
                        self.lint.run(
                            &FROM_AS_CASING,
                            inst.span,
                            format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                        );
                    }
                }
                if let Some(name) = &from.name {
                    self.definition_description(
                        "FROM",
                        &[name.value.as_str()],
                        &node.comments,
                        inst.span,
                    );
                }
            }
            InstructionKind::Arg(defs) => {
                let keys: Vec<&str> = defs.iter().map(|d| d.name.value.as_str()).collect();
                self.definition_description("ARG", &keys, &node.comments, inst.span);
            }
            _ => {}
        }
    }

    fn definition_description(
        &mut self,
        instruction: &str,
        keys: &[&str],
        comments: &[String],
        span: Span,
    ) {
        let (Some(last), Some(first_key)) = (comments.last(), keys.first()) else {
            return;
        };
        let first_word = last.split(' ').next().unwrap_or_default();
        if keys.contains(&first_word) {
            return;
        }
        let example = if keys.len() > 1 {
            "<arg_key>"
        } else {
            first_key
        };
        self.lint.run(
            &INVALID_DEFINITION_DESCRIPTION,
            span,
            format!(
                "Comment for {instruction} should follow the format: `# {example} <description>`"
            ),
        );
    }

    /// `validateStageNames`.
    fn stage_names(&mut self, stages: &[Stage]) {
        let mut seen = BTreeSet::new();
        for stage in stages {
            let Some(name) = stage.name() else { continue };
            let name = name.value.as_str();
            if name == "context" || name == "scratch" {
                self.lint.run(
                    &RESERVED_STAGE_NAME,
                    stage.from.span,
                    format!(
                        "Stage name should not use the same name as reserved stage {}",
                        go_quote(name)
                    ),
                );
            }
            if !seen.insert(name) {
                self.lint.run(
                    &DUPLICATE_STAGE_NAME,
                    stage.from.span,
                    format!(
                        "Duplicate stage name {}, stage names should be unique",
                        go_quote(name)
                    ),
                );
            }
        }
    }

    /// `validateCommandCasing`: the keywords of the stages (not the global
    /// ARGs) vote for a casing; those that differ from the majority, or mix
    /// cases, are reported.
    fn command_casing(&mut self, stages: &[Stage]) {
        let all = || {
            stages
                .iter()
                .flat_map(|s| std::iter::once(&s.from).chain(s.instructions.iter()))
        };
        let (mut lower, mut upper) = (0, 0);
        for inst in all() {
            let kw = &inst.keyword.value;
            if *kw == kw.to_lowercase() {
                lower += 1;
            } else if *kw == kw.to_uppercase() {
                upper += 1;
            }
        }
        let majority_lower = lower > upper;
        let mut found = Vec::new();
        for inst in all() {
            let kw = &inst.keyword.value;
            let casing = if majority_lower && *kw != kw.to_lowercase() {
                "lowercase"
            } else if !majority_lower && *kw != kw.to_uppercase() {
                "uppercase"
            } else {
                continue;
            };
            found.push((
                inst.span,
                format!("Command '{kw}' should match the case of the command majority ({casing})"),
            ));
        }
        for (span, msg) in found {
            self.lint.run(&CONSISTENT_INSTRUCTION_CASING, span, msg);
        }
    }

    /// `buildMetaArgs`: the global scope after the ARGs before the first FROM.
    /// Returns it and the names of all those ARGs (with or without a value).
    fn meta_args(
        &self,
        mut env: Env,
        df: &Dockerfile,
        build_args: &BTreeMap<String, String>,
    ) -> (Env, Vec<String>) {
        let mut names = Vec::new();
        for inst in &df.meta_args {
            let InstructionKind::Arg(defs) = &inst.kind else {
                continue;
            };
            for def in defs {
                let key = &def.name.value;
                let value = match build_args.get(key) {
                    Some(v) => Some(v.clone()),
                    None => def.default.as_ref().map(|d| {
                        self.lexer
                            .process_word(&d.value, &env)
                            .unwrap_or_else(|_| d.value.clone())
                    }),
                };
                if let Some(v) = value {
                    env.set(key, v);
                }
                names.push(key.clone());
            }
        }
        (env, names)
    }

    /// `validateBaseImagesWithDefaultArgs`: with only the ARG defaults (no
    /// build args), every FROM must still name a valid image.
    fn invalid_default_args(&mut self, df: &Dockerfile, default_args: &Env) {
        let (env, _) = self.meta_args(default_args.clone(), df, &BTreeMap::new());
        for stage in &df.stages {
            let raw = &stage.from().image.value;
            let Ok(result) = self.lexer.process_word(raw, &env) else {
                // BuildKit abandons the check; the build fails later anyway.
                return;
            };
            if !valid_normalized_reference(&result) {
                self.lint.run(
                    &INVALID_DEFAULT_ARG_IN_FROM,
                    stage.from.span,
                    format!(
                        "Default value for ARG {raw} results in empty or invalid base image name"
                    ),
                );
            }
        }
    }

    /// The checks on a FROM line; returns the base name, expanded.
    fn check_from(
        &mut self,
        stage: &Stage,
        global: &Env,
        arg_keys: &BTreeSet<String>,
        platforms: &Platforms,
    ) -> String {
        let from = stage.from();
        let span = stage.from.span;
        let name_match = self.expand(&from.image.value, global);
        self.undefined_from_args(&name_match.unmatched, arg_keys, span);
        let base_name = name_match.value;
        if let Some(platform) = &from.platform {
            let plat = self.expand(&platform.value, global);
            self.undefined_from_args(&plat.unmatched, arg_keys, span);
            // RedundantTargetPlatform: the value is exactly $TARGETPLATFORM.
            if plat.matched.len() == 1
                && plat.unmatched.is_empty()
                && plat.matched.contains("TARGETPLATFORM")
                && global.get("TARGETPLATFORM") == Some(plat.value.as_str())
            {
                self.lint.run(
                    &REDUNDANT_TARGET_PLATFORM,
                    span,
                    format!(
                        "Setting platform to predefined {} in FROM is redundant as this is the default behavior",
                        platform.value
                    ),
                );
            }
            // FromPlatformFlagConstDisallowed: no variable at all, and the
            // stage name does not say which platform it is for.
            if plat.matched.is_empty() && plat.unmatched.is_empty() {
                if let Some(p) = Platform::parse(&plat.value, platforms.host()) {
                    let name = stage.name().map(|n| n.value.as_str()).unwrap_or_default();
                    if !name.contains(&p.os) && !name.contains(&p.arch) {
                        self.lint.run(
                            &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                            span,
                            format!(
                                "FROM --platform flag should not use constant value {}",
                                go_quote(&plat.value)
                            ),
                        );
                    }
                }
            }
        }
        base_name
    }

    fn undefined_from_args(
        &mut self,
        unmatched: &BTreeSet<String>,
        arg_keys: &BTreeSet<String>,
        span: Span,
    ) {
        for arg in unmatched {
            if arg_keys.contains(arg) {
                continue;
            }
            let mut msg = format!("FROM argument '{arg}' is not declared");
            if let Some(s) = crate::suggest::search(arg, arg_keys.iter().map(String::as_str), true)
            {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            self.lint.run(&UNDEFINED_ARG_IN_FROM, span, msg);
        }
    }

    /// The state of a stage built on a registry image.
    fn image_state(
        &mut self,
        stage: &Stage,
        base_name: &str,
        global: &Env,
        platforms: &Platforms,
    ) -> StageState {
        let Some(info) = self.opts.images.and_then(|lookup| lookup(base_name)) else {
            return StageState::default();
        };
        if let Some(actual) = info
            .platform
            .as_deref()
            .and_then(|p| Platform::parse(p, platforms.host()))
        {
            let expected = stage
                .from()
                .platform
                .as_ref()
                .and_then(|p| self.lexer.process_word(&p.value, global).ok())
                .and_then(|p| Platform::parse(&p, platforms.host()))
                .unwrap_or_else(|| platforms.target.clone());
            if expected.os != actual.os || expected.arch != actual.arch {
                self.lint.run(
                    &INVALID_BASE_IMAGE_PLATFORM,
                    stage.from.span,
                    format!(
                        "Base image {base_name} was pulled with platform {}, expected {} for current build",
                        go_quote(&actual.format()),
                        go_quote(&expected.format())
                    ),
                );
            }
        }
        let mut env = Env::default();
        for (k, v) in info.env {
            env.set(&k, v);
        }
        StageState {
            env,
            env_known: true,
            shell_set: !info.shell.is_empty(),
            ..StageState::default()
        }
    }

    /// Expands a word, as BuildKit's `ProcessWordWithMatches`; a word that
    /// cannot be expanded counts as itself with no variables (the build
    /// reports that error, not the check).
    fn expand(&self, word: &str, env: &Env) -> Expansion {
        self.lexer
            .process_word_with_matches(word, env)
            .unwrap_or_else(|_| Expansion {
                value: word.to_string(),
                ..Expansion::default()
            })
    }

    /// Expands one word an instruction expands, reporting `UndefinedVar`.
    fn expand_reporting(
        &mut self,
        lexer: Lexer,
        word: &str,
        state: &StageState,
        span: Span,
    ) -> String {
        let exp = lexer
            .process_word_with_matches(word, &state.env)
            .unwrap_or_else(|_| Expansion {
                value: word.to_string(),
                ..Expansion::default()
            });
        self.report_unmatched(&exp.unmatched, state, span);
        exp.value
    }

    /// `reportUnmatchedVariables`. In a stage whose base image environment is
    /// unknown, a name is only reported when it is a near miss of a known
    /// one (a typo: BuildKit would suggest the fix); any other name may come
    /// from the image, and BuildKit, which has the image config, would stay
    /// silent about it.
    fn report_unmatched(&mut self, unmatched: &BTreeSet<String>, state: &StageState, span: Span) {
        for var in unmatched {
            if state.declared_args.iter().any(|a| a == var) || NON_ENV_ARGS.contains(&var.as_str())
            {
                continue;
            }
            let suggestion = crate::suggest::search(var, state.env.keys(), true);
            if !state.env_known && suggestion.is_none() {
                continue;
            }
            let mut msg = format!("Usage of undefined variable '${var}'");
            if let Some(s) = suggestion {
                msg.push_str(&format!(" (did you mean ${s}?)"));
            }
            self.lint.run(&UNDEFINED_VAR, span, msg);
        }
    }

    /// One instruction of a stage, as BuildKit's `dispatch`: first the words it
    /// expands, then its own rules, then its effect on the stage's state.
    fn dispatch(
        &mut self,
        state: &mut StageState,
        trackers: &mut Trackers,
        inst: &Instruction,
        span: Span,
        global: &Env,
    ) {
        let lexer = self.lexer;
        let name = inst.keyword.value.as_str();
        match &inst.kind {
            InstructionKind::Env(pairs) => {
                let expanded = self.expand_pairs(pairs, state, span);
                for (kv, (key, value)) in pairs.iter().zip(expanded) {
                    if kv.legacy {
                        self.legacy_key_value(name, span);
                    }
                    self.secret_key("ENV", &key, span);
                    state.env.set(&key, value);
                }
            }
            InstructionKind::Label(pairs) => {
                let _ = self.expand_pairs(pairs, state, span);
                for kv in pairs {
                    if kv.legacy {
                        self.legacy_key_value(name, span);
                    }
                }
            }
            InstructionKind::Run(run) => {
                // Mount values are expanded (BuildKit's `setMountState`).
                for mount in &run.mounts {
                    let unmatched = RefCell::new(BTreeSet::new());
                    let env = &state.env;
                    let expander = |word: &str| -> Result<String, String> {
                        match lexer.process_word_with_matches(word, env) {
                            Ok(exp) => {
                                unmatched.borrow_mut().extend(exp.unmatched);
                                Ok(exp.value)
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    };
                    let _ = Mount::parse(&mount.value.raw, Some(&expander));
                    let unmatched = unmatched.into_inner();
                    self.report_unmatched(&unmatched, state, span);
                }
            }
            InstructionKind::Workdir(path) => {
                let path = self.expand_reporting(lexer, &path.value, state, span);
                if !state.workdir_set && !path.starts_with('/') {
                    self.lint.run(
                        &WORKDIR_RELATIVE_PATH,
                        span,
                        format!(
                            "Relative workdir {} can have unexpected results if the base image changes",
                            go_quote(&path)
                        ),
                    );
                }
                state.workdir_set = true;
            }
            InstructionKind::Add(add) => {
                let s = &add.sources;
                for flag in [&s.chown, &add.checksum].into_iter().flatten() {
                    self.expand_reporting(lexer, &flag.value, state, span);
                }
                let paths = self.expand_sources(s, state, span);
                for src in &paths {
                    self.ignored_source("Add", src, span);
                }
            }
            InstructionKind::Copy(copy) => {
                let s = &copy.sources;
                if let Some(chown) = &s.chown {
                    self.expand_reporting(lexer, &chown.value, state, span);
                }
                let paths = self.expand_sources(s, state, span);
                if copy.from.is_none() {
                    for src in &paths {
                        self.ignored_source("Copy", src, span);
                    }
                }
            }
            InstructionKind::Cmd(cmd) => {
                self.used_once(name, &mut trackers.cmd, span);
                if !cmd.json {
                    self.json_args(name, state, span);
                }
            }
            InstructionKind::Entrypoint(cmd) => {
                self.used_once(name, &mut trackers.entrypoint, span);
                if !cmd.json {
                    self.json_args(name, state, span);
                }
            }
            InstructionKind::Healthcheck(_) => {
                self.used_once(name, &mut trackers.healthcheck, span);
            }
            InstructionKind::Expose(ports) => {
                // EXPOSE expands without reporting (BuildKit's `dispatchExpose`).
                for port in ports {
                    let words = lexer
                        .process_words(&port.value, &state.env)
                        .unwrap_or_else(|_| vec![port.value.clone()]);
                    for raw in words {
                        self.expose_port(&raw, span);
                    }
                }
            }
            InstructionKind::User(w) | InstructionKind::Stopsignal(w) => {
                self.expand_reporting(lexer, &w.value, state, span);
            }
            InstructionKind::Volume(v) => {
                for p in &v.paths {
                    self.expand_reporting(lexer, &p.value, state, span);
                }
            }
            InstructionKind::Shell(_) => state.shell_set = true,
            InstructionKind::Arg(defs) => {
                for def in defs {
                    let key = def.name.value.as_str();
                    self.secret_key("ARG", key, span);
                    let value = match self.opts.build_args.get(key) {
                        Some(v) => Some(v.clone()),
                        None => match &def.default {
                            Some(d) => Some(self.expand_reporting(lexer, &d.value, state, span)),
                            // Declared without a default: the global value, if any.
                            None => global.get(key).map(str::to_string),
                        },
                    };
                    if let Some(v) = value {
                        if !NON_ENV_ARGS.contains(&key) {
                            state.env.set(key, v);
                        }
                    }
                    state.declared_args.push(key.to_string());
                }
            }
            InstructionKind::Maintainer(_)
            | InstructionKind::Onbuild(_)
            | InstructionKind::From(_) => {}
        }
    }

    fn expand_pairs(
        &mut self,
        pairs: &[KeyValue],
        state: &StageState,
        span: Span,
    ) -> Vec<(String, String)> {
        let lexer = self.lexer;
        pairs
            .iter()
            .map(|kv| {
                let k = self.expand_reporting(lexer, &kv.key.value, state, span);
                let v = self.expand_reporting(lexer, &kv.value.value, state, span);
                (k, v)
            })
            .collect()
    }

    /// COPY/ADD sources and destination, then heredoc bodies that expand
    /// (`ExpandRaw`: a `\` lexer that leaves quotes alone). Returns the
    /// expanded source paths.
    fn expand_sources(
        &mut self,
        s: &crate::instructions::Sources,
        state: &StageState,
        span: Span,
    ) -> Vec<String> {
        let lexer = self.lexer;
        let paths: Vec<String> = s
            .paths
            .iter()
            .map(|p| self.expand_reporting(lexer, &p.value, state, span))
            .collect();
        self.expand_reporting(lexer, &s.dest.value, state, span);
        let mut raw = Lexer::new('\\');
        raw.skip_process_quotes = true;
        for h in s.heredocs.iter().filter(|h| h.expand) {
            self.expand_reporting(raw, &h.body(), state, span);
        }
        paths
    }

    fn legacy_key_value(&mut self, name: &str, span: Span) {
        self.lint.run(
            &LEGACY_KEY_VALUE_FORMAT,
            span,
            format!(
                "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
            ),
        );
    }

    /// `validateNoSecretKey`: a key with a word (between `_`s) such as `KEY`,
    /// `TOKEN` or `PASSWORD`, unless another word is `PUBLIC`.
    fn secret_key(&mut self, instruction: &str, key: &str, span: Span) {
        const DENY: [&str; 10] = [
            "apikey",
            "auth",
            "credential",
            "credentials",
            "key",
            "password",
            "pword",
            "passwd",
            "secret",
            "token",
        ];
        let words: Vec<String> = key.split('_').map(str::to_lowercase).collect();
        let denied = words.iter().any(|w| DENY.contains(&w.as_str()));
        let allowed = words.iter().any(|w| w == "public");
        if denied && !allowed {
            self.lint.run(
                &SECRETS_USED_IN_ARG_OR_ENV,
                span,
                format!(
                    "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
                    go_quote(key)
                ),
            );
        }
    }

    /// `validateUsedOnce`: the earlier instruction is the one reported.
    fn used_once(&mut self, name: &str, last: &mut Option<Span>, span: Span) {
        if let Some(prev) = *last {
            self.lint.run(
                &MULTIPLE_INSTRUCTIONS_DISALLOWED,
                prev,
                format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
            );
        }
        *last = Some(span);
    }

    /// Shell-form CMD/ENTRYPOINT, unless a SHELL is set for the stage.
    fn json_args(&mut self, name: &str, state: &StageState, span: Span) {
        if !state.shell_set {
            self.lint.run(
                &JSON_ARGS_RECOMMENDED,
                span,
                format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
            );
        }
    }

    /// `validateCopySourcePath`: the source as written (expanded, not cleaned)
    /// against the `.dockerignore` patterns.
    fn ignored_source(&mut self, cmd: &str, src: &str, span: Span) {
        let remote = src.starts_with("http://")
            || src.starts_with("https://")
            || src.starts_with("git@")
            || src.starts_with("git://")
            || src.starts_with("ssh://");
        if remote {
            return;
        }
        let Some(matcher) = &self.ignore else { return };
        if matcher.matches(src) {
            self.lint.run(
                &COPY_IGNORED_FILE,
                span,
                format!(
                    "Attempting to {cmd} file {} that is excluded by .dockerignore",
                    go_quote(src)
                ),
            );
        }
    }

    /// The port checks of BuildKit's `parsePort`.
    fn expose_port(&mut self, raw: &str, span: Span) {
        let parts: Vec<&str> = raw.split(':').collect();
        let (ip, host_port, container) = match parts.len() {
            1 => ("".to_string(), "", parts[0]),
            2 => ("".to_string(), parts[0], parts[1]),
            3 => (parts[0].to_string(), parts[1], parts[2]),
            n => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
        };
        let proto_parts: Vec<&str> = container.split('/').collect();
        if proto_parts[0].is_empty() {
            // An invalid port: the build reports it.
            return;
        }
        let proto = match proto_parts.get(1) {
            None | Some(&"") => "tcp",
            Some(p) => p,
        };
        if proto != proto.to_lowercase() {
            self.lint.run(
                &EXPOSE_PROTO_CASING,
                span,
                format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
            );
        }
        if !ip.is_empty() || !host_port.is_empty() {
            self.lint.run(
                &EXPOSE_INVALID_FORMAT,
                span,
                format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'"),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Platforms (containerd's `platforms.Parse`, `Normalize`, `Format`).

#[derive(Debug, Clone, PartialEq, Eq)]
struct Platform {
    os: String,
    arch: String,
    variant: String,
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_lowercase();
    let variant = variant.to_lowercase();
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

fn is_specifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Platform {
    /// `platforms.Parse`; `host` fills in what a one-part specifier omits.
    fn parse(s: &str, host: &Platform) -> Option<Platform> {
        if s.contains('*') {
            return None;
        }
        let parts: Vec<&str> = s.splitn(4, '/').collect();
        // The OS part may carry `(osversion)`.
        let os_part = parts[0];
        let os_name = match os_part.split_once('(') {
            Some((name, rest)) => {
                let version = rest.strip_suffix(')')?;
                if !version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return None;
                }
                name
            }
            None => os_part,
        };
        if !is_specifier(os_name) || !parts[1..].iter().all(|p| is_specifier(p)) {
            return None;
        }
        let mut os = os_name.to_lowercase();
        if os == "macos" {
            os = "darwin".into();
        }
        match parts.len() {
            1 => {
                if KNOWN_OS.contains(&os.as_str()) {
                    return Some(Platform {
                        os,
                        arch: host.arch.clone(),
                        variant: String::new(),
                    });
                }
                let (arch, mut variant) = normalize_arch(parts[0], "");
                if arch == "arm" && variant == "v7" {
                    variant.clear();
                }
                KNOWN_ARCH.contains(&arch.as_str()).then(|| Platform {
                    os: host.os.clone(),
                    arch,
                    variant,
                })
            }
            2 => {
                let (arch, mut variant) = normalize_arch(parts[1], "");
                if arch == "arm" && variant == "v7" {
                    variant.clear();
                }
                Some(Platform { os, arch, variant })
            }
            3 => {
                let (arch, mut variant) = normalize_arch(parts[1], parts[2]);
                if arch == "arm64" && variant.is_empty() {
                    variant = "v8".into();
                }
                Some(Platform { os, arch, variant })
            }
            _ => None,
        }
    }

    /// `platforms.Format(platforms.Normalize(p))`.
    fn format(&self) -> String {
        let (arch, variant) = normalize_arch(&self.arch, &self.variant);
        let os = if self.os.is_empty() {
            "unknown"
        } else {
            &self.os
        };
        [os, arch.as_str(), variant.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The machine forge runs on, as containerd's `DefaultSpec`.
    fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "x86" => ("386", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            "loongarch64" => ("loong64", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: variant.into(),
        }
    }

    fn spec(&self) -> String {
        [self.os.as_str(), self.arch.as_str(), self.variant.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The build and target platforms of a check.
struct Platforms {
    build: Platform,
    target: Platform,
}

impl Platforms {
    fn new(target: Option<&str>) -> Platforms {
        let build = Platform::host();
        let target = target
            .and_then(|t| Platform::parse(t, &build))
            .unwrap_or_else(|| build.clone());
        Platforms { build, target }
    }

    fn host(&self) -> &Platform {
        &self.build
    }

    /// BuildKit's `defaultArgs`: the automatic platform ARGs of the global
    /// scope (a build arg of the same name overrides one).
    fn default_args(&self, build_args: &BTreeMap<String, String>, target_stage: &str) -> Env {
        let (bp, tp) = (&self.build, &self.target);
        let pairs = [
            ("BUILDPLATFORM", bp.spec()),
            ("BUILDOS", bp.os.clone()),
            ("BUILDARCH", bp.arch.clone()),
            ("BUILDVARIANT", bp.variant.clone()),
            ("TARGETPLATFORM", tp.spec()),
            ("TARGETOS", tp.os.clone()),
            ("TARGETARCH", tp.arch.clone()),
            ("TARGETVARIANT", tp.variant.clone()),
            ("TARGETSTAGE", target_stage.to_string()),
        ];
        let mut env = Env::default();
        for (k, v) in pairs {
            let v = build_args.get(k).cloned().unwrap_or(v);
            env.set(k, v);
        }
        env
    }
}

// ---------------------------------------------------------------------------
// Image references (distribution/reference's `ParseNormalizedNamed`).

fn is_path_component(s: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep_start || i == b.len() {
            return false;
        }
    }
}

fn is_domain(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let inner = &rest[..end];
        let after = &rest[end + 1..];
        return !inner.is_empty()
            && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
            && (after.is_empty() || after.strip_prefix(':').is_some_and(digits));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if port.is_some_and(|p| !digits(p)) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

fn is_valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == want
        && hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Whether `s` is a reference docker accepts for FROM.
fn valid_normalized_reference(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return false;
    }
    // splitDockerDomain
    let (domain, mut remainder) = match s.find('/') {
        Some(i)
            if s[..i].contains(['.', ':'])
                || &s[..i] == "localhost"
                || s[..i].to_lowercase() != s[..i] =>
        {
            (s[..i].to_string(), s[i + 1..].to_string())
        }
        _ => ("docker.io".to_string(), s.to_string()),
    };
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.to_lowercase() != remote {
        return false;
    }
    // The full reference grammar.
    let full = format!("{domain}/{remainder}");
    let (name_tag, digest) = match full.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (full.as_str(), None),
    };
    if let Some(d) = digest {
        if !is_valid_digest(d) {
            return false;
        }
    }
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    if let Some(tag) = tag {
        let b = tag.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if b.is_empty()
            || b.len() > 128
            || !word(b[0])
            || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
        {
            return false;
        }
    }
    if name.len() > 255 {
        return false;
    }
    let mut comps = name.split('/');
    let first = comps.next().unwrap_or_default();
    (is_domain(first) || is_path_component(first)) && comps.all(is_path_component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_options_like_buildkit() {
        let c = LintConfig::parse("skip=A, B;error=true").expect("valid");
        assert_eq!(c.skip, vec!["A", "B"]);
        assert!(c.error);
        let c = LintConfig::parse(" skip = all ").expect("valid");
        assert!(c.skip_all);
        assert_eq!(
            LintConfig::parse("bogus").expect_err("invalid"),
            "invalid check option \"bogus\""
        );
        assert_eq!(
            LintConfig::parse("frob=1").expect_err("invalid"),
            "invalid check option \"frob\""
        );
        assert_eq!(
            LintConfig::parse("error=maybe").expect_err("invalid"),
            "failed to parse check option \"error=maybe\": strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        let exp = LintConfig::parse("experimental=CopyIgnoredFile").expect("valid");
        assert!(exp.enabled(&COPY_IGNORED_FILE));
        assert!(!LintConfig::default().enabled(&COPY_IGNORED_FILE));
        let skip = LintConfig::parse("skip=all").expect("valid");
        assert!(!skip.enabled(&FROM_AS_CASING));
    }

    #[test]
    fn references_like_distribution() {
        for ok in [
            "alpine",
            "alpine:3.19",
            "library/alpine",
            "docker.io/library/alpine:latest",
            "localhost:5000/a/b:c",
            "ghcr.io/owner/repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my-registry.example.com/team/app_1:v1.2-rc",
            "scratch",
        ] {
            assert!(valid_normalized_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "alpine:",
            "Alpine",
            "foo/Bar",
            ":tag",
            "a//b",
            "alpine@sha256:123",
            "-alpine",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(!valid_normalized_reference(bad), "{bad}");
        }
    }

    #[test]
    fn platforms_like_containerd() {
        let host = Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: String::new(),
        };
        let p = Platform::parse("linux/x86_64", &host).expect("valid");
        assert_eq!((p.os.as_str(), p.arch.as_str()), ("linux", "amd64"));
        let p = Platform::parse("arm64", &host).expect("valid");
        assert_eq!(p.format(), "linux/arm64");
        let p = Platform::parse("linux/arm/v7", &host).expect("valid");
        assert_eq!(p.format(), "linux/arm/v7");
        assert!(Platform::parse("bogus", &host).is_none());
        assert!(Platform::parse("linux/*", &host).is_none());
    }
}
