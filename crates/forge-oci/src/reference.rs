//! Image references (`name:tag@digest`) with docker's normalisation.
//!
//! The grammar is docker/distribution's `reference` package, hand-written instead of
//! regular expressions: a name is an optional domain (`host[:port]`, `[v6]:port`, or
//! `localhost`) followed by `/`-separated lower-case path components; then an optional
//! `:tag` and an optional `@algorithm:hex`. Normalisation follows `ParseNormalizedNamed`:
//! a first component that contains `.` or `:`, is `localhost`, or has upper case letters is
//! the domain, otherwise the domain is `docker.io`; a single component on `docker.io` gets
//! the `library/` namespace; `index.docker.io` becomes `docker.io`. A reference without tag
//! and digest gets `latest`, as `docker pull app` does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// docker/distribution's `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_MAX_LEN: usize = 128;

/// Why a string is not an image reference. Messages follow docker's wording so users see
/// what `docker` would tell them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The empty string (docker's `ErrNameEmpty`).
    #[error("invalid reference format: repository name must have at least one component")]
    Empty,
    /// Does not match the reference grammar (docker's `ErrReferenceInvalidFormat`).
    #[error("invalid reference format: {input:?}: {problem}")]
    InvalidFormat {
        /// The input as given.
        input: String,
        /// Which part is wrong.
        problem: FormatProblem,
    },
    /// The repository path has upper case letters (docker's `ErrNameContainsUppercase`).
    #[error("invalid reference format: repository name ({repository}) must be lowercase")]
    NotLowercase {
        /// The input as given.
        input: String,
        /// The offending repository path.
        repository: String,
    },
    /// The name (domain and path) is longer than 255 characters (docker's `ErrNameTooLong`).
    #[error("invalid reference format: repository name must not be more than 255 characters (got {len} in {input:?})")]
    NameTooLong {
        /// The input as given.
        input: String,
        /// Length of the name part.
        len: usize,
    },
    /// A bare 64-hex string is an image id, not a name.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    /// The `@digest` part parses per the grammar but is not a valid digest.
    #[error("invalid reference format: {input:?}: {source}")]
    Digest {
        /// The input as given.
        input: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
}

/// The part of a reference that breaks the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatProblem {
    /// A path component (between `/`) is not `[a-z0-9]+` joined by `.`, `_`, `__` or `-`+.
    PathComponent,
    /// The domain is not a host name, IPv4 or bracketed IPv6 with an optional port.
    Domain,
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    Tag,
    /// The part after `@` is not `algorithm:hex`.
    Digest,
}

impl fmt::Display for FormatProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormatProblem::PathComponent => {
                "repository path components must be lower-case letters and digits separated by '.', '_', '__' or '-'"
            }
            FormatProblem::Domain => "invalid registry host",
            FormatProblem::Tag => {
                "tag must be at most 128 of [A-Za-z0-9_.-] and not start with '.' or '-'"
            }
            FormatProblem::Digest => "digest must be algorithm:hex",
        })
    }
}

/// A normalised image reference: `domain/path[:tag][@digest]`.
///
/// `Display` gives the full form (`docker.io/library/app:latest`);
/// [`Reference::familiar`] gives docker's short form (`app:latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses with docker's normalisation and adds the `latest` tag when neither a tag nor
    /// a digest is given (`app` → `docker.io/library/app:latest`).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_without_default_tag(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses with docker's normalisation but leaves a missing tag missing (docker's
    /// `ParseNormalizedNamed`), e.g. for `docker images app` filters.
    pub fn parse_without_default_tag(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_hex_identifier(s) {
            return Err(ReferenceError::HexIdentifier(s.to_string()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::NotLowercase {
                input: s.to_string(),
                repository: remote.to_string(),
            });
        }
        let raw = parse_raw(&format!("{domain}/{remainder}")).map_err(|e| e.with_input(s))?;
        // What looked like a registry host (it has a `.` or `:`) but is none: docker's
        // grammar then reads it as a path component and the name has no registry at
        // all, which no pull or push can use. Say so now.
        let Some(domain) = raw.domain else {
            return Err(ReferenceError::InvalidFormat {
                input: s.to_string(),
                problem: FormatProblem::Domain,
            });
        };
        Ok(Reference {
            domain,
            path: raw.path,
            tag: raw.tag,
            digest: raw.digest,
        })
    }

    /// The registry host, e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path on the registry, e.g. `library/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, docker's `Name()`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// docker's familiar repository name: `app`, `user/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// docker's familiar string: familiar name plus `:tag` and `@digest`, as `docker images`
    /// and `docker save`'s `RepoTags` show it.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with `tag` (validated), keeping the digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError::InvalidFormat {
                input: tag.to_string(),
                problem: FormatProblem::Tag,
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }

    /// The same repository and tag pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository without tag and digest.
    pub fn without_tag_or_digest(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// docker's `splitDockerDomain`: decides whether the first component is a registry.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, rest)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, mut remote) = if maybe_domain == "localhost"
        || maybe_domain.contains(['.', ':'])
        || maybe_domain.to_lowercase() != maybe_domain
    {
        if maybe_domain == LEGACY_DEFAULT_DOMAIN {
            (DEFAULT_DOMAIN, rest.to_string())
        } else {
            (maybe_domain, rest.to_string())
        }
    } else {
        (DEFAULT_DOMAIN, name.to_string())
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        remote = format!("{OFFICIAL_REPO_PREFIX}{remote}");
    }
    (domain, remote)
}

fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A reference as docker/distribution's `Parse` sees it: no normalisation.
#[derive(Debug, PartialEq, Eq)]
struct Raw {
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ReferenceError {
    /// Errors from parsing the normalised string name the user's input instead.
    fn with_input(self, input: &str) -> ReferenceError {
        match self {
            ReferenceError::InvalidFormat { problem, .. } => ReferenceError::InvalidFormat {
                input: input.to_string(),
                problem,
            },
            ReferenceError::NotLowercase { repository, .. } => ReferenceError::NotLowercase {
                input: input.to_string(),
                repository,
            },
            ReferenceError::NameTooLong { len, .. } => ReferenceError::NameTooLong {
                input: input.to_string(),
                len,
            },
            ReferenceError::Digest { source, .. } => ReferenceError::Digest {
                input: input.to_string(),
                source,
            },
            other => other,
        }
    }
}

/// docker/distribution's `Parse`: the anchored `ReferenceRegexp` then the name split.
fn parse_raw(s: &str) -> Result<Raw, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::Empty);
    }
    match match_reference(s) {
        Ok(raw) => Ok(raw),
        Err(e @ ReferenceError::InvalidFormat { .. }) => {
            // Like docker: if only case makes it fail, say so.
            let lower = s.to_lowercase();
            if lower != s && match_reference(&lower).is_ok() {
                Err(ReferenceError::NotLowercase {
                    input: s.to_string(),
                    repository: name_part(s).to_string(),
                })
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

/// The name of `name[:tag][@digest]`, for error messages.
fn name_part(s: &str) -> &str {
    let before_at = s.split('@').next().unwrap_or(s);
    let last_seg_start = before_at.rfind('/').map_or(0, |i| i + 1);
    match before_at[last_seg_start..].find(':') {
        Some(i) => &before_at[..last_seg_start + i],
        None => before_at,
    }
}

fn invalid(s: &str, problem: FormatProblem) -> ReferenceError {
    ReferenceError::InvalidFormat {
        input: s.to_string(),
        problem,
    }
}

fn match_reference(s: &str) -> Result<Raw, ReferenceError> {
    // Neither a name nor a tag may contain '@', so the first one starts the digest.
    let (name_tag, digest) = match s.split_once('@') {
        Some((left, d)) => {
            if !is_digest_pattern(d) {
                return Err(invalid(s, FormatProblem::Digest));
            }
            (left, Some(d))
        }
        None => (s, None),
    };
    // The tag separator is a ':' in the last path segment; a ':' earlier can only be a port.
    let last_seg_start = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_seg_start..].find(':') {
        Some(i) => {
            let at = last_seg_start + i;
            (&name_tag[..at], Some(&name_tag[at + 1..]))
        }
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        if !is_tag(t) {
            return Err(invalid(s, FormatProblem::Tag));
        }
    }
    let (domain, path) = split_name(name).ok_or_else(|| {
        // Report the likelier culprit: a bad first component that looks like a host.
        let first = name.split('/').next().unwrap_or_default();
        if name.contains('/') && first.contains([':', '[', ']']) {
            invalid(s, FormatProblem::Domain)
        } else {
            invalid(s, FormatProblem::PathComponent)
        }
    })?;
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong {
            input: s.to_string(),
            len: name.len(),
        });
    }
    let digest = match digest {
        Some(d) => Some(Digest::parse(d).map_err(|source| ReferenceError::Digest {
            input: s.to_string(),
            source,
        })?),
        None => None,
    };
    Ok(Raw {
        domain: domain.map(str::to_string),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest,
    })
}

