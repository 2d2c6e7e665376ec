//! Compiler-style diagnostics: `Dockerfile:12:1: error: message`, the source
//! line, and a caret under the span.

use crate::span::Span;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One message about the source, with the span it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    /// A second line, e.g. `did you mean "RUN"?` or the list of allowed flags.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic as a compiler would:
    ///
    /// ```text
    /// Dockerfile:3:1: error: unknown instruction "RUNN" (did you mean "RUN"?)
    ///     3 | RUNN make
    ///       | ^^^^
    /// ```
    ///
    /// `source` is the whole file the span points into; the caret run covers the
    /// span on its first line (at least one caret).
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let start = self.span.start;
        let mut out = format!(
            "{file_name}:{}:{}: {severity}: {}\n",
            start.line, start.column, self.message
        );
        if let Some(text) = source_line(source, start.line) {
            let gutter = start.line.to_string();
            let pad = " ".repeat(gutter.len());
            // Tabs are kept in the caret line so the caret stays aligned.
            let lead: String = text
                .chars()
                .take(start.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let width = if self.span.end.line == start.line && self.span.end.column > start.column {
                (self.span.end.column - start.column) as usize
            } else {
                text.chars()
                    .count()
                    .saturating_sub(start.column.saturating_sub(1) as usize)
                    .max(1)
            };
            let _ = writeln!(out, " {gutter} | {text}");
            let _ = writeln!(out, " {pad} | {lead}{}", "^".repeat(width.max(1)));
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// The text of 1-based line `line`, without its line ending.
fn source_line(source: &str, line: u32) -> Option<&str> {
    if line == 0 {
        return None;
    }
    let text = source.split('\n').nth(line as usize - 1)?;
    let text = text.trim_end_matches(['\r', '\n']);
    Some(text.strip_prefix('\u{feff}').unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Pos;

    #[test]
    fn renders_caret_under_span() {
        let src = "FROM a\nRUNN make\n";
        let span = Span::new(
            Pos {
                line: 2,
                column: 1,
                offset: 7,
            },
            Pos {
                line: 2,
                column: 5,
                offset: 11,
            },
        );
        let d = Diagnostic::error(span, "unknown instruction \"RUNN\" (did you mean \"RUN\"?)");
        assert_eq!(
            d.render("Dockerfile", src),
            "Dockerfile:2:1: error: unknown instruction \"RUNN\" (did you mean \"RUN\"?)\n 2 | RUNN make\n   | ^^^^\n"
        );
    }
}
