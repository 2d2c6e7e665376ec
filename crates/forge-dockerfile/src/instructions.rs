//! Typed instructions: the [`Ast`]'s nodes given their meaning, as BuildKit's
//! `instructions` package does, and grouped into build stages.
//!
//! Arguments stay unexpanded here (`$VAR` is resolved at build time, when ARG
//! and ENV values are known); what can be checked without them is checked now:
//! argument counts, flags and their values, `--mount` fields, HEALTHCHECK
//! durations, ONBUILD triggers.

use crate::ast::{Ast, Heredoc, Node};
use crate::diagnostic::Diagnostic;
use crate::directives::Directive;
use crate::flags::{self, FlagError, Flags};
use crate::span::{Span, Spanned};
use serde::Serialize;
use std::time::Duration;

/// Every instruction of the Dockerfile reference, lower-case.
pub const KNOWN_INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// A Dockerfile with typed instructions.
#[derive(Debug, Clone, Serialize)]
pub struct Dockerfile {
    pub directives: Vec<Directive>,
    pub escape: char,
    /// ARG instructions before the first FROM.
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<Diagnostic>,
}

/// A build stage: its FROM and what follows up to the next FROM.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The `AS name`, lower-cased, if any.
    pub fn name(&self) -> Option<&Spanned<String>> {
        match &self.from.kind {
            InstructionKind::From(f) => f.name.as_ref(),
            _ => None,
        }
    }

    pub fn from(&self) -> &From {
        match &self.from.kind {
            InstructionKind::From(f) => f,
            // A stage is only ever made from a FROM instruction.
            _ => unreachable!("stage without FROM"),
        }
    }
}

/// One instruction with its source.
#[derive(Debug, Clone, Serialize)]
pub struct Instruction {
    /// The keyword as written (case kept).
    pub keyword: Spanned<String>,
    pub kind: InstructionKind,
    pub span: Span,
    /// The logical line, continuations joined.
    pub original: String,
    /// Comment lines directly above.
    pub comments: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "instruction", content = "args", rename_all = "lowercase")]
pub enum InstructionKind {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<Spanned<String>>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Maintainer(Spanned<String>),
    Expose(Vec<Spanned<String>>),
    Add(Add),
    Copy(Copy),
    Volume(Volume),
    User(Spanned<String>),
    Workdir(Spanned<String>),
    Arg(Vec<ArgDef>),
    Onbuild(Onbuild),
    Stopsignal(Spanned<String>),
    Healthcheck(Healthcheck),
}

#[derive(Debug, Clone, Serialize)]
pub struct From {
    pub image: Spanned<String>,
    /// The `AS` keyword as written, for the casing lint.
    pub as_keyword: Option<Spanned<String>>,
    /// Lower-cased stage name.
    pub name: Option<Spanned<String>>,
    pub platform: Option<Spanned<String>>,
}

/// RUN/CMD/ENTRYPOINT arguments: exec form (`json`) or one shell string.
#[derive(Debug, Clone, Serialize)]
pub struct CommandLine {
    pub args: Vec<Spanned<String>>,
    /// Exec form: run as is. Shell form: run through the stage's SHELL.
    pub json: bool,
    /// Heredocs named on the line (RUN only).
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub command: CommandLine,
    pub mounts: Vec<Spanned<Mount>>,
    pub network: Option<Spanned<NetworkMode>>,
    pub security: Option<Spanned<Security>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// A `RUN --mount=...` value, BuildKit's fields. Values may hold `$VAR`s:
/// [`Mount::parse`] is run again with an expander at build time; here fields
/// whose value needs expansion are kept unparsed in `raw` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    /// Cache id, or secret id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
    /// The flag value as written.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(&'static str),
    #[error("unsupported mount type {}{}", crate::dump::go_quote(.0), suggestion(.0, &["bind", "cache", "tmpfs", "secret", "ssh"]))]
    Type(String),
    #[error("unsupported sharing value {}{}", crate::dump::go_quote(.0), suggestion(.0, &["shared", "private", "locked"]))]
    Sharing(String),
    #[error("unexpected key '{key}' in '{field}'{}", suggestion(key, MOUNT_KEYS))]
    UnknownKey { key: String, field: String },
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType { key: String, kind: &'static str },
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("invalid value for {key}: {value}")]
    Value { key: String, value: String },
    #[error("{0} not allowed for \"{1}\" type mounts")]
    NotAllowed(&'static str, &'static str),
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromExpansion,
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error("mount target is required for {0} mounts")]
    NoTarget(&'static str),
}

