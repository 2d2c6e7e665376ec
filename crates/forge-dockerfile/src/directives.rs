//! Parser directives: `# syntax=`, `# escape=`, `# check=`.
//!
//! As in BuildKit, directives are only read at the very top of the file: the
//! first line that is not a well-formed directive with a known name (an
//! instruction, a plain comment, an empty line, an unknown directive) ends the
//! directive section for good. A directive may appear once.

use crate::span::Span;
use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::{recognize, rest};
use nom::sequence::pair;
use nom::{IResult, Parser};
use serde::Serialize;

/// The directives BuildKit knows; any other name is an ordinary comment.
pub const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased name.
    pub name: String,
    pub value: String,
    pub span: Span,
}

/// Splits `#  name = value  ` into its parts: BuildKit's
/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (`\s` is ASCII white space
/// in Go's RE2).
pub(crate) fn split_directive(line: &str) -> Option<(&str, &str)> {
    fn parts(i: &str) -> IResult<&str, (&str, &str), ()> {
        let ws = || take_while(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
        let (i, _) = (char('#'), ws()).parse(i)?;
        let (i, name) = recognize(pair(
            satisfy(|c| c.is_ascii_alphabetic()),
            take_while(|c: char| c.is_ascii_alphanumeric()),
        ))
        .parse(i)?;
        let (i, _) = (ws(), char('='), ws()).parse(i)?;
        let (i, value) = rest(i)?;
        let value = value.trim_end_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        let (_, value) = take_while1(|_| true).parse(value)?;
        Ok((i, (name, value)))
    }
    parts(line).ok().map(|(_, p)| p)
}

/// Tracks whether the directive section is still open, as BuildKit's
/// `DirectiveParser` does.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    pub parsed: Vec<Directive>,
}

/// What a line did to the directive section.
pub(crate) enum DirectiveLine<'a> {
    NotADirective,
    Directive { name: String, value: &'a str },
    Duplicate(String),
}

impl DirectiveParser {
    /// Looks at one line (newline and leading white space already trimmed).
    pub(crate) fn parse_line<'a>(&mut self, line: &'a str) -> DirectiveLine<'a> {
        if self.done {
            return DirectiveLine::NotADirective;
        }
        let Some((name, value)) = split_directive(line) else {
            self.done = true;
            return DirectiveLine::NotADirective;
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return DirectiveLine::NotADirective;
        }
        if self.parsed.iter().any(|d| d.name == name) {
            return DirectiveLine::Duplicate(name);
        }
        DirectiveLine::Directive { name, value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_buildkit_regex() {
        assert_eq!(split_directive("# escape=`"), Some(("escape", "`")));
        assert_eq!(split_directive("#escape = \\  "), Some(("escape", "\\")));
        assert_eq!(
            split_directive("# syntax=docker/dockerfile:1"),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(
            split_directive("# check=skip=JSONArgsRecommended;error=true"),
            Some(("check", "skip=JSONArgsRecommended;error=true"))
        );
        assert_eq!(split_directive("# escape="), None);
        assert_eq!(split_directive("# escape=  "), None);
        assert_eq!(split_directive("# 1x=a"), None);
        assert_eq!(split_directive("# a b=c"), None);
        assert_eq!(split_directive("FROM a"), None);
    }

    #[test]
    fn section_ends_at_first_non_directive() {
        let mut p = DirectiveParser::default();
        assert!(matches!(
            p.parse_line("# syntax=x"),
            DirectiveLine::Directive { .. }
        ));
        assert!(matches!(
            p.parse_line("# hello"),
            DirectiveLine::NotADirective
        ));
        assert!(matches!(
            p.parse_line("# escape=`"),
            DirectiveLine::NotADirective
        ));
    }
}
