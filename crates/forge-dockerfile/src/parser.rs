//! Bytes to [`Ast`]: a faithful port of BuildKit's `parser.Parse` and its line
//! parsers, plus spans.
//!
//! The input is read line by line. Directives are taken from the top; comment
//! lines are skipped (inside continuations too); a line ending in the escape
//! character continues on the next; the joined *logical line* is split into
//! keyword, `--flags` and arguments, and the arguments are split the way the
//! keyword wants (JSON or shell form, words, `key=value` pairs, ...). RUN, COPY
//! and ADD lines naming `<<EOF` heredocs then consume the following lines as
//! their bodies.
//!
//! Spans: a logical line is made of pieces of physical lines. [`LogicalLine`]
//! remembers where each piece came from, so a byte offset in the joined text
//! maps back to a line and column of the file.

use crate::ast::{Ast, Heredoc, Node};
use crate::diagnostic::Diagnostic;
use crate::directives::{DirectiveLine, DirectiveParser};
use crate::dump::go_quote;
use crate::json::{self, Element};
use crate::shell::Lexer;
use crate::span::{Pos, Span, Spanned};
use std::collections::BTreeMap;

/// A parse failure, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("file with no instructions")]
    NoInstructions,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("{0} must have two arguments")]
    MissingValue(&'static str),
    #[error("{0} requires at least one argument")]
    MissingArgument(&'static str),
    #[error("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(.0))]
    MissingEquals(String),
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    #[error("invalid heredoc delimiter: {0}")]
    HeredocDelimiter(String),
    /// `ONBUILD ONBUILD ...` deeper than [`MAX_ONBUILD_NESTING`]. BuildKit's
    /// parser has no limit (and its instruction layer then rejects any chain);
    /// ours keeps a line of `ONBUILD ONBUILD ...` from exhausting the stack.
    #[error("ONBUILD nested more than {0} levels deep (chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed)")]
    OnbuildTooDeep(usize),
}

/// How many `ONBUILD`s may wrap one another on a line before parsing fails.
pub const MAX_ONBUILD_NESTING: usize = 32;

impl From<ParseError> for Diagnostic {
    fn from(e: ParseError) -> Self {
        Diagnostic::error(e.span, e.kind.to_string())
    }
}

/// Parses a Dockerfile. Invalid UTF-8 is replaced (U+FFFD), never fatal.
pub fn parse(input: &[u8]) -> Result<Ast, ParseError> {
    let source = String::from_utf8_lossy(input);
    Parser::new(&source).run()
}

/// Go's `unicode.IsSpace`, which Rust's `char::is_whitespace` matches.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_re_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line)
        .trim_start_matches(is_space)
        .starts_with('#')
}

/// Byte offsets of line starts, for offset → line/column.
struct SourceMap<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
    /// Per line: all ASCII, so a column is a byte difference (the common case;
    /// counting characters for every span was a tenth of parse time).
    line_ascii: Vec<bool>,
    /// For sources that are not all ASCII: the number of characters before
    /// every [`CHAR_MARK_EVERY`]-th byte. A column on a non-ASCII line then
    /// counts at most that many bytes, not the line up to the position (which
    /// made a long non-ASCII line with many arguments quadratic).
    char_marks: Vec<usize>,
}

/// Bytes between two entries of [`SourceMap::char_marks`].
const CHAR_MARK_EVERY: usize = 64;

/// Whether `b` starts a UTF-8 character (is not a continuation byte).
fn starts_char(b: u8) -> bool {
    (b as i8) >= -0x40
}

