//! The untyped parse tree: one [`Node`] per instruction, as BuildKit's parser
//! produces it (before instructions are given their types in
//! [`crate::instructions`]). Every part keeps its span.

use crate::diagnostic::Diagnostic;
use crate::directives::Directive;
use crate::span::{Span, Spanned};
use serde::Serialize;

/// A whole Dockerfile after line joining and heredoc collection.
#[derive(Debug, Clone, Serialize)]
pub struct Ast {
    pub directives: Vec<Directive>,
    /// The escape character in force (`\` or `` ` ``).
    pub escape: char,
    pub nodes: Vec<Node>,
    /// Non-fatal findings of the parser itself (e.g. empty continuation lines).
    pub warnings: Vec<Diagnostic>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction keyword as written (case kept); compare it lower-cased.
    pub keyword: Spanned<String>,
    /// `--name[=value]` words before the arguments, quotes and escapes removed.
    pub flags: Vec<Spanned<String>>,
    /// The arguments as BuildKit's parser splits them for this instruction:
    /// JSON elements, whitespace-separated words, one whole string, or for
    /// ENV/LABEL the triples `key, value, separator` (`=` or empty for the
    /// legacy `KEY value` form). For HEALTHCHECK the first is the type
    /// (`CMD`/`NONE`).
    pub args: Vec<Spanned<String>>,
    /// Set when the arguments were written in JSON (exec) form.
    pub json: bool,
    /// The instruction ONBUILD wraps.
    pub onbuild: Option<Box<Node>>,
    pub heredocs: Vec<Heredoc>,
    /// The logical line: continuations joined, without heredoc bodies.
    pub original: String,
    /// Comment lines directly above the instruction, `#` and spaces trimmed.
    pub comments: Vec<String>,
    /// From the keyword to the end of the instruction's last line (heredoc
    /// bodies included).
    pub span: Span,
    /// Where the argument text starts and ends in the logical line's source.
    pub args_span: Span,
}

impl Node {
    /// The keyword, lower-cased.
    pub fn name(&self) -> String {
        self.keyword.value.to_ascii_lowercase()
    }
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The body as written: every line up to the terminator, with its line
    /// ending. `<<-` tab stripping is applied by the consumer
    /// ([`Heredoc::body`]), as BuildKit does.
    pub content: String,
    /// False when any part of the delimiter was quoted: then `$VAR` in the
    /// body is left alone.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub chomp: bool,
    /// The file descriptor of `3<<EOF`; 0 when none was written.
    pub file_descriptor: u32,
    /// The body lines and the terminator.
    pub span: Span,
}

impl Heredoc {
    /// The body with `<<-` tab stripping applied.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}
