//! Shell-word lexing and variable expansion, as BuildKit's `frontend/dockerfile/shell`
//! package does it.
//!
//! Instructions that expand variables (see [`expands_variables`]) hand each of their
//! words to a [`Lexer`] together with the variables in scope (anything that implements
//! [`ShellEnv`]). The lexer removes quotes and escapes and substitutes `$VAR`, `${VAR}`
//! and the `${VAR<modifier>word}` forms below; it runs no commands, globs no files and
//! never consults the process environment. `RUN`, `CMD` and `ENTRYPOINT` do not come
//! here: their shell does the expansion when the step runs.
//!
//! | form | result |
//! |---|---|
//! | `$VAR`, `${VAR}` | the value, or empty when unset (`$` before a non-name char stays literal) |
//! | `${VAR:-w}` / `${VAR-w}` | `w` when unset or empty / when unset |
//! | `${VAR:+w}` / `${VAR+w}` | `w` when set and not empty / when set |
//! | `${VAR:?m}` / `${VAR?m}` | an error carrying `m` when unset or empty / when unset |
//! | `${VAR#p}` / `${VAR##p}` | remove the shortest / longest prefix matching the pattern `p` |
//! | `${VAR%p}` / `${VAR%%p}` | remove the shortest / longest suffix matching `p` |
//! | `${VAR/p/r}` / `${VAR//p/r}` | replace the first / every match of `p` with `r` |
//!
//! Patterns are BuildKit's subset of shell globs: `*` (any run of characters), `?` (one
//! character) and `\*`, `\?`, `\\` for the literal characters; like BuildKit neither
//! wildcard matches a newline and `[...]` is not a bracket expression but literal text.
//!
//! [`Lexer::process_word`] gives one string (what `ENV`, `COPY`, `WORKDIR`, ... use),
//! [`Lexer::process_words`] splits the result into words the way BuildKit does for
//! `EXPOSE`: white space that came from the word itself or from a variable's value
//! separates words, white space inside quotes or escaped does not.
//! [`Lexer::process_word_with_matches`] also reports which variables were referenced and
//! which of them were unset, for the `UndefinedVar` lint.
//!
//! The behaviour, quirks included, is BuildKit's `lex.go`, checked against its
//! `envVarTest` and `wordsTest` vectors (`tests/shell_vectors.rs`). Errors are a
//! [`ShellError`] whose message is BuildKit's and which also carries the character
//! offset of the construct that failed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// How deeply `${VAR:-${...}}` expansions may nest before the lexer gives up.
///
/// BuildKit has no limit (Go stacks grow); a limit keeps a hostile word from exhausting
/// our stack. Real Dockerfiles nest two or three levels.
pub const MAX_NESTING: usize = 128;

/// How much work the `$` expansions of one word may take before the lexer gives up
/// (the default of [`Lexer::max_expansion`]):
/// the bytes every expansion produces, all nesting levels counted, plus for each
/// pattern match (`#`, `%`, `/`) the value's length times the pattern's.
///
/// BuildKit has no limit. Without one a short word asks for exponential work
/// (`${a///${a///...}}` multiplies the length of `a` at every level) or quadratic work
/// (`$a$a$a...` or `${a##*}${a##*}...` with a long `a`). 16 MiB is 128 times what
/// Linux allows a single argument or environment string.
pub const MAX_EXPANSION: usize = 16 << 20;

/// Variables in scope for an expansion: a name → value lookup.
///
/// Names are compared exactly (case-sensitive, as BuildKit does on Unix).
pub trait ShellEnv {
    /// The value of `name`, or `None` when it is not set. A variable set to the empty
    /// string is `Some("")`; the `:` modifiers treat that as unset, the others do not.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> ShellEnv for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl ShellEnv for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// An ordered list of assignments; a later entry overrides an earlier one of the same
/// name, as with BuildKit's `EnvsFromSlice` and an image config's `Env`.
impl ShellEnv for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl ShellEnv for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        ShellEnv::get(self.as_slice(), name)
    }
}

impl<T: ShellEnv + ?Sized> ShellEnv for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// Whether the arguments of `instruction` (a Dockerfile instruction name, any case) go
/// through variable expansion, per the Dockerfile reference's "Environment replacement"
/// and BuildKit's `dockerfile2llb`.
///
/// True for `ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR` and `ARG`.
/// `EXPOSE` splits its expanded arguments into words ([`Lexer::process_words`]); `FROM`
/// sees only the global `ARG`s. `ONBUILD` is false: its trigger is stored verbatim and
/// expanded when it runs in a child build, as the instruction it wraps (ask for that
/// one). `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`, `HEALTHCHECK` and `MAINTAINER` are false:
/// their text is left to the shell. Flag values (`RUN --mount=...`, `COPY --chown=...`)
/// are expanded by the instructions that own them, whatever this function says.
pub fn expands_variables(instruction: &str) -> bool {
    const EXPANDING: [&str; 11] = [
        "add",
        "arg",
        "copy",
        "env",
        "expose",
        "from",
        "label",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    ];
    EXPANDING
        .iter()
        .any(|name| name.eq_ignore_ascii_case(instruction))
}

/// The shell-word lexer: BuildKit's `shell.Lex`.
///
/// Stateless between calls, so one `Lexer` can be shared freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    /// Keep the quote characters in the result (`'a'` gives `'a'`, not `a`).
    pub raw_quotes: bool,
    /// Keep escape characters in the result (`\$x` gives `\$x`; the `$` is still not
    /// expanded).
    pub raw_escapes: bool,
    /// Treat `'` and `"` as ordinary characters (BuildKit uses this for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as they were written (`$X`, `${X:-w}`)
    /// instead of substituting.
    pub skip_unset_env: bool,
    /// The most work expanding one word may take, [`MAX_EXPANSION`] unless changed
    /// (the fuzz target lowers it to try more words a second).
    pub max_expansion: usize,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// The full outcome of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, as [`Lexer::process_word`] returns it.
    pub value: String,
    /// The expanded word split into words, as [`Lexer::process_words`] returns it.
    pub words: Vec<String>,
    /// Variables referenced that were set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Variables referenced that were not set.
    pub unmatched: BTreeSet<String>,
}