impl<'a> SourceMap<'a> {
    fn new(source: &'a str) -> Self {
        let mut line_starts = vec![if source.starts_with('\u{feff}') { 3 } else { 0 }];
        line_starts.extend(memchr_newlines(source));
        let line_ascii = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = line_starts.get(i + 1).copied().unwrap_or(source.len());
                source.as_bytes()[start.min(end)..end].is_ascii()
            })
            .collect();
        let mut char_marks = Vec::new();
        if !source.is_ascii() {
            let mut chars = 0;
            for chunk in source.as_bytes().chunks(CHAR_MARK_EVERY) {
                char_marks.push(chars);
                chars += chunk.iter().filter(|&&b| starts_char(b)).count();
            }
            char_marks.push(chars);
        }
        SourceMap {
            source,
            line_starts,
            line_ascii,
            char_marks,
        }
    }

    /// The number of characters in `source[..offset]` (`offset` on a character
    /// boundary).
    fn chars_before(&self, offset: usize) -> usize {
        let offset = offset.min(self.source.len());
        let mark = offset / CHAR_MARK_EVERY;
        let from = mark * CHAR_MARK_EVERY;
        let counted = self.source.as_bytes()[from..offset]
            .iter()
            .filter(|&&b| starts_char(b))
            .count();
        self.char_marks.get(mark).copied().unwrap_or(0) + counted
    }

    fn pos(&self, offset: usize) -> Pos {
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        self.pos_on_line(offset, idx)
    }

    /// `pos` when the line index is already known (no search).
    fn pos_on_line(&self, offset: usize, idx: usize) -> Pos {
        let start = self.line_starts[idx].min(offset);
        let column = if self.line_ascii[idx] {
            offset - start
        } else {
            self.chars_before(offset) - self.chars_before(start)
        } + 1;
        Pos {
            line: idx as u32 + 1,
            column: column as u32,
            offset,
        }
    }

    /// The position just after the last character of the line holding `offset`
    /// (line ending excluded).
    fn end_of_line(&self, line: PhysLine<'_>) -> Pos {
        self.pos_on_line(line.start + trim_newline(line.text).len(), line.index)
    }
}

/// Offsets just past each `\n`.
fn memchr_newlines(source: &str) -> impl Iterator<Item = usize> + '_ {
    source
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'\n')
        .map(|(i, _)| i + 1)
}

/// One physical line: its text (line ending included) and where it starts.
#[derive(Clone, Copy)]
struct PhysLine<'a> {
    text: &'a str,
    start: usize,
    /// 0-based line number.
    index: usize,
}

/// A joined logical line and, for each piece, where it came from.
#[derive(Default)]
struct LogicalLine {
    text: String,
    /// (offset in `text`, offset in the source, source line index), sorted
    /// by the first. A piece never spans lines.
    pieces: Vec<(usize, usize, usize)>,
}

impl LogicalLine {
    fn push(&mut self, piece: &str, source_offset: usize, line: usize) {
        if piece.is_empty() {
            return;
        }
        self.pieces.push((self.text.len(), source_offset, line));
        self.text.push_str(piece);
    }

    /// Source position of the character starting at `at`.
    fn start_pos(&self, map: &SourceMap<'_>, at: usize) -> Pos {
        let i = self.pieces.partition_point(|&(l, _, _)| l <= at);
        match i.checked_sub(1).or((!self.pieces.is_empty()).then_some(0)) {
            Some(i) => {
                let (l, s, line) = self.pieces[i];
                map.pos_on_line(s + at.saturating_sub(l), line)
            }
            None => map.pos(0),
        }
    }

    /// Source position just past the character ending at `at`.
    fn end_pos(&self, map: &SourceMap<'_>, at: usize) -> Pos {
        let i = self.pieces.partition_point(|&(l, _, _)| l < at);
        match i.checked_sub(1) {
            Some(i) if at > 0 => {
                let (l, s, line) = self.pieces[i];
                map.pos_on_line(s + (at - l), line)
            }
            _ => self.start_pos(map, at),
        }
    }

    /// The source span of `[start, end)`. An empty range is a point at
    /// `start_pos`: at a piece boundary `end_pos` would give the end of the
    /// earlier piece, a line before the start (`ENV o\` + ` f`: the empty
    /// separator).
    fn span(&self, map: &SourceMap<'_>, start: usize, end: usize) -> Span {
        let from = self.start_pos(map, start);
        if end <= start {
            return Span::at(from);
        }
        Span::new(from, self.end_pos(map, end))
    }
}