const MOUNT_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "size",
    "env",
];

fn suggestion(value: &str, options: &[&str]) -> String {
    match crate::suggest::closest(value, options.iter().copied()) {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// Go's `encoding/csv` reading one record: fields split on `,`, a field may be
/// double-quoted with `""` for a quote inside.
fn csv_fields(s: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(MountError::Csv("extraneous or missing \" in quoted-field"))
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(MountError::Csv("extraneous or missing \" in quoted-field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(MountError::Csv("bare \" in non-quoted-field")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, MountError> {
    // Go's strconv.ParseBool.
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(MountError::Value {
            key: key.into(),
            value: value.into(),
        }),
    }
}

/// docker/go-units' RAMInBytes: a number with an optional binary unit suffix
/// (k, m, g, t, p, with optional `b`/`ib`), case-insensitive.
pub fn ram_in_bytes(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return None,
    };
    Some((num * mult as f64) as u64)
}

/// Resolves `$VAR`s in a value (the build's ARG/ENV scope).
pub type Expander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

impl Mount {
    /// Parses a `--mount` value. `expand` resolves `$VAR`s in values; `None`
    /// leaves fields that need expansion for later.
    pub fn parse(value: &str, expand: Option<Expander<'_>>) -> Result<Mount, MountError> {
        let mut m = Mount {
            raw: value.to_string(),
            ..Mount::default()
        };
        let mut ro_auto = true;
        for field in csv_fields(value)? {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
                None => (field.to_ascii_lowercase(), None),
            };
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true
                    }
                    "required" => {
                        return Err(MountError::KeyNotForType {
                            key,
                            kind: m.kind.as_str(),
                        })
                    }
                    _ => return Err(MountError::NotKeyValue(field)),
                }
                continue;
            };
            let value = match expand {
                Some(expand) => expand(value).map_err(|_| MountError::Value {
                    key: key.clone(),
                    value: value.to_string(),
                })?,
                None if key == "from" && has_variable(value) => {
                    return Err(MountError::FromExpansion)
                }
                None if has_variable(value) => {
                    if !MOUNT_KEYS.contains(&key.as_str()) {
                        return Err(MountError::UnknownKey { key, field });
                    }
                    continue;
                }
                None => value.to_string(),
            };
            let bad = || MountError::Value {
                key: key.clone(),
                value: value.clone(),
            };
            match key.as_str() {
                "type" => {
                    m.kind = match value.to_ascii_lowercase().as_str() {
                        "bind" => MountType::Bind,
                        "cache" => MountType::Cache,
                        "tmpfs" => MountType::Tmpfs,
                        "secret" => MountType::Secret,
                        "ssh" => MountType::Ssh,
                        _ => return Err(MountError::Type(value)),
                    }
                }
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&key, &value)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_bool(&key, &value)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(MountError::KeyNotForType {
                            key,
                            kind: m.kind.as_str(),
                        });
                    }
                    m.required = parse_bool(&key, &value)?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(MountError::KeyNotForType {
                            key,
                            kind: m.kind.as_str(),
                        });
                    }
                    m.size = Some(ram_in_bytes(&value).ok_or_else(bad)?);
                }
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        _ => return Err(MountError::Sharing(value)),
                    })
                }
                "mode" => m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| bad())?),
                "uid" => m.uid = Some(value.parse().map_err(|_| bad())?),
                "gid" => m.gid = Some(value.parse().map_err(|_| bad())?),
                "env" => m.env = Some(value),
                _ => return Err(MountError::UnknownKey { key, field }),
            }
        }
        m.validate(ro_auto)?;
        Ok(m)
    }

    fn validate(&mut self, ro_auto: bool) -> Result<(), MountError> {
        let kind = self.kind.as_str();
        if !matches!(
            self.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        ) {
            if self.mode.is_some() {
                return Err(MountError::NotAllowed("mode", kind));
            }
            if self.uid.is_some() {
                return Err(MountError::NotAllowed("uid", kind));
            }
            if self.gid.is_some() {
                return Err(MountError::NotAllowed("gid", kind));
            }
        }
        if ro_auto {
            self.readonly = !matches!(self.kind, MountType::Cache | MountType::Tmpfs);
        }
        if self.kind == MountType::Secret {
            if self.from.is_some() {
                return Err(MountError::SecretFrom);
            }
            if self.sharing.is_some() {
                return Err(MountError::SecretSharing);
            }
            if self.source.is_none()
                && self.target.is_none()
                && self.id.is_none()
                && self.env.is_none()
                && !self.raw.contains('$')
            {
                return Err(MountError::SecretTarget);
            }
            if self.source.is_some() && self.id.is_some() {
                return Err(MountError::SecretSourceAndId);
            }
        }
        if self.sharing.is_some() && self.kind != MountType::Cache {
            return Err(MountError::SharingNotCache(kind));
        }
        if matches!(
            self.kind,
            MountType::Bind | MountType::Cache | MountType::Tmpfs
        ) && self.target.is_none()
            && !self.raw.contains('$')
        {
            return Err(MountError::NoTarget(kind));
        }
        Ok(())
    }
}

