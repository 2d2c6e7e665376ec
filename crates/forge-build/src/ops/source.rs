//! Where a copy reads from: the build context (with `.dockerignore`d paths
//! absent, owners reset to 0:0 as BuildKit's context transfer does) or a
//! read-only tree (another stage's or an image's root filesystem, owners
//! kept).
//!
//! Source paths resolve inside the root: a symlink named by a source (or in
//! its parents) is followed as if the root were `/`, so an absolute link to
//! `/etc/passwd` reads the tree's own `/etc/passwd`; entries found while
//! walking a directory are never followed (a symlink is copied as a
//! symlink).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use forge_dockerfile::dockerignore::Matcher;

use super::dest::list_dir;
use super::fsx::{self, child_node, is_dir, node_at, Comps, Found, Node, ResolveError};
use crate::context::{go_match, BuildContext};

/// Deepest directory nesting a walk descends into.
const MAX_DEPTH: usize = 2048;

pub(crate) struct Src<'a> {
    root: OwnedFd,
    ctx: Option<&'a BuildContext>,
}

/// Why a source could not be read.
#[derive(Debug)]
pub(crate) enum SrcError {
    TooManyLinks(String),
    TooDeep(String),
    Io { path: String, source: io::Error },
}

fn io_err(comps: &[OsString]) -> impl FnOnce(io::Error) -> SrcError + '_ {
    move |source| SrcError::Io {
        path: fsx::show(comps),
        source,
    }
}

impl<'a> Src<'a> {
    pub(crate) fn context(ctx: &'a BuildContext) -> io::Result<Src<'a>> {
        Ok(Src {
            root: fsx::open_root(ctx.root())?,
            ctx: Some(ctx),
        })
    }

    pub(crate) fn tree(root: &Path) -> io::Result<Src<'a>> {
        Ok(Src {
            root: fsx::open_root(root)?,
            ctx: None,
        })
    }

    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Whether files keep their owners (a tree) or become 0:0 (the context).
    pub(crate) fn keeps_owner(&self) -> bool {
        self.ctx.is_none()
    }

    pub(crate) fn is_context(&self) -> bool {
        self.ctx.is_some()
    }

    fn hidden(&self, comps: &[OsString]) -> bool {
        match self.ctx {
            Some(ctx) => !comps.is_empty() && ctx.is_ignored(&fsx::rel(comps)),
            None => false,
        }
    }

    /// What a symlink-free path names (`.dockerignore`d paths are missing).
    pub(crate) fn lookup(&self, comps: &[OsString]) -> io::Result<Node> {
        if self.hidden(comps) {
            return Ok(Node::Missing);
        }
        Ok(match node_at(self.root.as_fd(), comps)? {
            Found::Node(n) => n,
            Found::Absent | Found::Blocked => Node::Missing,
        })
    }

    /// Resolves a source path inside the root, following symlinks (the last
    /// component too when `follow_last`).
    pub(crate) fn resolve(&self, comps: Comps, follow_last: bool) -> Result<Comps, SrcError> {
        let shown = fsx::show(&comps);
        fsx::resolve(comps, follow_last, &mut |c| self.lookup(c)).map_err(|e| match e {
            ResolveError::TooManyLinks => SrcError::TooManyLinks(shown.clone()),
            ResolveError::Io(source) => SrcError::Io {
                path: shown.clone(),
                source,
            },
        })
    }

    /// Expands a source that may hold wildcards, as fsutil's
    /// `ResolveWildcards`: the components before the first one with a
    /// wildcard are resolved (symlinks followed), then the rest is matched
    /// component by component with Go's `filepath.Match` below it, without
    /// following symlinks and without descending into a match. Returns the
    /// matches (symlink-free in their parents), sorted; a source without
    /// wildcards is returned as is.
    pub(crate) fn expand(&self, comps: &[OsString]) -> Result<Vec<Comps>, SrcError> {
        let Some(first) = comps
            .iter()
            .position(|c| has_wildcard(&c.to_string_lossy()))
        else {
            return Ok(vec![comps.to_vec()]);
        };
        let base = self.resolve(comps[..first].to_vec(), true)?;
        let patterns: Vec<String> = comps[first..]
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        let mut current = vec![base];
        for (i, pattern) in patterns.iter().enumerate() {
            let last = i + 1 == patterns.len();
            let mut next = Vec::new();
            for dir in &current {
                let fsx::Walked::Dir(fd) =
                    fsx::walk_dir(self.root.as_fd(), dir).map_err(io_err(dir))?
                else {
                    continue;
                };
                if self.hidden(dir) {
                    continue;
                }
                for name in list_dir(fd.as_fd()).map_err(io_err(dir))? {
                    let s = name.to_string_lossy();
                    if go_match(pattern, &s) != Some(true) {
                        continue;
                    }
                    let mut p = dir.clone();
                    p.push(name.clone());
                    if self.hidden(&p) {
                        continue;
                    }
                    if !last {
                        // Only directories can hold the next components.
                        match child_node(fd.as_fd(), &name).map_err(io_err(&p))? {
                            Node::Dir(_) => {}
                            _ => continue,
                        }
                    }
                    next.push(p);
                }
            }
            current = next;
        }
        Ok(current)
    }