/// An argument as the line parsers produce it: value and byte range in the
/// logical line.
struct RawArg {
    value: String,
    start: usize,
    end: usize,
}

struct RawNode {
    keyword: (String, usize, usize),
    flags: Vec<RawArg>,
    args: Vec<RawArg>,
    json: bool,
    onbuild: Option<Box<RawNode>>,
    args_range: (usize, usize),
}

/// An error inside one logical line, at a byte range of it.
struct LineError {
    kind: ParseErrorKind,
    range: Option<(usize, usize)>,
}

impl From<ParseErrorKind> for LineError {
    fn from(kind: ParseErrorKind) -> Self {
        LineError { kind, range: None }
    }
}

struct Parser<'a> {
    map: SourceMap<'a>,
    lines: Vec<PhysLine<'a>>,
    next_line: usize,
    escape: char,
    directives: DirectiveParser,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        for (index, text) in source.split_inclusive('\n').enumerate() {
            lines.push(PhysLine { text, start, index });
            start += text.len();
        }
        if let Some(first) = lines.first_mut() {
            // BuildKit's discardBOM: only on the first line.
            if let Some(rest) = first.text.strip_prefix('\u{feff}') {
                first.text = rest;
                first.start += 3;
            }
        }
        Parser {
            map: SourceMap::new(source),
            lines,
            next_line: 0,
            escape: '\\',
            directives: DirectiveParser::default(),
        }
    }

    fn next(&mut self) -> Option<PhysLine<'a>> {
        let line = self.lines.get(self.next_line).copied();
        self.next_line += 1;
        line
    }

    fn line_span(&self, line: PhysLine<'_>) -> Span {
        Span::new(
            self.map.pos_on_line(line.start, line.index),
            self.map.end_of_line(line),
        )
    }

    /// BuildKit's processLine: trims the line ending (and leading space when
    /// asked), feeds the directive parser, and blanks comment lines. Returns the
    /// kept text and its source offset.
    fn process_line(
        &mut self,
        line: PhysLine<'a>,
        strip_left: bool,
    ) -> Result<(&'a str, usize), ParseError> {
        let mut text = trim_newline(line.text);
        let mut start = line.start;
        if strip_left {
            let trimmed = text.trim_start_matches(is_space);
            start += text.len() - trimmed.len();
            text = trimmed;
        }
        match self.directives.parse_line(text) {
            DirectiveLine::NotADirective => {}
            DirectiveLine::Duplicate(name) => {
                return Err(ParseError {
                    kind: ParseErrorKind::DuplicateDirective(name),
                    span: self.line_span(line),
                })
            }
            DirectiveLine::Directive { name, value } => {
                if name == "escape" {
                    match value {
                        "\\" => self.escape = '\\',
                        "`" => self.escape = '`',
                        other => {
                            return Err(ParseError {
                                kind: ParseErrorKind::InvalidEscape(other.to_string()),
                                span: self.line_span(line),
                            })
                        }
                    }
                }
                let span = self.line_span(line);
                self.directives.parsed.push(crate::directives::Directive {
                    name,
                    value: value.to_string(),
                    span,
                });
            }
        }
        if is_comment(text) {
            text = "";
        }
        Ok((text, start))
    }

    /// BuildKit's trimContinuationCharacter: a line ending in an odd number of
    /// escape characters (then optional blanks) goes on; one escape and the
    /// blanks are removed. An escaped escape (`\\\\` at the end) does not
    /// continue; an escape alone on its line does.
    fn trim_continuation<'s>(&self, line: &'s str) -> (&'s str, bool) {
        let body = line.trim_end_matches([' ', '\t']);
        let without = body.trim_end_matches(self.escape);
        let count = (body.len() - without.len()) / self.escape.len_utf8();
        if count % 2 == 1 {
            (&body[..body.len() - self.escape.len_utf8()], false)
        } else {
            (line, true)
        }
    }

    fn run(mut self) -> Result<Ast, ParseError> {
        let mut nodes = Vec::new();
        let mut warnings = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        while let Some(first) = self.next() {
            if is_comment(first.text) {
                // BuildKit trims from the second byte of the untrimmed line.
                let mut chars = first.text.chars();
                chars.next();
                let comment = chars.as_str().trim();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment.to_string());
                }
            }
            let (text, start) = self.process_line(first, true)?;
            let (kept, mut end_of_line) = self.trim_continuation(text);
            if end_of_line && kept.is_empty() {
                continue;
            }
            let mut logical = LogicalLine::default();
            logical.push(kept, start, first.index);
            let mut last = first;
            let mut empty_continuation = false;
            while !end_of_line {
                let Some(line) = self.next() else { break };
                last = line;
                let (text, start) = self.process_line(line, false)?;
                if is_comment(line.text) {
                    continue;
                }
                if text.trim_start_matches(is_space).is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (kept, end) = self.trim_continuation(text);
                end_of_line = end;
                logical.push(kept, start, line.index);
            }
            let instruction_start = logical.start_pos(
                &self.map,
                logical.text.len() - logical.text.trim_start_matches(is_space).len(),
            );
            let line_error = |this: &Self, last: PhysLine<'_>, e: LineError| {
                let span = match e.range {
                    Some((s, t)) => logical.span(&this.map, s, t),
                    None => Span::new(instruction_start, this.map.end_of_line(last)),
                };
                ParseError { kind: e.kind, span }
            };
            if empty_continuation {
                warnings.push(Diagnostic::warning(
                    Span::new(instruction_start, self.map.end_of_line(last)),
                    format!("Empty continuation line found in: {}", logical.text),
                ));
            }
            let raw = match node_from_line(&logical.text, 0, self.escape, 0) {
                Ok(raw) => raw,
                Err(e) => return Err(line_error(&self, last, e)),
            };
            let mut heredocs = Vec::new();
            if can_contain_heredoc(&raw) && logical.text.contains("<<") {
                let found = match heredocs_from_line(&logical.text) {
                    Ok(found) => found,
                    Err(e) => return Err(line_error(&self, last, e)),
                };
                for (name, expand, chomp, fd) in found {
                    let mut content = String::new();
                    let mut terminated = false;
                    let body_start = self.lines.get(self.next_line).map(|l| l.start);
                    while let Some(line) = self.next() {
                        last = line;
                        let mut candidate = trim_newline(line.text);
                        if chomp {
                            candidate = candidate.trim_start_matches('\t');
                        }
                        if candidate == name {
                            terminated = true;
                            break;
                        }
                        content.push_str(line.text);
                    }
                    if !terminated {
                        return Err(line_error(
                            &self,
                            last,
                            ParseErrorKind::UnterminatedHeredoc.into(),
                        ));
                    }
                    let span = Span::new(
                        self.map.pos(body_start.unwrap_or(last.start)),
                        self.map.end_of_line(last),
                    );
                    heredocs.push(Heredoc {
                        name,
                        content,
                        expand,
                        chomp,
                        file_descriptor: fd,
                        span,
                    });
                }
            }
            let span = Span::new(instruction_start, self.map.end_of_line(last));
            let original = std::mem::take(&mut logical.text);
            let mut node = self.finish_with(&logical, raw, span, original);
            node.heredocs = heredocs;
            node.comments = std::mem::take(&mut comments);
            nodes.push(node);
        }
        if nodes.is_empty() {
            return Err(ParseError {
                kind: ParseErrorKind::NoInstructions,
                span: Span::at(self.map.pos(self.lines.first().map_or(0, |l| l.start))),
            });
        }
        Ok(Ast {
            directives: self.directives.parsed,
            escape: self.escape,
            nodes,
            warnings,
        })
    }

    fn finish_with(
        &self,
        logical: &LogicalLine,
        raw: RawNode,
        span: Span,
        original: String,
    ) -> Node {
        let spanned = |a: RawArg| Spanned::new(a.value, logical.span(&self.map, a.start, a.end));
        let onbuild = raw
            .onbuild
            .map(|inner| Box::new(self.finish_with(logical, *inner, span, original.clone())));
        let (kw, ks, ke) = raw.keyword;
        Node {
            keyword: spanned(RawArg {
                value: kw,
                start: ks,
                end: ke,
            }),
            flags: raw.flags.into_iter().map(spanned).collect(),
            args: raw.args.into_iter().map(spanned).collect(),
            json: raw.json,
            onbuild,
            heredocs: Vec::new(),
            original,
            comments: Vec::new(),
            span,
            args_span: logical.span(&self.map, raw.args_range.0, raw.args_range.1),
        }
    }
}