fn has_variable(value: &str) -> bool {
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '$' && chars.clone().next().is_some() {
            return true;
        }
    }
    false
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyValue {
    pub key: Spanned<String>,
    pub value: Spanned<String>,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArgDef {
    pub name: Spanned<String>,
    pub default: Option<Spanned<String>>,
}

/// COPY and ADD share their sources and destination.
#[derive(Debug, Clone, Serialize)]
pub struct Sources {
    /// Paths (or URLs, for ADD), unexpanded.
    pub paths: Vec<Spanned<String>>,
    /// Heredoc sources (`COPY <<EOF /dest`), in the order named.
    pub heredocs: Vec<Heredoc>,
    pub dest: Spanned<String>,
    pub chown: Option<Spanned<String>>,
    pub chmod: Option<Spanned<String>>,
    pub link: bool,
    pub exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    #[serde(flatten)]
    pub sources: Sources,
    pub from: Option<Spanned<String>>,
    pub parents: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Add {
    #[serde(flatten)]
    pub sources: Sources,
    pub checksum: Option<Spanned<String>>,
    pub keep_git_dir: bool,
    /// `None`: BuildKit's default (unpack local archives, not remote ones).
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub paths: Vec<Spanned<String>>,
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Onbuild {
    /// The trigger as it will run in the child image, typed and checked.
    pub trigger: Box<Instruction>,
    /// The text recorded in the image config (`ONBUILD` removed; heredoc
    /// bodies appended as BuildKit does).
    pub expression: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Healthcheck {
    None,
    Cmd {
        /// `["CMD", args...]` for exec form, `["CMD-SHELL", line]` for shell form.
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// Why an instruction is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    #[error("unknown instruction {}{}", crate::dump::go_quote(.name), match .suggestion { Some(s) => format!(" (did you mean {}?)", crate::dump::go_quote(s)), None => String::new() })]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("{0} requires at least one argument")]
    AtLeastOne(&'static str),
    #[error("{0} requires exactly one argument")]
    ExactlyOne(&'static str),
    #[error("{0} requires at least two arguments, but only one was provided. Destination could not be determined")]
    NoDestination(&'static str),
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(&'static str),
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    #[error("invalid name for build stage: {}, name can't start with a number or contain symbols", crate::dump::go_quote(.0))]
    StageName(String),
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArgs,
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckNoCommand,
    #[error("Unknown type {} in HEALTHCHECK (try CMD)", crate::dump::go_quote(.0))]
    HealthcheckType(String),
    #[error("invalid duration {} for --{flag}", crate::dump::go_quote(value))]
    Duration { flag: &'static str, value: String },
    #[error("Interval \"{0}\" cannot be less than 1ms")]
    IntervalTooShort(&'static str),
    #[error("--retries must be a non-negative integer, not {}", crate::dump::go_quote(.0))]
    Retries(String),
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    #[error("network mode {} not supported (allowed: default, none, host)", crate::dump::go_quote(.0))]
    Network(String),
    #[error("security mode {} not supported (allowed: sandbox, insecure)", crate::dump::go_quote(.0))]
    Security(String),
    #[error("{0} instruction found before any FROM (only ARG may come first)")]
    BeforeFrom(String),
}

/// An instruction error with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SpannedError {
    pub error: InstructionError,
    pub span: Span,
}

impl std::convert::From<SpannedError> for Diagnostic {
    fn from(e: SpannedError) -> Self {
        match &e.error {
            InstructionError::Flag(FlagError::Unknown { .. }) => {
                Diagnostic::error(e.span, e.error.to_string())
            }
            _ => Diagnostic::error(e.span, e.error.to_string()),
        }
    }
}

type Result<T, E = SpannedError> = std::result::Result<T, E>;

fn at<T>(span: Span) -> impl Fn(T) -> SpannedError
where
    T: Into<InstructionError>,
{
    move |e| SpannedError {
        error: e.into(),
        span,
    }
}

/// Gives every node of `ast` its type and groups them into stages.
pub fn lower(ast: Ast) -> Result<Dockerfile> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in ast.nodes {
        let inst = instruction(node)?;
        match (&inst.kind, stages.last_mut()) {
            (InstructionKind::From(_), _) => stages.push(Stage {
                from: inst,
                instructions: Vec::new(),
            }),
            (InstructionKind::Arg(_), None) => meta_args.push(inst),
            (_, Some(stage)) => stage.instructions.push(inst),
            (_, None) => {
                return Err(SpannedError {
                    error: InstructionError::BeforeFrom(inst.keyword.value.to_ascii_uppercase()),
                    span: inst.keyword.span,
                })
            }
        }
    }
    Ok(Dockerfile {
        directives: ast.directives,
        escape: ast.escape,
        meta_args,
        stages,
        warnings: ast.warnings,
    })
}

/// Types one node.
pub fn instruction(mut node: Node) -> Result<Instruction> {
    let name = node.name();
    let kw_span = node.keyword.span;
    let err = at::<InstructionError>(node.span);
    let args = std::mem::take(&mut node.args);
    let given_flags = std::mem::take(&mut node.flags);
    let flags_for = |spec| {
        Flags::parse(&given_flags, spec, &name).map_err(|e| SpannedError {
            error: e.value.into(),
            span: e.span,
        })
    };
    let kind = match name.as_str() {
        "from" => {
            let flags = flags_for(flags::FROM)?;
            let (as_keyword, stage) = match args.len() {
                1 => (None, None),
                3 if args[1].value.eq_ignore_ascii_case("as") => {
                    let lowered = args[2].value.to_lowercase();
                    if !valid_stage_name(&lowered) {
                        return Err(at::<InstructionError>(args[2].span)(
                            InstructionError::StageName(args[2].value.clone()),
                        ));
                    }
                    (
                        Some(args[1].clone()),
                        Some(Spanned::new(lowered, args[2].span)),
                    )
                }
                _ => return Err(err(InstructionError::FromArguments)),
            };
            InstructionKind::From(From {
                image: args[0].clone(),
                as_keyword,
                name: stage,
                platform: flags.string("platform"),
            })
        }
        "run" => {
            let flags = flags_for(flags::RUN)?;
            let mut mounts = Vec::new();
            for m in flags.list("mount") {
                let mount = Mount::parse(&m.value, None).map_err(at::<MountError>(m.span))?;
                mounts.push(Spanned::new(mount, m.span));
            }
            let network = match flags.string("network") {
                None => None,
                Some(n) => Some(Spanned::new(
                    match n.value.as_str() {
                        "default" => NetworkMode::Default,
                        "none" => NetworkMode::None,
                        "host" => NetworkMode::Host,
                        _ => {
                            return Err(at::<InstructionError>(n.span)(InstructionError::Network(
                                n.value,
                            )))
                        }
                    },
                    n.span,
                )),
            };
            let security = match flags.string("security") {
                None => None,
                Some(s) => Some(Spanned::new(
                    match s.value.as_str() {
                        "sandbox" => Security::Sandbox,
                        "insecure" => Security::Insecure,
                        _ => {
                            return Err(at::<InstructionError>(s.span)(InstructionError::Security(
                                s.value,
                            )))
                        }
                    },
                    s.span,
                )),
            };
            InstructionKind::Run(Run {
                command: command_line(args, &mut node),
                mounts,
                network,
                security,
            })
        }
        "cmd" => {
            flags_for(flags::NONE)?;
            InstructionKind::Cmd(command_line(args, &mut node))
        }
        "entrypoint" => {
            flags_for(flags::NONE)?;
            InstructionKind::Entrypoint(command_line(args, &mut node))
        }
        "shell" => {
            flags_for(flags::NONE)?;
            if args.is_empty() {
                return Err(err(InstructionError::AtLeastOne("SHELL")));
            }
            if !node.json {
                return Err(err(InstructionError::ShellNotJson));
            }
            InstructionKind::Shell(args)
        }
        "env" | "label" => {
            flags_for(flags::NONE)?;
            let upper = if name == "env" { "ENV" } else { "LABEL" };
            if args.is_empty() {
                return Err(err(InstructionError::AtLeastOne(upper)));
            }
            let mut pairs = Vec::new();
            for triple in args.chunks(3) {
                let [key, value, sep] = triple else {
                    return Err(err(InstructionError::AtLeastOne(upper)));
                };
                if key.value.is_empty() {
                    return Err(at::<InstructionError>(key.span)(
                        InstructionError::BlankName(upper),
                    ));
                }
                pairs.push(KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    legacy: sep.value.is_empty(),
                });
            }
            if name == "env" {
                InstructionKind::Env(pairs)
            } else {
                InstructionKind::Label(pairs)
            }
        }
        "maintainer" => {
            flags_for(flags::NONE)?;
            InstructionKind::Maintainer(exactly_one(args, node.span, "MAINTAINER")?)
        }
        "expose" => {
            flags_for(flags::NONE)?;
            if args.is_empty() {
                return Err(err(InstructionError::AtLeastOne("EXPOSE")));
            }
            InstructionKind::Expose(args)
        }
        "add" => {
            let flags = flags_for(flags::ADD)?;
            InstructionKind::Add(Add {
                sources: sources(args, &mut node, &flags, "ADD")?,
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
                unpack: flags.bool("unpack"),
            })
        }
        "copy" => {
            let flags = flags_for(flags::COPY)?;
            InstructionKind::Copy(Copy {
                sources: sources(args, &mut node, &flags, "COPY")?,
                from: flags.string("from"),
                parents: flags.bool("parents").unwrap_or(false),
            })
        }
        "volume" => {
            flags_for(flags::NONE)?;
            if args.is_empty() {
                return Err(err(InstructionError::AtLeastOne("VOLUME")));
            }
            let mut paths = Vec::new();
            for a in args {
                let v = a.value.trim();
                if v.is_empty() {
                    return Err(at::<InstructionError>(a.span)(
                        InstructionError::EmptyVolume,
                    ));
                }
                paths.push(Spanned::new(v.to_string(), a.span));
            }
            InstructionKind::Volume(Volume {
                paths,
                json: node.json,
            })
        }
        "user" => {
            flags_for(flags::NONE)?;
            InstructionKind::User(exactly_one(args, node.span, "USER")?)
        }
        "workdir" => {
            flags_for(flags::NONE)?;
            InstructionKind::Workdir(exactly_one(args, node.span, "WORKDIR")?)
        }
        "stopsignal" => {
            flags_for(flags::NONE)?;
            InstructionKind::Stopsignal(exactly_one(args, node.span, "STOPSIGNAL")?)
        }
        "arg" => {
            flags_for(flags::NONE)?;
            if args.is_empty() {
                return Err(err(InstructionError::AtLeastOne("ARG")));
            }
            let mut defs = Vec::new();
            for a in args {
                let def = match a.value.split_once('=') {
                    Some(("", _)) => {
                        return Err(at::<InstructionError>(a.span)(InstructionError::BlankName(
                            "ARG",
                        )))
                    }
                    Some((k, v)) => {
                        let (key_span, value_span) = split_span(a.span, k.chars().count() as u32);
                        ArgDef {
                            name: Spanned::new(k.to_string(), key_span),
                            default: Some(Spanned::new(v.to_string(), value_span)),
                        }
                    }
                    None => ArgDef {
                        name: a.clone(),
                        default: None,
                    },
                };
                defs.push(def);
            }
            InstructionKind::Arg(defs)
        }
        "onbuild" => {
            flags_for(flags::NONE)?;
            let Some(inner) = node.onbuild.take() else {
                return Err(err(InstructionError::AtLeastOne("ONBUILD")));
            };
            match inner.name().as_str() {
                "onbuild" => return Err(err(InstructionError::OnbuildChain)),
                n @ ("maintainer" | "from") => {
                    return Err(at::<InstructionError>(inner.keyword.span)(
                        InstructionError::OnbuildTrigger(n.to_ascii_uppercase()),
                    ))
                }
                _ => {}
            }
            let mut trigger_node = *inner;
            trigger_node.heredocs = node.heredocs.clone();
            let trigger = instruction(trigger_node)?;
            let mut expression = strip_onbuild(&node.original).to_string();
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            InstructionKind::Onbuild(Onbuild {
                trigger: Box::new(trigger),
                expression,
            })
        }
        "healthcheck" => {
            let Some(first) = args.first() else {
                return Err(err(InstructionError::AtLeastOne("HEALTHCHECK")));
            };
            let typ = first.value.to_ascii_uppercase();
            if typ == "NONE" {
                flags_for(flags::NONE)?;
                if args.len() != 1 {
                    return Err(err(InstructionError::HealthcheckNoneArgs));
                }
                InstructionKind::Healthcheck(Healthcheck::None)
            } else {
                let flags = flags_for(flags::HEALTHCHECK)?;
                if typ != "CMD" {
                    return Err(at::<InstructionError>(first.span)(
                        InstructionError::HealthcheckType(typ),
                    ));
                }
                let cmd: Vec<String> = args[1..].iter().map(|a| a.value.clone()).collect();
                if cmd.is_empty() {
                    return Err(err(InstructionError::HealthcheckNoCommand));
                }
                let test = std::iter::once(if node.json { "CMD" } else { "CMD-SHELL" }.to_string())
                    .chain(cmd)
                    .collect();
                let duration = |flag: &'static str| -> Result<Option<Duration>> {
                    let Some(v) = flags.string(flag) else {
                        return Ok(None);
                    };
                    let d = parse_go_duration(&v.value).ok_or_else(|| {
                        at::<InstructionError>(v.span)(InstructionError::Duration {
                            flag,
                            value: v.value.clone(),
                        })
                    })?;
                    if !d.is_zero() && d < Duration::from_millis(1) {
                        return Err(at::<InstructionError>(v.span)(
                            InstructionError::IntervalTooShort(flag),
                        ));
                    }
                    Ok(Some(d))
                };
                let retries = match flags.string("retries") {
                    None => None,
                    Some(r) => Some(r.value.parse::<u32>().map_err(|_| {
                        at::<InstructionError>(r.span)(InstructionError::Retries(r.value.clone()))
                    })?),
                };
                InstructionKind::Healthcheck(Healthcheck::Cmd {
                    test,
                    interval: duration("interval")?,
                    timeout: duration("timeout")?,
                    start_period: duration("start-period")?,
                    start_interval: duration("start-interval")?,
                    retries,
                })
            }
        }
        _ => {
            let upper: Vec<String> = KNOWN_INSTRUCTIONS
                .iter()
                .map(|k| k.to_ascii_uppercase())
                .collect();
            let suggestion = crate::suggest::closest(
                &node.keyword.value.to_ascii_uppercase(),
                upper.iter().map(String::as_str),
            );
            return Err(at::<InstructionError>(kw_span)(InstructionError::Unknown {
                name: node.keyword.value.clone(),
                suggestion,
            }));
        }
    };
    Ok(Instruction {
        keyword: node.keyword,
        kind,
        span: node.span,
        original: node.original,
        comments: node.comments,
    })
}

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Splits an argument's span after `key_chars` characters and the `=`.
fn split_span(span: Span, key_chars: u32) -> (Span, Span) {
    let mut mid = span.start;
    if span.start.line == span.end.line {
        mid.column += key_chars;
        mid.offset += key_chars as usize;
    }
    let mut value_start = mid;
    if span.start.line == span.end.line {
        value_start.column += 1;
        value_start.offset += 1;
    }
    (Span::new(span.start, mid), Span::new(value_start, span.end))
}

fn strip_onbuild(original: &str) -> &str {
    // (?i)^\s*ONBUILD\s*
    let s = original.trim_start();
    match s.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => s[7..].trim_start(),
        _ => original,
    }
}

fn exactly_one(
    args: Vec<Spanned<String>>,
    span: Span,
    upper: &'static str,
) -> Result<Spanned<String>> {
    let count = args.len();
    match args.into_iter().next() {
        Some(one) if count == 1 => Ok(one),
        _ => Err(SpannedError {
            error: InstructionError::ExactlyOne(upper),
            span,
        }),
    }
}

fn command_line(args: Vec<Spanned<String>>, node: &mut Node) -> CommandLine {
    CommandLine {
        args,
        json: node.json,
        heredocs: std::mem::take(&mut node.heredocs),
    }
}

fn sources(
    mut args: Vec<Spanned<String>>,
    node: &mut Node,
    flags: &Flags,
    upper: &'static str,
) -> Result<Sources> {
    if args.len() < 2 {
        return Err(SpannedError {
            error: InstructionError::NoDestination(upper),
            span: node.span,
        });
    }
    let Some(dest) = args.pop() else {
        return Err(SpannedError {
            error: InstructionError::NoDestination(upper),
            span: node.span,
        });
    };
    let srcs = args;
    let is_heredoc = |s: &str| !node.json && heredoc_name(s).is_some();
    if is_heredoc(&dest.value) {
        return Err(SpannedError {
            error: InstructionError::HeredocDestination(upper),
            span: dest.span,
        });
    }
    let mut paths = Vec::new();
    let mut heredocs = Vec::new();
    // Each name's first heredoc, looked up in a map built once: a search of
    // the list per source was quadratic in the number of heredocs.
    let mut by_name = std::collections::HashMap::with_capacity(node.heredocs.len());
    for h in &node.heredocs {
        by_name.entry(h.name.as_str()).or_insert(h);
    }
    for src in srcs {
        match heredoc_name(&src.value).filter(|_| !node.json) {
            Some(name) => {
                if let Some(h) = by_name.get(name.as_str()) {
                    heredocs.push((*h).clone());
                }
            }
            None => paths.push(src),
        }
    }
    Ok(Sources {
        paths,
        heredocs,
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.list("exclude"),
    })
}

/// The delimiter of a `[n]<<[-]WORD` source, quotes removed.
fn heredoc_name(word: &str) -> Option<String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    Some(rest.chars().filter(|c| *c != '"' && *c != '\'').collect())
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` with units
/// ns, us, µs, ms, s, m, h; "0" alone is allowed. Negative durations are
/// refused (no use in a Dockerfile).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * nanos;
        rest = after;
    }
    Some(Duration::from_nanos(total as u64))
}