impl Lexer {
    /// A lexer whose escape character is `escape` (`\` by default, `` ` `` after an
    /// `# escape=`` ` `` directive).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
            max_expansion: MAX_EXPANSION,
        }
    }

    /// The escape character this lexer was made with.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Removes quotes and escapes from `word` and substitutes the variables of `env`.
    pub fn process_word<E: ShellEnv + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<String, ShellError> {
        self.process(word, env).map(|expansion| expansion.value)
    }

    /// Like [`process_word`](Self::process_word), then splits the result into words on
    /// unquoted, unescaped white space, including white space inside variable values.
    /// Empty words are dropped.
    pub fn process_words<E: ShellEnv + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ShellError> {
        self.process(word, env).map(|expansion| expansion.words)
    }

    /// Like [`process_word`](Self::process_word), and also reports which variables
    /// were referenced and which of those were unset (BuildKit's
    /// `ProcessWordWithMatches`).
    pub fn process_word_with_matches<E: ShellEnv + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Expansion, ShellError> {
        self.process(word, env)
    }

    fn process<E: ShellEnv + ?Sized>(&self, word: &str, env: &E) -> Result<Expansion, ShellError> {
        let mut state = WordState {
            lex: self,
            scanner: Scanner::new(word),
            env,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            expanded: 0,
        };
        match state.process_stop_on(None, self.raw_escapes, 0) {
            Ok((value, words)) => Ok(Expansion {
                value,
                words,
                matched: state.matched,
                unmatched: state.unmatched,
            }),
            Err(Located { offset, kind }) => Err(ShellError {
                word: word.to_owned(),
                offset,
                kind,
            }),
        }
    }
}

/// A word that could not be expanded.
///
/// Displays as BuildKit does: `failed to process "<word>": <kind>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ShellError {
    /// The word as it was given to the lexer.
    pub word: String,
    /// Offset in characters (not bytes) into `word` of the construct that failed: the
    /// opening quote of an unterminated string, or the `$` of a failed expansion.
    pub offset: usize,
    /// What went wrong.
    pub kind: ShellErrorKind,
}

/// What went wrong while expanding a word. The messages are BuildKit's, except where
/// BuildKit's would be unhelpful (noted on the variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellErrorKind {
    /// A `'` without its closing `'`.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` without its closing `"`.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// A `${` without its closing `}`. (For `${NAME` cut off right after the name,
    /// BuildKit says "unsupported modifier (\u{FFFD}) in substitution".)
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// A `${VAR/pattern` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${:...}` or `${{...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A `${VAR<modifier>...}` form BuildKit does not support, such as `${VAR:=w}`,
    /// `${VAR:#p}`, `${#VAR}` or `${VAR:1:2}`.
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`:=`, `=`, ...).
        modifier: String,
    },
    /// `${VAR?message}` or `${VAR:?message}` with `VAR` unset.
    #[error("{name}: {message}")]
    Unset {
        /// The variable.
        name: String,
        /// The expanded message, or BuildKit's default "is not allowed to be unset".
        message: String,
    },
    /// `${VAR:?message}` with `VAR` set to the empty string.
    #[error("{name}: {message}")]
    Empty {
        /// The variable.
        name: String,
        /// The expanded message, or BuildKit's default "is not allowed to be empty".
        message: String,
    },
    /// A pattern with a `\` before something other than `*`, `?`, `\`, `}` or `/`.
    /// (For `${VAR%pattern}` BuildKit quotes the pattern reversed; this quotes it as
    /// written, and names a trailing `\` as such rather than as U+FFFD.)
    #[error("invalid pattern ({pattern}) in substitution: {}", invalid_escape_message(*.escaped))]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// The character after the `\`, `None` when the `\` ends the pattern.
        escaped: Option<char>,
    },
    /// Expansions nested deeper than [`MAX_NESTING`].
    #[error("expansions nested deeper than {limit} levels")]
    TooDeep {
        /// The limit, [`MAX_NESTING`].
        limit: usize,
    },
    /// Expanding the word would take more work than [`Lexer::max_expansion`] allows.
    #[error("expansion larger than {limit} bytes")]
    TooLarge {
        /// The limit, [`Lexer::max_expansion`].
        limit: usize,
    },
}

fn invalid_escape_message(escaped: Option<char>) -> String {
    match escaped {
        Some(ch) => format!("invalid escape '\\{ch}'"),
        None => "invalid escape '\\' at end of pattern".to_owned(),
    }
}

/// An error with the character offset it happened at, before the word is attached.
struct Located {
    offset: usize,
    kind: ShellErrorKind,
}

impl Located {
    fn at(offset: usize, kind: ShellErrorKind) -> Self {
        Located { offset, kind }
    }
}

/// A cursor over the characters of a word, with Go `text/scanner`'s `Peek`/`Next`.
struct Scanner {
    chars: Vec<char>,
    pos: usize,
}

impl Scanner {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        // Go's text/scanner drops a byte-order mark at the very start of its input, and
        // BuildKit scans every word with one, so a leading U+FEFF disappears there too.
        let pos = usize::from(chars.first() == Some(&'\u{FEFF}'));
        Scanner { chars, pos }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
}

/// Word splitting as BuildKit's `wordsStruct`: characters that come from the word
/// itself or from a variable's value split on white space; quoted strings and escaped
/// characters never do.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        // Go's unicode.IsSpace is the Unicode White_Space property, as char::is_whitespace.
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// One expansion in progress: BuildKit's `shellWord`.
struct WordState<'a, E: ?Sized> {
    lex: &'a Lexer,
    scanner: Scanner,
    env: &'a E,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    /// Work done by expansions so far, against [`Lexer::max_expansion`].
    expanded: usize,
}