/// The instructions whose arguments may name heredocs (ONBUILD looks at the
/// instruction it wraps), in shell form only.
fn can_contain_heredoc(node: &RawNode) -> bool {
    let node = match &node.onbuild {
        Some(inner) if node.keyword.0.eq_ignore_ascii_case("onbuild") => inner,
        _ => node,
    };
    let name = node.keyword.0.to_ascii_lowercase();
    matches!(name.as_str(), "add" | "copy" | "run") && !node.json
}

/// BuildKit's heredocsFromLine: the words of the line (lexed with raw quotes
/// and escapes) that look like `[fd]<<[-]WORD`. Returns (name, expand, chomp, fd).
fn heredocs_from_line(line: &str) -> Result<Vec<(String, bool, bool, u32)>, LineError> {
    let env: BTreeMap<String, String> = BTreeMap::new();
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    let Ok(words) = lexer.process_words(line, &env) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// `^(\d*)<<(-?)([^<]*)$`, then the delimiter lexed with and without quotes
/// removed: if they differ in quote count, part of it was quoted and the body
/// is not expanded.
fn parse_heredoc(word: &str) -> Result<Option<(String, bool, bool, u32)>, LineError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    // Go's ParseUint error (overflow) gives 0, as BuildKit ignores it.
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let env: BTreeMap<String, String> = BTreeMap::new();
    let bad = |e: crate::shell::ShellError| {
        LineError::from(ParseErrorKind::HeredocDelimiter(e.to_string()))
    };
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer.process_words(rest, &env).map_err(bad)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &env).map_err(bad)?;
    if raw.len() != 1 {
        return Err(ParseErrorKind::HeredocDelimiter(rest.to_string()).into());
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some((words[0].clone(), expand, chomp, fd)))
}