    /// The entries below the directory `top` (not `top` itself), as paths
    /// relative to it, parents before children, siblings sorted.
    /// `.dockerignore`d entries are left out (directories with exceptions
    /// below them are entered, as docker does). `descend` may prune a
    /// subtree: it gets a directory's path relative to `top`.
    pub(crate) fn entries(
        &self,
        top: &[OsString],
        descend: &dyn Fn(&[OsString]) -> bool,
    ) -> Result<Vec<Comps>, SrcError> {
        if let Some(ctx) = self.ctx {
            let rel_top = fsx::rel(top);
            let prefix_len = top.len();
            let mut out = Vec::new();
            let none = Matcher::default();
            ctx.walk(&rel_top, &none, &mut |e| {
                let comps = fsx::split_str(&e.path);
                if comps.len() > prefix_len {
                    out.push(comps[prefix_len..].to_vec());
                }
                Ok(())
            })
            .map_err(|e| SrcError::Io {
                path: fsx::show(top),
                source: io::Error::other(e.to_string()),
            })?;
            // The walker lists a directory's children before descending;
            // order them depth-first so parents directly precede children.
            out.sort();
            out.retain(|c| (1..c.len()).all(|n| descend(&c[..n])));
            return Ok(out);
        }
        let fsx::Walked::Dir(fd) = fsx::walk_dir(self.root.as_fd(), top).map_err(io_err(top))?
        else {
            return Err(SrcError::Io {
                path: fsx::show(top),
                source: io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        };
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        walk_tree(fd.as_fd(), &mut prefix, &mut out, descend, top, 0)?;
        Ok(out)
    }
}

fn walk_tree(
    dir: BorrowedFd<'_>,
    prefix: &mut Comps,
    out: &mut Vec<Comps>,
    descend: &dyn Fn(&[OsString]) -> bool,
    top: &[OsString],
    depth: usize,
) -> Result<(), SrcError> {
    if depth > MAX_DEPTH {
        let mut p = top.to_vec();
        p.extend(prefix.iter().cloned());
        return Err(SrcError::TooDeep(fsx::show(&p)));
    }
    let names = list_dir(dir).map_err(|e| {
        let mut p = top.to_vec();
        p.extend(prefix.iter().cloned());
        SrcError::Io {
            path: fsx::show(&p),
            source: e,
        }
    })?;
    for name in names {
        prefix.push(name.clone());
        out.push(prefix.clone());
        let st = fsx::lstat_at(dir, &name).map_err(|e| SrcError::Io {
            path: fsx::show(prefix),
            source: e,
        })?;
        if st.as_ref().is_some_and(is_dir) && descend(prefix) {
            match fsx::open_dir_at(dir, &name) {
                Ok(Some(sub)) => walk_tree(sub.as_fd(), prefix, out, descend, top, depth + 1)?,
                Ok(None) => {}
                Err(e) => {
                    return Err(SrcError::Io {
                        path: fsx::show(prefix),
                        source: e.into(),
                    })
                }
            }
        }
        prefix.pop();
    }
    Ok(())
}

/// Whether a source component has a wildcard (`*`, `?`, `[`, not escaped).
pub(crate) fn has_wildcard(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' | b'?' | b'[' => return true,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    false
}

/// For `--parents`: whether the include pattern could match something at or
/// below the directory `dir` (relative), so the walk must enter it.
pub(crate) fn may_contain(pattern: &[String], dir: &[OsString]) -> bool {
    for (i, c) in dir.iter().enumerate() {
        let Some(p) = pattern.get(i) else {
            // The pattern matched a parent already: everything below is in.
            return true;
        };
        if p.contains("**") {
            return true;
        }
        if go_match(p, &c.to_string_lossy()) != Some(true) {
            return false;
        }
    }
    true
}