impl<'a, E: ShellEnv + ?Sized> WordState<'a, E> {
    /// Reads up to `stop` (consuming it) or to the end of the word when `stop` is
    /// `None`, giving the expanded text and its words. `raw_escapes` applies while
    /// reading this part and is restored afterwards.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        depth: usize,
    ) -> Result<(String, Vec<String>), Located> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.read_until(stop, depth);
        self.raw_escapes = saved;
        result
    }

    fn read_until(
        &mut self,
        stop: Option<char>,
        depth: usize,
    ) -> Result<(String, Vec<String>), Located> {
        let start = self.scanner.pos;
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;

        while let Some(ch) = self.scanner.peek() {
            if stop == Some(ch) {
                self.scanner.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let value = self.process_dollar(depth)?;
                result.push_str(&value);
                words.add_string(&value);
                continue;
            }
            if quotes && (ch == '\'' || ch == '"') {
                let value = if ch == '\'' {
                    self.process_single_quote()?
                } else {
                    self.process_double_quote(depth)?
                };
                result.push_str(&value);
                words.add_raw_string(&value);
                continue;
            }

            self.scanner.next();
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // The escape character escapes anything, and vanishes at the end.
                let Some(escaped) = self.scanner.next() else {
                    break;
                };
                words.add_raw_char(escaped);
                result.push(escaped);
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }

        match stop {
            // The caller (process_dollar) reports this as the `${` it was reading.
            Some('/') => Err(Located::at(start, ShellErrorKind::MissingSlash)),
            Some(_) => Err(Located::at(start, ShellErrorKind::MissingBrace)),
            None => Ok((result, words.finish())),
        }
    }

    /// `'...'`: every character literal; a `'` cannot be escaped inside.
    fn process_single_quote(&mut self) -> Result<String, Located> {
        let open = self.scanner.pos;
        let mut result = String::new();
        if let Some(quote) = self.scanner.next() {
            if self.lex.raw_quotes {
                result.push(quote);
            }
        }
        loop {
            match self.scanner.next() {
                None => {
                    return Err(Located::at(open, ShellErrorKind::UnterminatedSingleQuote));
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"..."`: literal except `$` expansions and the escape character before `"`, `$`
    /// or itself; before anything else the escape character stays.
    fn process_double_quote(&mut self, depth: usize) -> Result<String, Located> {
        let open = self.scanner.pos;
        let mut result = String::new();
        if let Some(quote) = self.scanner.next() {
            if self.lex.raw_quotes {
                result.push(quote);
            }
        }
        loop {
            match self.scanner.peek() {
                None => {
                    return Err(Located::at(open, ShellErrorKind::UnterminatedDoubleQuote));
                }
                Some('"') => {
                    self.scanner.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar(depth)?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.scanner.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.scanner.peek() {
                            // An escape at the very end is dropped; the quote is
                            // unterminated anyway.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.scanner.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `$NAME`, `${NAME}` and `${NAME<modifier>...}`, the scanner on the `$`; the
    /// result counts against [`Lexer::max_expansion`].
    fn process_dollar(&mut self, depth: usize) -> Result<String, Located> {
        let dollar = self.scanner.pos;
        let value = self.expand_dollar(depth)?;
        self.charge(value.len(), dollar)?;
        Ok(value)
    }

    /// Counts `work` against [`Lexer::max_expansion`]; an error at `dollar` past it.
    fn charge(&mut self, work: usize, dollar: usize) -> Result<(), Located> {
        self.expanded = self.expanded.saturating_add(work);
        if self.expanded > self.lex.max_expansion {
            return Err(Located::at(dollar, self.too_large()));
        }
        Ok(())
    }

    fn expand_dollar(&mut self, depth: usize) -> Result<String, Located> {
        let dollar = self.scanner.pos;
        let located = |kind| Located::at(dollar, kind);
        self.scanner.next();

        if self.scanner.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                // `$` before anything that cannot start a name stays literal.
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value.to_owned(),
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }

        self.scanner.next();
        match self.scanner.peek() {
            None => return Err(located(ShellErrorKind::MissingBrace)),
            Some('{' | '}' | ':') => return Err(located(ShellErrorKind::BadSubstitution)),
            Some(_) => {}
        }
        if depth >= MAX_NESTING {
            return Err(located(ShellErrorKind::TooDeep { limit: MAX_NESTING }));
        }
        let name = self.process_name();
        // BuildKit reports a `${NAME` cut off here as the modifier U+FFFD.
        let ch = self
            .scanner
            .next()
            .ok_or_else(|| located(ShellErrorKind::MissingBrace))?;

        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(value) => value.to_owned(),
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = String::from(ch);
                let mut op = Some(ch);
                let null_is_unset = ch == ':';
                if null_is_unset {
                    op = self.scanner.next();
                    // At the end of the word the `}` is missing, reported just below.
                    modifier.push(op.unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                // Patterns keep their escapes so that `\*` can stay a literal `*`.
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(located(ShellErrorKind::UnsupportedModifier { modifier }));
                }
                let word = self.nested(Some('}'), raw, depth, dollar)?;

                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset = match value {
                    None => true,
                    Some(value) => null_is_unset && value.is_empty(),
                };
                match op {
                    Some('-') => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default().to_owned()
                    }),
                    Some('+') => Ok(if unset { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(located(ShellErrorKind::Unset {
                            name,
                            message: message_or(word, "is not allowed to be unset"),
                        })),
                        Some(value) if null_is_unset && value.is_empty() => {
                            Err(located(ShellErrorKind::Empty {
                                name,
                                message: message_or(word, "is not allowed to be empty"),
                            }))
                        }
                        Some(value) => Ok(value.to_owned()),
                    },
                    Some(op @ ('#' | '%')) => {
                        // `##`/`%%` arrive as `#`/`%` followed by a word starting with
                        // the same character (so do `#$X` with X starting with `#`).
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest.to_owned(), true),
                            None => (word, false),
                        };
                        let value = value.unwrap_or_default();
                        self.charge(value.len().saturating_mul(pattern.len() + 1), dollar)?;
                        let trimmed = if op == '#' {
                            trim_prefix(&pattern, value, greedy)
                        } else {
                            trim_suffix(&pattern, value, greedy)
                        };
                        trimmed.map_err(|escaped| {
                            located(ShellErrorKind::InvalidPattern { pattern, escaped })
                        })
                    }
                    _ => Err(located(ShellErrorKind::UnsupportedModifier { modifier })),
                }
            }
            '/' => {
                let replace_all = self.scanner.peek() == Some('/');
                if replace_all {
                    self.scanner.next();
                }
                let pattern = self.nested(Some('/'), true, depth, dollar)?;
                let replacement = self.nested(Some('}'), true, depth, dollar)?;

                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    // BuildKit writes `${X//p/r}` back with a single `/`.
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                // An unset variable is matched as the empty string, so a pattern that
                // matches nothing still inserts the replacement.
                let value = value.unwrap_or_default();
                self.charge(value.len().saturating_mul(pattern.len() + 1), dollar)?;
                let program = Program::compile(&pattern, true).map_err(|escaped| {
                    located(ShellErrorKind::InvalidPattern {
                        pattern: pattern.clone(),
                        escaped,
                    })
                })?;
                let value: Vec<char> = value.chars().collect();
                if replace_all {
                    // The one expansion whose result can be far longer than its
                    // inputs: stop building it once it is over the limit.
                    let room = self.lex.max_expansion.saturating_sub(self.expanded);
                    program
                        .replace_all(&value, &replacement, room)
                        .ok_or_else(|| located(self.too_large()))
                } else {
                    Ok(program.replace_first(&value, &replacement))
                }
            }
            other => Err(located(ShellErrorKind::UnsupportedModifier {
                modifier: other.to_string(),
            })),
        }
    }

    /// The word part of a `${...}` form, up to `stop`. When the word runs out, BuildKit
    /// reports the `${` as unterminated, whatever failed inside.
    fn nested(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        depth: usize,
        dollar: usize,
    ) -> Result<String, Located> {
        match self.process_stop_on(stop, raw_escapes, depth + 1) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.scanner.at_end() => {
                let kind = if stop == Some('/') {
                    ShellErrorKind::MissingSlash
                } else {
                    ShellErrorKind::MissingBrace
                };
                Err(Located::at(dollar, kind))
            }
            Err(err) => Err(err),
        }
    }

    /// A variable name after `$` or `${`: a run of digits (positional parameters), one
    /// special parameter character, or letters, digits and `_`. May be empty.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.scanner.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(digit) = self.scanner.peek().filter(|ch| is_go_digit(*ch)) {
                    self.scanner.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.scanner.next();
                return ch.to_string();
            }
            if !is_go_letter(ch) && !is_go_digit(ch) && ch != '_' {
                break;
            }
            self.scanner.next();
            name.push(ch);
        }
        name
    }

    fn too_large(&self) -> ShellErrorKind {
        ShellErrorKind::TooLarge {
            limit: self.lex.max_expansion,
        }
    }

    /// The value of `name`, borrowed: a lookup whose value is not used costs nothing.
    fn get_env(&mut self, name: &str) -> Option<&'a str> {
        let env: &'a E = self.env;
        match env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_owned());
                Some(value)
            }
            None => {
                self.unmatched.insert(name.to_owned());
                None
            }
        }
    }
}