/// BuildKit's newNodeFromLine on `text`, which starts at byte `base` of the
/// logical line, inside `onbuild_depth` ONBUILDs.
fn node_from_line(
    text: &str,
    base: usize,
    escape: char,
    onbuild_depth: usize,
) -> Result<RawNode, LineError> {
    let lead = text.len() - text.trim_start_matches(is_space).len();
    let trimmed = text.trim_matches(is_space);
    let cmd_end = trimmed.find(is_re_whitespace).unwrap_or(trimmed.len());
    let keyword = (
        trimmed[..cmd_end].to_string(),
        base + lead,
        base + lead + cmd_end,
    );
    let after_cmd = &trimmed[cmd_end..];
    let remainder = after_cmd.trim_start_matches(is_re_whitespace);
    let remainder_base = base + lead + cmd_end + (after_cmd.len() - remainder.len());
    let (rest_offset, flags) = if remainder.is_empty() {
        (0, Vec::new())
    } else {
        extract_builder_flags(remainder, remainder_base)
    };
    let rest_raw = &remainder[rest_offset..];
    let rest_lead = rest_raw.len() - rest_raw.trim_start_matches(is_space).len();
    let rest = rest_raw.trim_matches(is_space);
    let rest_base = remainder_base + rest_offset + rest_lead;
    let args_range = (rest_base, rest_base + rest.len());

    let mut node = RawNode {
        keyword,
        flags,
        args: Vec::new(),
        json: false,
        onbuild: None,
        args_range,
    };
    let whole = |value: &str| RawArg {
        value: value.to_string(),
        start: rest_base,
        end: rest_base + value.len(),
    };
    match node.keyword.0.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => {
            (node.args, node.json) = maybe_json_to_list(rest, rest_base)?;
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            (node.args, node.json) = maybe_json(rest, rest_base)?;
        }
        "arg" => {
            node.args = parse_words(rest, rest_base, escape);
        }
        "env" => node.args = name_val(rest, rest_base, "ENV", escape)?,
        "label" => node.args = name_val(rest, rest_base, "LABEL", escape)?,
        "expose" | "from" => node.args = whitespace_delimited(rest, rest_base),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args = vec![whole(rest)];
            }
        }
        "healthcheck" => {
            let sep = rest.find(is_space).unwrap_or(rest.len());
            if sep > 0 {
                let after = &rest[sep..];
                let cmd = after.trim_start_matches(is_space);
                let cmd_base = rest_base + sep + (after.len() - cmd.len());
                let (args, json) = maybe_json(cmd, cmd_base)?;
                node.args = std::iter::once(whole(&rest[..sep])).chain(args).collect();
                node.json = json;
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                if onbuild_depth >= MAX_ONBUILD_NESTING {
                    return Err(LineError {
                        kind: ParseErrorKind::OnbuildTooDeep(MAX_ONBUILD_NESTING),
                        range: Some((node.keyword.1, node.keyword.2)),
                    });
                }
                let inner = node_from_line(rest, rest_base, escape, onbuild_depth + 1)?;
                node.onbuild = Some(Box::new(inner));
            }
        }
        // Unknown instructions keep their text; the instruction layer rejects them.
        _ => {
            if !rest.is_empty() {
                node.args = vec![whole(rest)];
            }
        }
    }
    Ok(node)
}

