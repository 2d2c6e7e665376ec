//! # forge-dockerfile
//!
//! The Dockerfile frontend: bytes in, a typed AST with spans out. No I/O.
//!
//! How the pieces fit, in the order they run (BuildKit's `dockerfile:1` shape):
//! - [`parser::parse`] reads bytes into an [`Ast`]: [`directives`] at the top,
//!   line continuations joined, comments dropped, heredoc bodies collected, and
//!   each instruction split into keyword, flags and arguments ([`ast::Node`]),
//!   every part with its [`Span`]. [`dump`] prints that tree in BuildKit's
//!   s-expression format.
//! - [`instructions::lower`] gives the nodes their types ([`Instruction`]):
//!   flags checked per instruction ([`flags`]), `--mount` values parsed,
//!   durations and ONBUILD triggers validated; and groups them into stages.
//! - [`shell`] is the shell-word lexer: quote removal and `$VAR` expansion, used
//!   at build time by the instructions that expand variables, by the heredoc
//!   reader, and by the lint checks.
//! - [`dockerignore`] reads `.dockerignore` and matches context paths as
//!   docker does (used by the build context and by [`check`]).
//! - [`check`] runs BuildKit's build checks that need no build.
//! - Errors of every stage become a [`Diagnostic`] that renders like a
//!   compiler's, with line, column and a caret.
pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod directives;
pub mod dockerignore;
pub mod dump;
pub mod flags;
pub mod instructions;
mod json;
pub mod parser;
pub mod shell;
pub mod span;
pub mod suggest;

pub use ast::{Ast, Heredoc, Node};
pub use diagnostic::{Diagnostic, Severity};
pub use instructions::{Dockerfile, Instruction, InstructionKind, Stage};
pub use parser::{parse, ParseError};
pub use span::{Pos, Span, Spanned};

/// Parses and types a Dockerfile in one go; the first error as a diagnostic.
pub fn parse_dockerfile(input: &[u8]) -> Result<Dockerfile, Diagnostic> {
    let ast = parse(input)?;
    Ok(instructions::lower(ast)?)
}