fn message_or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_owned()
    } else {
        word
    }
}

/// POSIX special parameters; never set in a Dockerfile, so they expand to nothing.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Go's `unicode.IsDigit`: general category Nd. Every Nd block is a run of ten digits
/// starting at one of these zeros (Unicode 15.0, the version of Go's tables).
fn is_go_digit(ch: char) -> bool {
    const ZEROS: [u32; 68] = [
        0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66,
        0x0CE6, 0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946,
        0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0,
        0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0,
        0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50,
        0x11DA0, 0x11F50, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
        0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950, 0x1FBF0,
    ];
    let code = u32::from(ch);
    if code < 0x80 {
        return ch.is_ascii_digit();
    }
    // The last zero at or below `code` decides.
    let idx = ZEROS.partition_point(|&zero| zero <= code);
    idx > 0 && ZEROS.get(idx - 1).is_some_and(|&zero| code - zero < 10)
}

/// Go's `unicode.IsLetter` (general category L), as near as std allows: Rust's
/// Alphabetic property is L plus Nl plus Other_Alphabetic; `is_numeric` removes Nl.
/// The rest of Other_Alphabetic (mostly combining vowel signs of Indic scripts) still
/// counts as a letter here and not in Go. Exact for ASCII and Latin-1.
fn is_go_letter(ch: char) -> bool {
    ch.is_alphabetic() && !ch.is_numeric()
}

/// `${VAR#pattern}`: the value without its shortest (longest when `greedy`) prefix
/// matching the pattern. `Err` carries the bad escape of an invalid pattern.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, Option<char>> {
    let program = Program::compile(pattern, greedy)?;
    let value: Vec<char> = value.chars().collect();
    Ok(match program.find(&value, 0, true) {
        Some((_, end)) => value.get(end..).unwrap_or_default().iter().collect(),
        None => value.iter().collect(),
    })
}

/// `${VAR%pattern}`. Like BuildKit, reverses pattern and value and trims a prefix: a
/// leftmost-first matcher cannot find the shortest rightmost match directly.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, Option<char>> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` pair in order: `a\*c` gives `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut rest = chars.as_slice();
    while !rest.is_empty() {
        // A trailing `\` has nothing to pair with and moves as a single character.
        let len = if rest.len() >= 2 && rest.first() == Some(&'\\') {
            2
        } else {
            1
        };
        let (unit, tail) = rest.split_at(len);
        units.push(unit);
        rest = tail;
    }
    units.iter().rev().flat_map(|unit| unit.iter()).collect()
}

/// One instruction of a compiled pattern: the program Go's `regexp` builds from the
/// regular expression BuildKit's `convertShellPatternToRegex` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// A literal character.
    Char(char),
    /// Any character but `\n` (Go's `.` without the `s` flag).
    AnyNotNewline,
    /// Try the first target, then the second.
    Split(usize, usize),
    Jump(usize),
    Match,
}

/// A compiled pattern, run as a Pike VM with Go's leftmost-first semantics: the match
/// is the leftmost one and, among those, the one a backtracking matcher that tries
/// preferred branches first would find. Time is pattern length × value length at worst
/// (no backtracking blow-up), and nothing recurses.
struct Program {
    insts: Vec<Inst>,
}

