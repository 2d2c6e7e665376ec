//! # forge-dockerfile
//!
//! The Dockerfile frontend: bytes in, a typed AST with spans out. No I/O.
//!
//! How the pieces fit, in the order they run (BuildKit's `dockerfile:1` shape):
//! - [`span`]: line/column positions carried by everything below.
//! - [`shell`]: the shell-word lexer and variable expansion used by
//!   instructions that expand variables.
pub mod shell;
pub mod span;

pub use span::{Pos, Span, Spanned};