/// BuildKit's extractBuilderFlags: leading `--word`s (quotes and `\` escapes
/// removed), up to the first word not starting with `--` or a lone `--`.
/// Returns the offset where the arguments start and the flags.
fn extract_builder_flags(line: &str, base: usize) -> (usize, Vec<RawArg>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    loop {
        let Some((pos, ch)) = chars.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(RawArg {
                    value: word,
                    start: base + word_start,
                    end: base + line.len(),
                });
            }
            return (line.len(), flags);
        };
        match phase {
            Phase::Spaces => {
                if is_space(ch) {
                    continue;
                }
                if ch != '-' || chars.peek().map(|&(_, c)| c) != Some('-') {
                    return (pos, flags);
                }
                phase = Phase::Word;
                word_start = pos;
                word.push(ch);
            }
            Phase::Word => {
                if is_space(ch) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (pos, flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(RawArg {
                            value: std::mem::take(&mut word),
                            start: base + word_start,
                            end: base + pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
}

/// BuildKit's parseWords: white-space separated words, quotes and escapes
/// kept (they are removed later by the shell lexer).
fn parse_words(rest: &str, base: usize, escape: char) -> Vec<RawArg> {
    let mut words = Vec::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut word = String::new();
    let mut start = 0;
    let mut blank_ok = false;
    let mut chars = rest.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if !in_word {
            if is_space(ch) {
                continue;
            }
            in_word = true;
            start = pos;
        }
        match quote {
            None => {
                if is_space(ch) {
                    in_word = false;
                    if blank_ok || !word.is_empty() {
                        words.push(RawArg {
                            value: std::mem::take(&mut word),
                            start: base + start,
                            end: base + pos,
                        });
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    match chars.next() {
                        // An escape at the very end is dropped.
                        None => continue,
                        Some((_, next)) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        None => {
                            quote = None;
                            continue;
                        }
                        Some((_, next)) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(RawArg {
            value: word,
            start: base + start,
            end: base + rest.len(),
        });
    }
    words
}

/// ENV and LABEL: `KEY value` (legacy) or `k=v k2=v2 ...`, flattened into
/// `key, value, separator` triples.
fn name_val(
    rest: &str,
    base: usize,
    key: &'static str,
    escape: char,
) -> Result<Vec<RawArg>, LineError> {
    let words = parse_words(rest, base, escape);
    let Some(first) = words.first() else {
        if key == "LABEL" {
            return Err(ParseErrorKind::MissingArgument(key).into());
        }
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if !first.value.contains('=') {
        let Some(sep) = rest.find(is_re_whitespace) else {
            return Err(ParseErrorKind::MissingValue(key).into());
        };
        let after = &rest[sep..];
        let value = after.trim_start_matches(is_re_whitespace);
        let value_start = base + sep + (after.len() - value.len());
        out.push(RawArg {
            value: rest[..sep].to_string(),
            start: base,
            end: base + sep,
        });
        out.push(RawArg {
            value: value.to_string(),
            start: value_start,
            end: value_start + value.len(),
        });
        out.push(RawArg {
            value: String::new(),
            start: base + sep,
            end: base + sep,
        });
        return Ok(out);
    }
    for word in words {
        let Some(eq) = word.value.find('=') else {
            return Err(LineError {
                range: Some((word.start, word.end)),
                kind: ParseErrorKind::MissingEquals(word.value),
            });
        };
        // Quotes and escapes are kept, so the '=' sits at the same byte in the source.
        let eq_at = word.start + eq;
        out.push(RawArg {
            value: word.value[..eq].to_string(),
            start: word.start,
            end: eq_at,
        });
        out.push(RawArg {
            value: word.value[eq + 1..].to_string(),
            start: eq_at + 1,
            end: word.end,
        });
        out.push(RawArg {
            value: "=".to_string(),
            start: eq_at,
            end: eq_at + 1,
        });
    }
    Ok(out)
}

fn whitespace_delimited(rest: &str, base: usize) -> Vec<RawArg> {
    let mut out = Vec::new();
    if rest.is_empty() {
        return out;
    }
    let mut start = 0;
    let mut in_gap = false;
    for (pos, ch) in rest.char_indices() {
        if is_re_whitespace(ch) {
            if !in_gap {
                out.push(RawArg {
                    value: rest[start..pos].to_string(),
                    start: base + start,
                    end: base + pos,
                });
                in_gap = true;
            }
        } else if in_gap {
            start = pos;
            in_gap = false;
        }
    }
    if !in_gap {
        out.push(RawArg {
            value: rest[start..].to_string(),
            start: base + start,
            end: base + rest.len(),
        });
    }
    out
}

/// `Some` when `rest` is a JSON array of strings; an error when it is JSON
/// but not all strings; `None` (shell form) otherwise.
fn json_args(rest: &str, base: usize) -> Result<Option<Vec<RawArg>>, LineError> {
    let trimmed = rest.trim_start_matches(is_space);
    if !trimmed.starts_with('[') {
        return Ok(None);
    }
    let base = base + (rest.len() - trimmed.len());
    let Some(elements) = json::parse_array(trimmed) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(elements.len());
    for el in elements {
        match el {
            Element::Str { value, start, end } => out.push(RawArg {
                value,
                start: base + start,
                end: base + end,
            }),
            Element::NotString => {
                return Err(LineError {
                    kind: ParseErrorKind::NotStringArray,
                    range: Some((base, base + trimmed.len())),
                })
            }
        }
    }
    Ok(Some(out))
}

fn maybe_json(rest: &str, base: usize) -> Result<(Vec<RawArg>, bool), LineError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match json_args(rest, base)? {
        Some(args) => (args, true),
        None => (
            vec![RawArg {
                value: rest.to_string(),
                start: base,
                end: base + rest.len(),
            }],
            false,
        ),
    })
}

fn maybe_json_to_list(rest: &str, base: usize) -> Result<(Vec<RawArg>, bool), LineError> {
    Ok(match json_args(rest, base)? {
        Some(args) => (args, true),
        None => (whitespace_delimited(rest, base), false),
    })
}