impl Program {
    /// Compiles a BuildKit pattern; `*` is greedy (`.*`) or lazy (`.*?`). `Err` carries
    /// the character after an invalid `\` (`None`: the pattern ends with `\`).
    fn compile(pattern: &str, greedy: bool) -> Result<Self, Option<char>> {
        let mut scanner = Scanner::new(pattern);
        let mut insts = Vec::with_capacity(scanner.chars.len() + 1);
        while let Some(tok) = scanner.next() {
            match tok {
                '*' => {
                    let split = insts.len();
                    let (any, after) = (split + 1, split + 3);
                    insts.push(if greedy {
                        Inst::Split(any, after)
                    } else {
                        Inst::Split(after, any)
                    });
                    insts.push(Inst::AnyNotNewline);
                    insts.push(Inst::Jump(split));
                }
                '?' => insts.push(Inst::AnyNotNewline),
                '\\' => {
                    // `}` and `/` are escaped only to get past the `${...}` syntax;
                    // the escape is not part of the pattern.
                    if matches!(scanner.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match scanner.next() {
                        Some(ch @ ('*' | '?' | '\\')) => insts.push(Inst::Char(ch)),
                        other => return Err(other),
                    }
                }
                ch => insts.push(Inst::Char(ch)),
            }
        }
        insts.push(Inst::Match);
        Ok(Program { insts })
    }

    /// The first match (start, end in characters) starting at or after `from`; with
    /// `anchored`, only one starting exactly at `from`.
    fn find(&self, text: &[char], from: usize, anchored: bool) -> Option<(usize, usize)> {
        let mut current = ThreadList::new(self.insts.len());
        let mut next = ThreadList::new(self.insts.len());
        let mut found = None;
        let mut pos = from;
        loop {
            if current.threads.is_empty() && (found.is_some() || (anchored && pos != from)) {
                break;
            }
            if found.is_none() && (!anchored || pos == from) {
                // A new attempt starting here has the lowest priority.
                current.add(&self.insts, 0, pos);
            }
            let ch = text.get(pos).copied();
            for &(pc, start) in &current.threads {
                match self.insts.get(pc) {
                    Some(Inst::Match) => {
                        // Leftmost-first: threads after this one have lower priority.
                        found = Some((start, pos));
                        break;
                    }
                    Some(Inst::Char(want)) if ch == Some(*want) => {
                        next.add(&self.insts, pc + 1, start);
                    }
                    Some(Inst::AnyNotNewline) if ch.is_some_and(|ch| ch != '\n') => {
                        next.add(&self.insts, pc + 1, start);
                    }
                    _ => {}
                }
            }
            current.clear();
            if pos >= text.len() {
                break;
            }
            pos += 1;
            std::mem::swap(&mut current, &mut next);
        }
        found
    }

    /// Go's `Regexp.ReplaceAllString`, empty-match rules and `$` templates included.
    /// `None` as soon as the result is longer than `limit` bytes.
    fn replace_all(&self, text: &[char], template: &str, limit: usize) -> Option<String> {
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find(text, search, false) else {
                break;
            };
            out.extend(text.get(last_end..start).unwrap_or_default());
            // No replacement for an empty match right after the previous match.
            if end > last_end || start == 0 {
                let matched: String = text.get(start..end).unwrap_or_default().iter().collect();
                expand_template(&mut out, template, &matched, limit)?;
            }
            if out.len() > limit {
                return None;
            }
            last_end = end;
            // Always advance at least one character.
            let width = usize::from(search < text.len());
            if search + width > end {
                search += width;
            } else if search + 1 > end {
                search += 1;
            } else {
                search = end;
            }
        }
        out.extend(text.get(last_end..).unwrap_or_default());
        (out.len() <= limit).then_some(out)
    }

    /// BuildKit's `${VAR/p/r}`: the first match replaced by `replacement`, verbatim.
    fn replace_first(&self, text: &[char], replacement: &str) -> String {
        match self.find(text, 0, false) {
            Some((start, end)) => {
                let mut out: String = text.get(..start).unwrap_or_default().iter().collect();
                out.push_str(replacement);
                out.extend(text.get(end..).unwrap_or_default());
                out
            }
            None => text.iter().collect(),
        }
    }
}

/// The threads of one step of the Pike VM, in priority order, at most one per
/// instruction.
struct ThreadList {
    /// (instruction, start of the attempt)
    threads: Vec<(usize, usize)>,
    seen: Vec<bool>,
    stack: Vec<usize>,
}

impl ThreadList {
    fn new(len: usize) -> Self {
        ThreadList {
            threads: Vec::new(),
            seen: vec![false; len],
            stack: Vec::new(),
        }
    }

    /// Adds the thread at `pc` after following jumps and splits, preferred branch first.
    fn add(&mut self, insts: &[Inst], pc: usize, start: usize) {
        self.stack.push(pc);
        while let Some(pc) = self.stack.pop() {
            match self.seen.get_mut(pc) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            match insts.get(pc) {
                Some(Inst::Jump(target)) => self.stack.push(*target),
                Some(Inst::Split(first, second)) => {
                    self.stack.push(*second);
                    self.stack.push(*first);
                }
                Some(_) => self.threads.push((pc, start)),
                None => {}
            }
        }
    }

    fn clear(&mut self) {
        self.threads.clear();
        self.seen.iter_mut().for_each(|seen| *seen = false);
    }
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0` and `${0}` the
/// match, any other `$name` or `${name}` nothing, and a malformed `$` stays literal.
/// `None` as soon as `out` is longer than `limit` bytes (`$0$0$0...` of a long match).
fn expand_template(out: &mut String, template: &str, matched: &str, limit: usize) -> Option<()> {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        if out.len() > limit {
            return None;
        }
        out.push_str(rest.get(..dollar).unwrap_or_default());
        rest = rest.get(dollar + 1..).unwrap_or_default();
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_reference(rest) {
            Some((is_group_zero, after)) => {
                if is_group_zero {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    Some(())
}

/// Go's `extract`: a leading `name` or `{name}`; says whether it names group 0 (the
/// whole match, the only group BuildKit's patterns have) and returns the text after it.
fn template_reference(text: &str) -> Option<(bool, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len = body
        .char_indices()
        .find(|&(_, ch)| !(is_go_letter(ch) || is_go_digit(ch) || ch == '_'))
        .map_or(body.len(), |(idx, _)| idx);
    if len == 0 {
        return None;
    }
    let name = body.get(..len)?;
    let mut after = body.get(len..)?;
    if braced {
        after = after.strip_prefix('}')?;
    }
    // A number without leading zeros (and below 10^8) names a group by index.
    let is_group_zero = name == "0";
    Some((is_group_zero, after))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn word(input: &str, vars: &[(&str, &str)]) -> Result<String, ShellError> {
        Lexer::new('\\').process_word(input, &env(vars))
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        let vars = env(&[("PWD", "/home")]);
        let cases = [
            ("he`$PWD", "he$PWD"),
            ("he``$PWD", "he`/home"),
            // The backslash is an ordinary character now.
            ("he\\$PWD", "he\\/home"),
            ("C:\\Windows\\System32", "C:\\Windows\\System32"),
            ("a` b", "a b"),
            ("hello`", "hello"),
            ("\"a`\"b\"", "a\"b"),
            ("\"a`$PWD\"", "a$PWD"),
            ("\"a``b\"", "a`b"),
            // Inside double quotes the escape stays before anything else.
            ("\"a`tb\"", "a`tb"),
            ("\"a\\tb\"", "a\\tb"),
            ("'a`b'", "a`b"),
            ("${X:-`}x}", "}x"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                lex.process_word(input, &vars).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
        assert_eq!(
            lex.process_words("a` b c`  d", &vars).unwrap(),
            vec!["a b", "c ", "d"]
        );
        assert!(lex.process_word("\"a`\"", &vars).is_err());
    }

