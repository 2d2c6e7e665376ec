//! `.dockerignore`: reading the file and matching context paths, exactly as
//! docker's `patternmatcher` does (BuildKit uses the same package).
//!
//! Reading ([`read`]): lines starting with `#` are comments; each line is
//! trimmed; `!` marks an exception; patterns are cleaned like Go's
//! `filepath.Clean` and a leading `/` is dropped, so `/a`, `./a` and `a//`
//! all mean `a`.
//!
//! Matching ([`Matcher::matches`]): patterns apply in order and the last one
//! that matches a path decides (an exception re-includes). A pattern matches
//! a path or any of its parent directories. Within a pattern `*` matches any
//! run of characters but `/`, `?` one character but `/`, `[...]` a class,
//! `**` any number of directories, and `\` escapes.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error in pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pattern {
    /// As cleaned, without the `!`.
    pub text: String,
    pub exclusion: bool,
    #[serde(skip)]
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard: the path must equal the pattern.
    Exact,
    /// `prefix**`: the path starts with the prefix.
    Prefix(String),
    /// `**suffix` (no other wildcard): the path ends with the suffix, or
    /// equals it without its leading `/`.
    Suffix(String),
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: any run without `/`.
    Star,
    /// `?`: one character but `/`.
    Any,
    /// `**/` or `**` inside: `(.*/)?`.
    DirsOpt,
    /// Trailing `**` after other wildcards: `.*`.
    All,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// docker's `filepath.Clean` on a slash path.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Reads `.dockerignore` text into patterns, as docker's `ReadAll`.
pub fn read(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = if i == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = if pattern.is_empty() {
            String::new()
        } else {
            clean_path(pattern)
        };
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        out.push(if invert {
            format!("!{cleaned}")
        } else {
            cleaned
        });
    }
    out
}

impl Pattern {
    /// Compiles one pattern as read by [`read`] (`!` prefix for exceptions).
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let (exclusion, text) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let text = clean_path(text);
        let kind = compile(&text)?;
        Ok(Pattern {
            text,
            exclusion,
            kind,
        })
    }

    /// Whether this pattern matches `path` itself (a cleaned relative slash path).
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| s == path)
            }
            Kind::Tokens(tokens) => match_tokens(tokens, path),
        }
    }
}

fn bad(pattern: &str, reason: &'static str) -> PatternError {
    PatternError {
        pattern: pattern.to_string(),
        reason,
    }
}

/// patternmatcher's `compile`: which kind of match, and the tokens of the
/// regular expression it would build.
fn compile(pattern: &str) -> Result<Kind, PatternError> {
    #[derive(PartialEq)]
    enum Ty {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut ty = Ty::Exact;
    let mut i = 0;
    let mut index = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if ty == Ty::Exact {
                        ty = Ty::Prefix;
                    } else {
                        tokens.push(Token::All);
                        ty = Ty::Regexp;
                    }
                } else {
                    tokens.push(Token::DirsOpt);
                    ty = Ty::Regexp;
                }
                if index == 0 {
                    ty = Ty::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                ty = Ty::Regexp;
            }
            '?' => {
                tokens.push(Token::Any);
                ty = Ty::Regexp;
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    tokens.push(Token::Char(next));
                }
                None => tokens.push(Token::Char('\\')),
            },
            '[' => {
                let (class, next) =
                    parse_class(&chars, i).ok_or_else(|| bad(pattern, "missing closing ]"))?;
                tokens.push(class);
                i = next;
                ty = Ty::Regexp;
            }
            ']' => {
                tokens.push(Token::Char(']'));
                ty = Ty::Regexp;
            }
            c => tokens.push(Token::Char(c)),
        }
        index += 1;
    }
    Ok(match ty {
        Ty::Exact => Kind::Exact,
        // `prefix**` (the `**` and a `/` before it eaten): the text before `**`.
        Ty::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        Ty::Suffix
            if tokens
                .iter()
                .all(|t| matches!(t, Token::Char(_) | Token::DirsOpt)) =>
        {
            Kind::Suffix(pattern[2..].to_string())
        }
        _ => Kind::Tokens(tokens),
    })
}

/// A `[...]` class starting after the `[` at `start`; Go regexp syntax:
/// optional `^`, a `]` first is literal, `a-z` ranges, `\` escapes.
fn parse_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        i += 1;
        if c == ']' && !first {
            return Some((Token::Class { negated, items }, i));
        }
        first = false;
        if c == '\\' {
            c = *chars.get(i)?;
            i += 1;
        }
        let mut hi = c;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|n| *n != ']') {
            hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i)?;
                i += 1;
            }
            if hi < c {
                return None;
            }
        }
        items.push((c, hi));
    }
}