/// `^(?:(domainAndPort)/)?(remoteName)$`, preferring a domain like Go's leftmost-first
/// regexp semantics do.
fn split_name(name: &str) -> Option<(Option<&str>, &str)> {
    if let Some((first, rest)) = name.split_once('/') {
        if is_domain_and_port(first) && is_remote_name(rest) {
            return Some((Some(first), rest));
        }
    }
    is_remote_name(name).then_some((None, name))
}

fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && alnum(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut i) {
            return false;
        }
    }
    true
}

/// `(?:domainName|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
fn is_domain_and_port(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let v6 = &rest[..end];
        if v6.is_empty() || !v6.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
            return false;
        }
        let after = &rest[end + 1..];
        if after.is_empty() {
            return true;
        }
        (None, after.strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(h) = host {
        if !h.split('.').all(is_domain_component) {
            return false;
        }
    }
    match port {
        Some(p) => !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()),
        // A bracketed host followed by something other than ":port".
        None => host.is_some(),
    }
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `[\w][\w.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= TAG_MAX_LEN
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`
fn is_digest_pattern(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFF: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    /// Vectors from docker/distribution's `TestReferenceParse` (reference_test.go):
    /// (input, domain, repository, tag, digest) for successes.
    #[test]
    fn raw_parse_vectors() {
        let a127 = format!("{}a", "a/".repeat(127));
        let a127_tag = format!("{a127}:tag-puts-this-over-max");
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let xn_sha512 = format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}");
        let ok: Vec<(&str, &str, &str, &str, &str)> = vec![
            ("test_com", "", "test_com", "", ""),
            ("test.com:tag", "", "test.com", "tag", ""),
            ("test.com:5000", "", "test.com", "5000", ""),
            ("test.com/repo:tag", "test.com", "test.com/repo", "tag", ""),
            ("test:5000/repo", "test:5000", "test:5000/repo", "", ""),
            ("test:5000/repo:tag", "test:5000", "test:5000/repo", "tag", ""),
            (
                "test:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "test:5000",
                "test:5000/repo",
                "",
                FFF,
            ),
            (
                "test:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "test:5000",
                "test:5000/repo",
                "tag",
                FFF,
            ),
            ("lowercase:Uppercase", "", "lowercase", "Uppercase", ""),
            (&a127_tag, "a", &a127, "tag-puts-this-over-max", ""),
            (
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com",
                "sub-dom1.foo.com/bar/baz/quux",
                "",
                "",
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com",
                "sub-dom1.foo.com/bar/baz/quux",
                "some-long-tag",
                "",
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io",
                "b.gcr.io/test.example.com/my-app",
                "test.example.com",
                "",
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com",
                "xn--n3h.com/myimage",
                "xn--n3h.com",
                "",
            ),
            (
                &xn_sha512,
                "xn--7o8h.com",
                "xn--7o8h.com/myimage",
                "xn--7o8h.com",
                &sha512,
            ),
            ("foo_bar.com:8080", "", "foo_bar.com", "8080", ""),
            ("foo/foo_bar.com:8080", "foo", "foo/foo_bar.com", "8080", ""),
            ("192.168.1.1", "", "192.168.1.1", "", ""),
            ("192.168.1.1:tag", "", "192.168.1.1", "tag", ""),
            ("192.168.1.1:5000", "", "192.168.1.1", "5000", ""),
            ("192.168.1.1/repo", "192.168.1.1", "192.168.1.1/repo", "", ""),
            (
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000",
                "192.168.1.1:5000/repo",
                "",
                "",
            ),
            (
                "192.168.1.1:5000/repo:5050",
                "192.168.1.1:5000",
                "192.168.1.1:5000/repo",
                "5050",
                "",
            ),
            (
                "[2001:db8::1]/repo",
                "[2001:db8::1]",
                "[2001:db8::1]/repo",
                "",
                "",
            ),
            (
                "[2001:db8:1:2:3:4:5:6]/repo:tag",
                "[2001:db8:1:2:3:4:5:6]",
                "[2001:db8:1:2:3:4:5:6]/repo",
                "tag",
                "",
            ),
            (
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                "[2001:db8::1]:5000/repo",
                "",
                "",
            ),
            (
                "[2001:db8::1]:5000/repo:tag",
                "[2001:db8::1]:5000",
                "[2001:db8::1]:5000/repo",
                "tag",
                "",
            ),
            (
                "[2001:db8::1]:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "[2001:db8::1]:5000",
                "[2001:db8::1]:5000/repo",
                "tag",
                FFF,
            ),
            (
                "[2001:db8::]:5000/repo",
                "[2001:db8::]:5000",
                "[2001:db8::]:5000/repo",
                "",
                "",
            ),
            ("[::1]:5000/repo", "[::1]:5000", "[::1]:5000/repo", "", ""),
        ];
        for (input, domain, repository, tag, digest) in ok {
            let raw = parse_raw(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let full = match &raw.domain {
                Some(d) => format!("{d}/{}", raw.path),
                None => raw.path.clone(),
            };
            assert_eq!(full, repository, "{input}: repository");
            assert_eq!(
                raw.domain.as_deref().unwrap_or(""),
                domain,
                "{input}: domain"
            );
            assert_eq!(raw.tag.as_deref().unwrap_or(""), tag, "{input}: tag");
            assert_eq!(
                raw.digest.as_ref().map(Digest::as_str).unwrap_or(""),
                digest,
                "{input}: digest"
            );
        }
    }

    #[test]
    fn raw_parse_errors() {
        let too_long = format!("{}a:tag", "a/".repeat(128));
        type Check = fn(&ReferenceError) -> bool;
        let fmt: Check = |e| matches!(e, ReferenceError::InvalidFormat { .. });
        let cases: Vec<(&str, Check)> = vec![
            ("", |e| matches!(e, ReferenceError::Empty)),
            (":justtag", fmt),
            ("@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", fmt),
            ("repo@sha256:ffffffffffffffffffffffffffffffffff", |e| {
                matches!(
                    e,
                    ReferenceError::Digest {
                        source: DigestError::InvalidLength { .. },
                        ..
                    }
                )
            }),
            (
                "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                |e| {
                    matches!(
                        e,
                        ReferenceError::Digest {
                            source: DigestError::Unsupported { .. },
                            ..
                        }
                    )
                },
            ),
            ("Uppercase:tag", |e| matches!(e, ReferenceError::NotLowercase { .. })),
            ("test:5000/Uppercase/lowercase:tag", |e| {
                matches!(e, ReferenceError::NotLowercase { .. })
            }),
            (&too_long, |e| matches!(e, ReferenceError::NameTooLong { .. })),
            ("aa/asdf$$^/aa", fmt),
            ("[2001:db8::1]", fmt),
            ("[2001:db8::1]:5000", fmt),
            ("[2001:db8::1]:tag", fmt),
            ("[fe80::1%eth0]:5000/repo", fmt),
            ("[fe80::1%@invalidzone]:5000/repo", fmt),
        ];
        for (input, check) in cases {
            let err = parse_raw(input).expect_err(input);
            assert!(check(&err), "{input}: unexpected {err:?}");
        }
    }

    /// `TestValidateReferenceName` and `TestValidateRemoteName` (normalize_test.go).
    #[test]
    fn normalized_validity() {
        let valid = [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "192.168.0.2:25000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000/docker/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
        ];
        for name in valid {
            Reference::parse(name).unwrap_or_else(|e| panic!("{name} should be valid: {e}"));
        }
        let long_ns = format!(
            "{}/docker",
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_".repeat(4)
        );
        let invalid = [
            // Found by fuzz/reference: a first component with a `.` is a registry host
            // or nothing; docker's grammar would make it a path with no registry.
            "r_5dcker.io55555/5511",
            "my_registry.example/app",
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            &long_ns,
        ];
        for name in invalid {
            assert!(Reference::parse(name).is_err(), "{name} should be invalid");
        }
    }

    /// `TestParseRepositoryInfo`: every spelling gives the same familiar/full/domain/path.
    #[test]
    fn repository_info() {
        // (remote path, familiar, full, ambiguous spelling, domain)
        let cases = [
            (
                "fooo/bar",
                "fooo/bar",
                "docker.io/fooo/bar",
                "index.docker.io/fooo/bar",
                "docker.io",
            ),
            (
                "library/ubuntu",
                "ubuntu",
                "docker.io/library/ubuntu",
                "library/ubuntu",
                "docker.io",
            ),
            (
                "nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "",
                "docker.io",
            ),
            (
                "other/library",
                "other/library",
                "docker.io/other/library",
                "",
                "docker.io",
            ),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "",
                "example.com",
            ),
            (
                "privatebase",
                "example.com/privatebase",
                "example.com/privatebase",
                "",
                "example.com",
            ),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            (
                "privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "",
                "example.com:8000",
            ),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            (
                "library/foo",
                "foo",
                "docker.io/library/foo",
                "docker.io/foo",
                "docker.io",
            ),
            (
                "library/foo/bar",
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "",
                "docker.io",
            ),
            (
                "store/foo/bar",
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "",
                "docker.io",
            ),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ];
        for (remote, familiar, full, ambiguous, domain) in cases {
            for spelling in [familiar, full, ambiguous] {
                if spelling.is_empty() {
                    continue;
                }
                let r = Reference::parse_without_default_tag(spelling)
                    .unwrap_or_else(|e| panic!("{spelling}: {e}"));
                assert_eq!(r.familiar_name(), familiar, "{spelling}: familiar");
                assert_eq!(r.to_string(), full, "{spelling}: full");
                assert_eq!(r.domain(), domain, "{spelling}: domain");
                assert_eq!(r.path(), remote, "{spelling}: path");
            }
        }
    }

    /// `TestNormalizedSplitHostname` plus the task's own examples.
    #[test]
    fn normalisation_examples() {
        let cases = [
            ("app", "docker.io/library/app:latest", "app:latest"),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            ("user/app:tag", "docker.io/user/app:tag", "user/app:tag"),
            ("host:5000/a/b:tag", "host:5000/a/b:tag", "host:5000/a/b:tag"),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            ("test.com/foo", "test.com/foo:latest", "test.com/foo:latest"),
            ("test_com/foo", "docker.io/test_com/foo:latest", "test_com/foo:latest"),
            ("test-com:8080/foo", "test-com:8080/foo:latest", "test-com:8080/foo:latest"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo:latest", "xn--n3h.com:18080/foo:latest"),
            ("docker.io/library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
            (
                "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
                "docker.io/library/busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
                "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
            ),
            (
                "redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
                "docker.io/library/redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
                "redis@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
            ),
            ("dbcc1", "docker.io/library/dbcc1:latest", "dbcc1:latest"),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(Reference::parse(&r.to_string()).expect("reparse"), r);
        }
        let r = Reference::parse(
            "app@sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
        )
        .expect("digest ref");
        assert_eq!(r.tag(), None, "a digest reference gets no default tag");
    }

    #[test]
    fn clear_errors() {
        let e = Reference::parse("App").expect_err("upper case");
        assert_eq!(
            e.to_string(),
            "invalid reference format: repository name (library/App) must be lowercase"
        );
        let e = Reference::parse("app:-bad").expect_err("bad tag");
        assert!(
            matches!(
                e,
                ReferenceError::InvalidFormat {
                    problem: FormatProblem::Tag,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Reference::parse("app:").expect_err("empty tag");
        assert!(
            matches!(
                e,
                ReferenceError::InvalidFormat {
                    problem: FormatProblem::Tag,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Reference::parse("a//b").expect_err("empty component");
        assert!(
            matches!(e, ReferenceError::InvalidFormat { problem: FormatProblem::PathComponent, ref input } if input == "a//b"),
            "{e:?}"
        );
        let e = Reference::parse(&"a".repeat(300)).expect_err("too long");
        assert!(matches!(e, ReferenceError::NameTooLong { .. }), "{e:?}");
        let e = Reference::parse(&"1a".repeat(32)).expect_err("hex id");
        assert!(matches!(e, ReferenceError::HexIdentifier(_)), "{e:?}");
        let e = Reference::parse("").expect_err("empty");
        assert_eq!(e, ReferenceError::Empty);
    }

    #[test]
    fn with_tag_and_serde() {
        let r = Reference::parse("test.com:8000/foo").expect("valid");
        assert_eq!(
            r.with_tag("TAG5").expect("tag").to_string(),
            "test.com:8000/foo:TAG5"
        );
        assert!(r.with_tag(".x").is_err());
        let json = serde_json::to_string(&r).expect("ser");
        assert_eq!(json, "\"test.com:8000/foo:latest\"");
        let back: Reference = serde_json::from_str(&json).expect("de");
        assert_eq!(back, r);
    }
}