    #[test]
    fn error_messages() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: [(&str, Vars, &str, usize); 13] = [
            (
                "he'llo",
                &[],
                "failed to process \"he'llo\": unexpected end of statement while looking for matching single-quote",
                2,
            ),
            (
                "a\"b",
                &[],
                "failed to process \"a\\\"b\": unexpected end of statement while looking for matching double-quote",
                1,
            ),
            ("he${PWD", &[], "failed to process \"he${PWD\": syntax error: missing '}'", 2),
            ("x${", &[], "failed to process \"x${\": syntax error: missing '}'", 1),
            ("${a:-'b}", &[], "failed to process \"${a:-'b}\": syntax error: missing '}'", 0),
            ("he${}", &[], "failed to process \"he${}\": syntax error: bad substitution", 2),
            (
                "${FOO//ww}",
                &[("FOO", "x")],
                "failed to process \"${FOO//ww}\": syntax error: missing '/' in ${}",
                0,
            ),
            (
                "ab${X:=1}",
                &[],
                "failed to process \"ab${X:=1}\": unsupported modifier (:=) in substitution",
                2,
            ),
            (
                "${X:#1}",
                &[],
                "failed to process \"${X:#1}\": unsupported modifier (:#) in substitution",
                0,
            ),
            (
                "${VAR?}",
                &[],
                "failed to process \"${VAR?}\": VAR: is not allowed to be unset",
                0,
            ),
            (
                "x ${VAR:?}",
                &[("VAR", "")],
                "failed to process \"x ${VAR:?}\": VAR: is not allowed to be empty",
                2,
            ),
            (
                "${VAR:?need $ARG}",
                &[("ARG", "x")],
                "failed to process \"${VAR:?need $ARG}\": VAR: need x",
                0,
            ),
            (
                "${X#a\\b}",
                &[("X", "ab")],
                "failed to process \"${X#a\\\\b}\": invalid pattern (a\\b) in substitution: invalid escape '\\b'",
                0,
            ),
        ];
        for (input, vars, message, offset) in cases {
            let err = word(input, vars).unwrap_err();
            assert_eq!(err.to_string(), message, "{input}");
            assert_eq!(err.offset, offset, "{input}");
            assert_eq!(err.word, input);
        }