/// Whole-path match by NFA simulation: linear in the path for a given
/// pattern (a backtracking matcher is exponential on `*a*a*a*…b`).
/// States `0..=n` sit before token `i`; states `n+1+i` are inside the
/// `(.*/)?` of a [`Token::DirsOpt`] at `i`.
fn match_tokens(tokens: &[Token], path: &str) -> bool {
    let n = tokens.len();
    let add = |set: &mut Vec<bool>, state: usize| {
        let mut stack = vec![state];
        while let Some(s) = stack.pop() {
            if set[s] {
                continue;
            }
            set[s] = true;
            match tokens.get(s) {
                Some(Token::Star | Token::All) => stack.push(s + 1),
                Some(Token::DirsOpt) if s < n => {
                    stack.push(s + 1);
                    stack.push(n + 1 + s);
                }
                _ => {}
            }
        }
    };
    let mut current = vec![false; 2 * n + 1];
    add(&mut current, 0);
    for c in path.chars() {
        let mut next = vec![false; 2 * n + 1];
        for state in (0..current.len()).filter(|&s| current[s]) {
            if state > n {
                let i = state - n - 1;
                add(&mut next, state);
                if c == '/' {
                    add(&mut next, i + 1);
                }
                continue;
            }
            match tokens.get(state) {
                Some(Token::Char(x)) if *x == c => add(&mut next, state + 1),
                Some(Token::Any) if c != '/' => add(&mut next, state + 1),
                Some(Token::Class { negated, items })
                    if items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated =>
                {
                    add(&mut next, state + 1)
                }
                Some(Token::Star) if c != '/' => add(&mut next, state),
                Some(Token::All) => add(&mut next, state),
                _ => {}
            }
        }
        if !next.iter().any(|&b| b) {
            return false;
        }
        current = next;
    }
    current[n]
}

/// A `.dockerignore`'s patterns, compiled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Matcher {
    pub patterns: Vec<Pattern>,
}

impl Matcher {
    /// Compiles patterns as returned by [`read`].
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::new(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Matcher { patterns })
    }

    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Matcher, PatternError> {
        Matcher::new(&read(text))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` is excluded: docker's `MatchesOrParentMatches`. The
    /// path is taken as given (relative, `/`-separated): the context walker's
    /// paths are clean, and BuildKit's lint passes sources as written, so
    /// `./build` does not match `build` there either.
    pub fn matches(&self, path: &str) -> bool {
        // Go's filepath.Dir: the part before the last '/', cleaned.
        let parent = match path.rfind('/') {
            Some(i) => clean_path(&path[..=i]),
            None => ".".to_string(),
        };
        let parents: Vec<&str> = if parent == "." {
            Vec::new()
        } else {
            parent
                .match_indices('/')
                .map(|(i, _)| &parent[..i])
                .filter(|p| !p.is_empty())
                .chain([parent.as_str()])
                .collect()
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An exclusion can only undo a match; an inclusion only makes one.
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches(path) || parents.iter().any(|p| pattern.matches(p)) {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether some exception pattern could re-include something below
    /// `dir` (so a walker must not skip an excluded directory wholesale).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(lines: &str) -> Matcher {
        Matcher::parse(lines).expect("valid patterns")
    }

    #[test]
    fn reads_like_docker() {
        assert_eq!(
            read("\u{feff}# comment\n  /a/b/  \n!./c\n\n ! d \n#x\n./\n"),
            vec!["a/b", "!c", "!d", "."]
        );
    }

    // Vectors from moby/patternmatcher's TestMatches and docker's
    // documentation examples.
    #[test]
    fn pattern_vectors() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", false),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", false),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            // A pattern without wildcards is compared literally, escapes
            // included (patternmatcher's exactMatch).
            ("a\\\\", "a\\", false),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        ];
        for (pattern, path, want) in cases {
            let p = Pattern::new(pattern).expect("compiles");
            assert_eq!(p.matches(path), *want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn last_match_wins_and_parents_match() {
        let ig = m("*.md\n!README.md\nbuild\n");
        assert!(ig.matches("notes.md"));
        assert!(!ig.matches("README.md"));
        assert!(ig.matches("build/out/x.o"));
        assert!(!ig.matches("src/main.rs"));
        // `*.md` is not recursive: `*` does not cross `/`.
        assert!(!ig.matches("docs/a.md"));
        let ig = m("**/*.md\n");
        assert!(ig.matches("docs/a.md"));
        let ig = m("docs\n!docs/keep.txt\n");
        assert!(ig.matches("docs/other.txt"));
        assert!(!ig.matches("docs/keep.txt"));
    }

    #[test]
    fn classes_escapes_and_no_blowup() {
        let ig = m("*.md\n!README.md\nbuild\n**/*.tmp\ndocs/**\nfile[0-9].txt\na\\*b*\n");
        for (path, want) in [
            ("CHANGES.md", true),
            ("README.md", false),
            ("build", true),
            ("build/out/a.o", true),
            ("a/b/c.tmp", true),
            ("c.tmp", true),
            ("docs/x/y", true),
            ("src/main.rs", false),
            ("sub/CHANGES.md", false),
            // Taken as given: `./build` is not `build`.
            ("./build", false),
            ("file1.txt", true),
            ("filex.txt", false),
            ("a*bc", true),
            ("axbc", false),
        ] {
            assert_eq!(ig.matches(path), want, "{path}");
        }
        // Without a wildcard the pattern is compared as written, escapes and all.
        assert!(!m("a\\*b").matches("a*b"));
        let ig = m("a/**/b/*.c");
        assert!(ig.matches("a/b/x.c"));
        assert!(ig.matches("a/q/r/b/x.c"));
        assert!(!ig.matches("a/b/x/y.c"));
        // Linear, not exponential.
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*b").matches(&"a".repeat(5000)));
    }

    #[test]
    fn cleans_paths_like_go() {
        assert_eq!(clean_path("a/../../b/./c/"), "../b/c");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Matcher::parse("a[b\n").is_err());
    }
}
