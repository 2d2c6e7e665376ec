//! Instruction flags (`--name=value`), typed per instruction, as BuildKit's
//! `BFlags`: a string flag needs `=value`, a bool flag takes none or
//! `=true|false`, a list flag may repeat, `--` ends the flags, and a flag the
//! instruction does not define is an error naming the ones it does.

use crate::span::{Span, Spanned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    String,
    List,
}

/// The flags one instruction accepts.
pub(crate) type FlagSpec = &'static [(&'static str, FlagKind)];

pub(crate) const FROM: FlagSpec = &[("platform", FlagKind::String)];
pub(crate) const RUN: FlagSpec = &[
    ("mount", FlagKind::List),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];
pub(crate) const COPY: FlagSpec = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::List),
    ("parents", FlagKind::Bool),
];
pub(crate) const ADD: FlagSpec = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::List),
    ("checksum", FlagKind::String),
    ("keep-git-dir", FlagKind::Bool),
    ("unpack", FlagKind::Bool),
];
pub(crate) const HEALTHCHECK: FlagSpec = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];
pub(crate) const NONE: FlagSpec = &[];

/// Every flag of every instruction, for the grammar check: (instruction, flag).
pub fn all_flags() -> Vec<(&'static str, &'static str, FlagKind)> {
    let table: [(&str, FlagSpec); 5] = [
        ("FROM", FROM),
        ("RUN", RUN),
        ("COPY", COPY),
        ("ADD", ADD),
        ("HEALTHCHECK", HEALTHCHECK),
    ];
    table
        .iter()
        .flat_map(|(i, spec)| spec.iter().map(move |(f, k)| (*i, *f, *k)))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error(
        "unknown flag --{flag} for {instruction}{} ({})",
        did_you_mean(flag, allowed),
        allowed_list(allowed)
    )]
    Unknown {
        flag: String,
        instruction: String,
        allowed: Vec<&'static str>,
    },
    #[error("missing a value on flag --{0}")]
    MissingValue(String),
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    NotBool { flag: String, value: String },
    #[error("duplicate flag specified: --{0}")]
    Duplicate(String),
    #[error("flag should start with -- : {0}")]
    NotAFlag(String),
}

fn did_you_mean(flag: &str, allowed: &[&str]) -> String {
    match crate::suggest::closest(flag, allowed.iter().copied()) {
        Some(s) => format!(", did you mean --{s}?"),
        None => String::new(),
    }
}

fn allowed_list(allowed: &[&str]) -> String {
    if allowed.is_empty() {
        "it takes no flags".to_string()
    } else {
        let names: Vec<String> = allowed.iter().map(|a| format!("--{a}")).collect();
        format!("allowed: {}", names.join(", "))
    }
}

/// The flags given to one instruction, checked against its spec.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    /// (name, value, span) in the order written; bools hold "true"/"false".
    values: Vec<(&'static str, String, Span)>,
}

impl Flags {
    pub(crate) fn parse(
        given: &[Spanned<String>],
        spec: FlagSpec,
        instruction: &str,
    ) -> Result<Flags, Spanned<FlagError>> {
        let mut flags = Flags::default();
        for word in given {
            let err = |e| Err(Spanned::new(e, word.span));
            let Some(body) = word.value.strip_prefix("--") else {
                return err(FlagError::NotAFlag(word.value.clone()));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return err(FlagError::Unknown {
                    flag: name.to_string(),
                    instruction: instruction.to_ascii_uppercase(),
                    allowed: spec.iter().map(|(n, _)| *n).collect(),
                });
            };
            if kind != FlagKind::List && flags.values.iter().any(|(n, _, _)| *n == name) {
                return err(FlagError::Duplicate(name.to_string()));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some("")) => return err(FlagError::MissingValue(name.into())),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    b @ ("true" | "false") => b.to_string(),
                    _ => {
                        return err(FlagError::NotBool {
                            flag: name.into(),
                            value: v.into(),
                        })
                    }
                },
                (_, None) => return err(FlagError::MissingValue(name.into())),
                (_, Some(v)) => v.to_string(),
            };
            flags.values.push((name, value, word.span));
        }
        Ok(flags)
    }

    pub(crate) fn string(&self, name: &str) -> Option<Spanned<String>> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, s)| Spanned::new(v.clone(), *s))
    }

    pub(crate) fn list(&self, name: &str) -> Vec<Spanned<String>> {
        self.values
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, v, s)| Spanned::new(v.clone(), *s))
            .collect()
    }

    /// `None` when the flag was not given.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v.value == "true")
    }
}