        let err = word("${X%\\}", &[("X", "a")]).unwrap_err();
        assert_eq!(err.kind, ShellErrorKind::MissingBrace);
        let err = word("${X#$P}", &[("X", "a"), ("P", "a\\")]).unwrap_err();
        assert_eq!(
            err.kind,
            ShellErrorKind::InvalidPattern {
                pattern: "a\\".to_owned(),
                escaped: None
            }
        );
        assert_eq!(
            err.kind.to_string(),
            "invalid pattern (a\\) in substitution: invalid escape '\\' at end of pattern"
        );
        // Offsets count characters, not bytes, and point at the inner failure.
        let err = word("한국${A:-${B:?}}", &[]).unwrap_err();
        assert_eq!(err.offset, 7);
        assert_eq!(
            err.kind,
            ShellErrorKind::Unset {
                name: "B".to_owned(),
                message: "is not allowed to be unset".to_owned()
            }
        );
    }

    #[test]
    fn mandatory_variables() {
        // BuildKit's TestShellParserMandatoryEnvVars.
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        let set_env = [("VAR", "plain"), ("ARG", "x")];
        let empty_env = [("VAR", ""), ("ARG", "x")];
        let unset_env = [("ARG", "x")];

        assert_eq!(word(no_empty, &set_env).unwrap(), "plain");
        for vars in [&empty_env[..], &unset_env[..]] {
            let err = word(no_empty, vars).unwrap_err();
            assert!(err.to_string().contains("message herex"), "{err}");
        }
        assert_eq!(word(no_unset, &set_env).unwrap(), "plain");
        assert_eq!(word(no_unset, &empty_env).unwrap(), "");
        let err = word(no_unset, &unset_env).unwrap_err();
        assert!(err.to_string().contains("message herex"), "{err}");
    }

    /// BuildKit's TestProcessWithMatches.
    #[test]
    fn matches_and_patterns() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            &'a [&'a str],
            &'a [&'a str],
        );
        let xb: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
        let cases: &[Case] = &[
            ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
            (
                "x ${UNUSED}",
                &[("DUMMY", "dummy")],
                Some("x "),
                &[],
                &["UNUSED"],
            ),
            ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
            (
                "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
                xb,
                Some("xxx  ccc"),
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            (
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                xb,
                Some("xxx bbb ccc"),
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ("${FOO:-}", xb, Some("xxx"), &["FOO"], &[]),
            ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
            (
                "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
                xb,
                Some("aaa bbb "),
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            (
                "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
                xb,
                Some("aaa  "),
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ("${FOO?aaa}", xb, Some("xxx"), &["FOO"], &[]),
            ("${BAR?bbb}", xb, Some(""), &["BAR"], &[]),
            ("${BAZ?ccc}", xb, None, &[], &[]),
            ("${FOO:?aaa}", xb, Some("xxx"), &["FOO"], &[]),
            ("${BAR:?bbb}", xb, None, &[], &[]),
            ("${BAZ:?ccc}", xb, None, &[], &[]),
            ("${BAZ:?}", xb, None, &[], &[]),
            ("${FOO=aaa}", xb, None, &[], &[]),
            ("${FOO=:aaa}", xb, None, &[], &[]),
            ("${FOO=}", &[], None, &[], &[]),
            (
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")],
                Some("x"),
                &["FOO"],
                &[],
            ),
            (
                "${FOO%%\\**}",
                &[("FOO", "xx**")],
                Some("xx"),
                &["FOO"],
                &[],
            ),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
            (
                "${FOO#$BAR}",
                &[("FOO", "xxyy"), ("BAR", "x")],
                Some("xyy"),
                &["FOO", "BAR"],
                &[],
            ),
            (
                "${FOO#$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("xxyy"),
                &["FOO", "BAR"],
                &[],
            ),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
            ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
            ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                Some(".xxyy."),
                &["FOO"],
                &["ABC"],
            ),
            (
                "${FOO%%\\**\\*}",
                &[("FOO", "a***yy*")],
                Some("a"),
                &["FOO"],
                &[],
            ),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
            (
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("xxyy"),
                &["FOO", "BAR"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
                &["FOO", "NEEDLE"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
                &["FOO", "NEEDLE"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                Some("/foo/b/c.txt - /foo/c.txt"),
                &["FOO", "NEEDLE", "REPLACEMENT"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                Some("https://google.de"),
                &["FOO", "NEEDLE", "REPLACEMENT"],
                &[],
            ),
            (
                "${FOO//\\//\\/}",
                &[("FOO", "/tmp/foo.txt")],
                Some("\\/tmp\\/foo.txt"),
                &["FOO"],
                &[],
            ),
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("wwxxyy"),
                &["FOO", "BAR"],
                &[],
            ),
            ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
            ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
            ("${FOO///}", &[], Some(""), &[], &["FOO"]),
        ];
        let lex = Lexer::new('\\');
        for &(input, vars, expected, matched, unmatched) in cases {
            let result = lex.process_word_with_matches(input, &env(vars));
            match expected {
                None => assert!(result.is_err(), "{input}: {result:?}"),
                Some(expected) => {
                    let result = result.unwrap_or_else(|err| panic!("{input}: {err}"));
                    assert_eq!(result.value, expected, "{input}");
                    assert_eq!(result.matched, set(matched), "{input}");
                    assert_eq!(result.unmatched, set(unmatched), "{input}");
                }
            }
        }
    }

    #[test]
    fn release_file_name() {
        // BuildKit's TestProcessWithMatchesPlatform.
        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let base = [
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
        ];
        let mut with_variant = base.to_vec();
        with_variant.push(("TARGETVARIANT", "v7"));
        assert_eq!(
            word(release, &with_variant).unwrap(),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            word(release, &base).unwrap(),
            "something-v1.2.3.linux-arm.tar.gz"
        );
        let mut empty_variant = base.to_vec();
        empty_variant.push(("TARGETVARIANT", ""));
        assert_eq!(
            word(release, &empty_variant).unwrap(),
            "something-v1.2.3.linux-arm.tar.gz"
        );
    }

    #[test]
    fn pattern_compilation() {
        // BuildKit's TestConvertShellPatternToRegex, on the compiled program.
        let literal = |text: &str| {
            let mut insts: Vec<Inst> = text.chars().map(Inst::Char).collect();
            insts.push(Inst::Match);
            insts
        };
        assert_eq!(Program::compile("\\*", true).unwrap().insts, literal("*"));
        assert_eq!(
            Program::compile("(()[]{\\}^$.\\*\\?|\\\\", true)
                .unwrap()
                .insts,
            literal("(()[]{}^$.*?|\\")
        );
        assert_eq!(
            Program::compile("?", true).unwrap().insts,
            vec![Inst::AnyNotNewline, Inst::Match]
        );
        for invalid in ["\\", "\\x", "\\\\\\"] {
            assert!(Program::compile(invalid, true).is_err(), "{invalid}");
        }
    }

    #[test]
    fn pattern_reversal() {
        // BuildKit's TestReversePattern.
        let cases = [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
            ("", ""),
        ];
        for (pattern, expected) in cases {
            assert_eq!(reverse_pattern(pattern), expected, "{pattern}");
        }
    }

    #[test]
    fn leftmost_first_matching() {
        let find = |pattern: &str, greedy: bool, text: &str, anchored: bool| {
            let text: Vec<char> = text.chars().collect();
            Program::compile(pattern, greedy)
                .unwrap()
                .find(&text, 0, anchored)
        };
        assert_eq!(find("a*b", true, "xxaxbyb", false), Some((2, 7)));
        assert_eq!(find("a*b", false, "xxaxbyb", false), Some((2, 5)));
        assert_eq!(find("a*b", false, "xxaxbyb", true), None);
        assert_eq!(find("*", true, "ab\ncd", true), Some((0, 2)));
        assert_eq!(find("?", true, "\n", false), None);
        assert_eq!(find("", true, "", true), Some((0, 0)));
        // Neither wildcard crosses a newline, as Go's `.`.
        assert_eq!(word("${X#*b}", &[("X", "a\nbcb")]).unwrap(), "a\nbcb");
        assert_eq!(word("${X%b*}", &[("X", "ab\nb")]).unwrap(), "ab\n");
        // Brackets are literal, as in BuildKit.
        assert_eq!(word("${X#[ab]}", &[("X", "[ab]c")]).unwrap(), "c");
        assert_eq!(word("${X#[ab]}", &[("X", "ac")]).unwrap(), "ac");
        // Shortest and longest suffixes.
        assert_eq!(word("${X%.*}", &[("X", "a.b.c")]).unwrap(), "a.b");
        assert_eq!(word("${X%%.*}", &[("X", "a.b.c")]).unwrap(), "a");
        assert_eq!(word("${X#*/}", &[("X", "a/b/c")]).unwrap(), "b/c");
        assert_eq!(word("${X##*/}", &[("X", "a/b/c")]).unwrap(), "c");
        assert_eq!(word("${X%/*}", &[("X", "한/국/어")]).unwrap(), "한/국");
    }

    #[test]
    fn replace_all_follows_go() {
        let vars = [("X", "abc"), ("E", "")];
        // Empty matches between every character, none right after a match.
        assert_eq!(word("${X//$E/-}", &vars).unwrap(), "-a-b-c-");
        assert_eq!(word("${X//*/-}", &vars).unwrap(), "-");
        assert_eq!(word("${X//?/-}", &vars).unwrap(), "---");
        assert_eq!(word("${X/?/-}", &vars).unwrap(), "-bc");
        // ReplaceAllString expands `$0` (the match) and `$$` in the replacement;
        // BuildKit's first-match form inserts it verbatim.
        let vars = [("X", "abc"), ("R", "<$0>"), ("D", "$$"), ("N", "$name")];
        assert_eq!(word("${X//b/$R}", &vars).unwrap(), "a<b>c");
        assert_eq!(word("${X/b/$R}", &vars).unwrap(), "a<$0>c");
        assert_eq!(word("${X//b/$D}", &vars).unwrap(), "a$c");
        assert_eq!(word("${X//b/$N}", &vars).unwrap(), "ac");
        let mut out = String::new();
        expand_template(&mut out, "${0}|$00|$0x|${0|$|$ |${}", "M", usize::MAX);
        assert_eq!(out, "M|||${0|$|$ |${}");
    }

    #[test]
    fn words() {
        let lex = Lexer::new('\\');
        let vars = env(&[("A", " x  y "), ("E", "")]);
        let cases: [(&str, &[&str]); 8] = [
            ("a$A", &["a", "x", "y"]),
            ("\"a$A\"", &["a x  y "]),
            ("a\\ b", &["a b"]),
            ("'' b", &["b"]),
            ("\"\" b", &["b"]),
            ("$E", &[]),
            ("  a   b  ", &["a", "b"]),
            ("x${E:-1 2}y", &["x1", "2y"]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                lex.process_words(input, &vars).unwrap(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn lexer_options() {
        let vars = env(&[("SET", "v")]);
        let mut lex = Lexer::new('\\');
        lex.skip_unset_env = true;
        let cases = [
            ("$X $SET", "$X v"),
            ("${X}", "${X}"),
            ("${X:-a b}", "${X:-a b}"),
            ("${X#p}", "${X#p}"),
            ("${X//a/b}", "${X/a/b}"),
            ("${SET:-d}", "v"),
        ];
        for (input, expected) in cases {
            assert_eq!(lex.process_word(input, &vars).unwrap(), expected, "{input}");
        }

        let mut lex = Lexer::new('\\');
        lex.raw_quotes = true;
        assert_eq!(lex.process_word("'a'\"$SET\"", &vars).unwrap(), "'a'\"v\"");

        let mut lex = Lexer::new('\\');
        lex.raw_escapes = true;
        assert_eq!(
            lex.process_word("a\\$SET \"\\$\"", &vars).unwrap(),
            "a\\$SET \\$"
        );

        let mut lex = Lexer::new('\\');
        lex.skip_process_quotes = true;
        assert_eq!(
            lex.process_word("'$SET' \"x\"", &vars).unwrap(),
            "'v' \"x\""
        );
    }

    #[test]
    fn environments() {
        let lex = Lexer::default();
        let list = vec![
            ("A".to_owned(), "1".to_owned()),
            ("A".to_owned(), "2".to_owned()),
        ];
        assert_eq!(lex.process_word("$A", &list).unwrap(), "2");
        assert_eq!(lex.process_word("$A", list.as_slice()).unwrap(), "2");
        let map: HashMap<String, String> = list.iter().cloned().collect();
        assert_eq!(lex.process_word("$A", &map).unwrap(), "2");
        let dynamic: &dyn ShellEnv = &map;
        assert_eq!(lex.process_word("$A$B", dynamic).unwrap(), "2");
        assert_eq!(lex.process_word("$a", &map).unwrap(), "");
    }

    #[test]
    fn unicode_classes() {
        // Go's IsLetter and IsDigit agree with these on Latin-1.
        for code in 0u32..=0xFF {
            let Some(ch) = char::from_u32(code) else {
                continue;
            };
            let go_letter = ch.is_ascii_alphabetic()
                || matches!(code, 0xAA | 0xB5 | 0xBA | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0xFF);
            assert_eq!(is_go_letter(ch), go_letter, "{code:#x}");
            assert_eq!(is_go_digit(ch), ch.is_ascii_digit(), "{code:#x}");
        }
        // ARABIC-INDIC DIGIT THREE, MATHEMATICAL BOLD DIGIT NINE, NAG MUNDARI DIGIT NINE
        // (new in Unicode 15) are Nd; SUPERSCRIPT TWO (No), ROMAN NUMERAL FOUR (Nl)
        // and CIRCLED DIGIT ONE (No) are not.
        for digit in ['\u{0663}', '\u{1D7D7}', '\u{1E4F9}'] {
            assert!(is_go_digit(digit), "{digit}");
        }
        for other in ['\u{00B2}', '\u{2163}', '\u{2460}'] {
            assert!(!is_go_digit(other), "{other}");
        }
        assert!(!is_go_letter('\u{2163}'));
        let vars = env(&[("a", "A"), ("한국어", "K")]);
        assert_eq!(word("$a²", &[("a", "A")]).unwrap(), "A²");
        assert_eq!(
            Lexer::default().process_word("$한국어!", &vars).unwrap(),
            "K!"
        );
        assert_eq!(word("$\u{0663}x", &[]).unwrap(), "x");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let lex = Lexer::new('\\');
        let vars = env(&[("X", "a\\b*c}/")]);
        let inputs = [
            "",
            "$",
            "${",
            "${X",
            "${X:",
            "${X/",
            "${X//",
            "${X/a",
            "${X/a/",
            "\\",
            "\"\\",
            "'",
            "\u{FEFF}$X",
            "${X%\\",
            "${X#$X}",
            "${X%$X}",
            "${X/$X/$X}",
            "${X//$X/$X}",
            "${#X}",
            "${X:1:2}",
            "\u{0}",
            "é${X}é",
            "${X:-\"${X:-'}'}\"}",
            "$\u{301}",
            "${🚀}",
        ];
        for input in inputs {
            let _ = lex.process_word_with_matches(input, &vars);
        }
        assert_eq!(
            lex.process_word("\u{FEFF}a\u{FEFF}", &vars).unwrap(),
            "a\u{FEFF}"
        );
        let deep = "${A:-".repeat(10_000) + &"}".repeat(10_000);
        let err = lex.process_word(&deep, &vars).unwrap_err();
        assert_eq!(err.kind, ShellErrorKind::TooDeep { limit: MAX_NESTING });
        let fine = "${A:-".repeat(MAX_NESTING) + "x" + &"}".repeat(MAX_NESTING);
        assert_eq!(lex.process_word(&fine, &vars).unwrap(), "x");
        let stars = "*".repeat(300);
        let long = "ab".repeat(2_000);
        let vars = env(&[("L", long.as_str()), ("S", stars.as_str())]);
        assert_eq!(lex.process_word("${L##$S}", &vars).unwrap(), "");
        assert_eq!(lex.process_word("${L//$S/x}", &vars).unwrap(), "x");
    }

    #[test]
    fn instructions_that_expand() {
        for name in [
            "add",
            "COPY",
            "env",
            "expose",
            "from",
            "label",
            "stopsignal",
            "user",
            "volume",
            "workdir",
            "arg",
        ] {
            assert!(expands_variables(name), "{name}");
        }
        for name in [
            "run",
            "cmd",
            "entrypoint",
            "shell",
            "healthcheck",
            "maintainer",
            "onbuild",
            "",
        ] {
            assert!(!expands_variables(name), "{name}");
        }
    }
}
