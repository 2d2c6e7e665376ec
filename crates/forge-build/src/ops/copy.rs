//! COPY and ADD: writes a step's new files into an empty directory that
//! becomes the step's layer, with BuildKit's semantics (its Dockerfile
//! frontend's `dispatchCopy` and fsutil's `copy.Copy`, which it runs).
//!
//! # Sources
//! - Each source path is cleaned (`../x` is `x`) and may hold wildcards
//!   (Go's `filepath.Match` per component). A wildcard matching nothing
//!   copies nothing (BuildKit's `AllowEmptyWildcard`); a plain path that
//!   does not exist is an error. In the build context, `.dockerignore`d
//!   paths do not exist.
//! - A source path that is a symlink (or has one in its parents) is
//!   followed *inside the source root*: an absolute target counts from the
//!   root, `..` never leaves it. Entries met while copying a directory are
//!   never followed: a symlink is copied as a symlink.
//! - A directory source copies its contents, not itself.
//! - `--parents`: the source's path below the root (or below a `/./`
//!   pivot) is kept under the destination; parent directories get their
//!   source metadata.
//! - `--exclude` patterns (`.dockerignore` syntax) are matched against
//!   paths relative to each matched source, as fsutil does.
//!
//! # Destination
//! - Ending in `/` (or `.`): a directory, created when missing. Otherwise
//!   a non-directory source is written at the destination itself unless it
//!   names an existing directory, in which case it goes inside.
//! - Several sources (or a glob matching several): each is copied to the
//!   destination in turn as if it were alone, as BuildKit does (no check,
//!   unlike the legacy builder): to a destination that is not a directory
//!   the last file wins, directory sources merge their contents, and a
//!   directory source after a file at the destination is an error.
//! - The destination resolves inside the destination root: a symlink there
//!   (`/lib -> usr/lib`) is followed as BuildKit's `fs.RootPath` follows it.
//! - Missing directories are created 0755, owned by the `--chown` owner or
//!   root; directories that exist below are recreated in the layer with
//!   their own mode, owner, xattrs and times.
//!
//! # Metadata
//! Modes are kept, or set by `--chmod` (octal or symbolic) on files and on
//! directories copied from a source. Owners: `--chown` if given (resolved
//! in the destination's `/etc/passwd` and `/etc/group`; a number needs no
//! entry and `--chown=N` means N:N as in BuildKit); else 0:0 for the build
//! context (BuildKit's context transfer resets them) and the source's own
//! for a stage or image. Access and modification times are kept; heredoc
//! files are 0644 with mtime 0 (the epoch), so their layer is reproducible.
//! Hard links between files of one source are kept; xattrs are copied
//! where the file system takes them.
//!
//! # ADD
//! Local files that are tar archives (plain, gzip, bzip2, xz or zstd, told
//! by content) are extracted into the destination directory unless
//! `--unpack=false`. `http(s)://` URLs are downloaded to the destination
//! (named after the URL's last path element when the destination is a
//! directory), mode 0600, mtime from `Last-Modified`, verified against
//! `--checksum`; their content digest is reported for the cache key. Git
//! URLs are refused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use forge_dockerfile::dockerignore::{clean_path, Matcher, PatternError};
use forge_oci::{Algorithm, Digest, Hasher};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, mknodat, utimensat, FchmodatFlags, FileStat, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use std::os::unix::fs::MetadataExt;

use super::archive;
use super::dest::{Dest, DestError, DirHandle};
use super::fetch::{self, FetchError};
use super::fsx::{self, kind, lstat_at, open_dir_at, walk_dir, Comps, Node, Walked};
use super::mode::Chmod;
pub use super::mode::ChmodError;
use super::reuse::{layer_key, Candidate, Expected, Previous, Reuser, SourceStamp};
use super::source::{has_wildcard, may_contain, Src, SrcError};
use crate::context::{BuildContext, StatCache};
use crate::graph;

/// Where a copy's sources come from.
#[derive(Debug, Clone, Copy)]
pub enum CopySource<'a> {
    /// The build context (`.dockerignore` applies; owners become 0:0).
    Context(&'a BuildContext),
    /// A read-only tree: a stage's or an image's root filesystem, as a
    /// directory path (in the build, `/proc/self/fd/N` of a detached
    /// overlay mount). Owners are kept.
    Tree(&'a Path),
}

/// One COPY or ADD.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    pub op: &'a graph::Copy,
    /// Where sources come from.
    pub source: CopySource<'a>,
    /// Read-only view of the destination's current root filesystem (`None`:
    /// empty, e.g. scratch or `--link`).
    pub dest_view: Option<&'a Path>,
    /// Root whose `/etc/passwd` and `/etc/group` resolve `--chown` names;
    /// `None`: `dest_view`. (With `--link` the copy is made on nothing, but
    /// the caller may still want names resolved in the stage's root.)
    pub users_view: Option<&'a Path>,
    /// An empty directory: the new layer's files are written here.
    pub diff_dir: &'a Path,
    /// The build's downloads, so an ADD URL its cache key fetched is not fetched again.
    pub downloads: Option<&'a fetch::Downloads>,
}

/// A URL an ADD downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedUrl {
    pub url: String,
    /// sha256 of the content (part of the step's cache key).
    pub digest: Digest,
    pub size: u64,
    /// The server's `Last-Modified`, when it sent one.
    pub last_modified: Option<SystemTime>,
}

/// What a copy wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOutcome {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Extra names of files already copied (hard links kept).
    pub hardlinks: u64,
    /// Devices, FIFOs and sockets.
    pub special: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Local or downloaded archives extracted by ADD.
    pub archives: u64,
    pub urls: Vec<FetchedUrl>,
    /// Files hard-linked from the previous result instead of copied (see [`reuse`](super::reuse)).
    pub reused: u64,
    /// The source stamps of the context files copied, by path in the layer: what the
    /// next run of the step may reuse ([`Previous::save`]).
    pub stamps: BTreeMap<String, SourceStamp>,
}

/// Why a COPY or ADD failed. Messages follow docker's and BuildKit's words;
/// callers prefix them with the instruction (`COPY failed: …`).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("file not found in build context or excluded by .dockerignore: {0:?}")]
    NotFoundInContext(String),
    #[error("{0:?}: not found")]
    NotFound(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid --chown value {value:?}: {reason}")]
    InvalidChown { value: String, reason: String },
    #[error(transparent)]
    Chmod(#[from] ChmodError),
    #[error("invalid --exclude pattern: {0}")]
    Exclude(#[from] PatternError),
    #[error("checksum can't be specified for COPY")]
    ChecksumForCopy,
    #[error("checksum can't be specified for multiple sources")]
    ChecksumMultipleSources,
    #[error("checksum can't be specified for non-HTTP(S) sources: {0:?}")]
    ChecksumNotHttp(String),
    #[error("invalid checksum {value:?}: {reason}")]
    BadChecksum { value: String, reason: String },
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("source can't be a URL for COPY: {0}")]
    UrlInCopy(String),
    #[error("ADD of a Git repository is not supported: {0}")]
    GitUnsupported(String),
    #[error("failed to fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("cannot copy to non-directory: {0}")]
    NotADirectory(String),
    #[error("cannot replace to directory {0} with file")]
    IsADirectory(String),
    #[error("too many levels of symbolic links resolving {0}")]
    TooManyLinks(String),
    #[error("{0}: directory tree nested too deeply")]
    TooDeep(String),
    #[error("extracting {archive}: {reason}")]
    Archive { archive: String, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

impl From<DestError> for CopyError {
    fn from(e: DestError) -> Self {
        match e {
            DestError::NotADirectory(p) => CopyError::NotADirectory(p),
            DestError::IsADirectory(p) => CopyError::IsADirectory(p),
            DestError::TooManyLinks(p) => CopyError::TooManyLinks(p),
            DestError::Io { op, path, source } => CopyError::Io { op, path, source },
        }
    }
}

impl From<SrcError> for CopyError {
    fn from(e: SrcError) -> Self {
        match e {
            SrcError::TooManyLinks(p) => CopyError::TooManyLinks(p),
            SrcError::TooDeep(p) => CopyError::TooDeep(p),
            SrcError::Io { path, source } => CopyError::Io {
                op: "read",
                path,
                source,
            },
        }
    }
}

pub(crate) fn io_at<'c>(
    op: &'static str,
    comps: &'c [OsString],
) -> impl FnOnce(Errno) -> CopyError + 'c {
    move |e| CopyError::Io {
        op,
        path: fsx::show(comps),
        source: e.into(),
    }
}

pub(crate) fn ioe_at<'c>(
    op: &'static str,
    comps: &'c [OsString],
) -> impl FnOnce(io::Error) -> CopyError + 'c {
    move |source| CopyError::Io {
        op,
        path: fsx::show(comps),
        source,
    }
}

/// Runs one COPY or ADD. See the module documentation for the rules.
pub fn copy(req: &CopyRequest<'_>) -> Result<CopyOutcome, CopyError> {
    copy_reusing(req, None)
}

/// [`copy`], hard-linking the files of `previous` (the last result of the same step)
/// whose context sources are unchanged instead of writing them again.
pub fn copy_reusing(
    req: &CopyRequest<'_>,
    previous: Option<&Previous>,
) -> Result<CopyOutcome, CopyError> {
    let op = req.op;

    let checksum = match op.add.as_ref().and_then(|a| a.checksum.as_deref()) {
        Some(value) if !value.is_empty() => {
            if op.sources.len() != 1 || !op.inline.is_empty() {
                return Err(CopyError::ChecksumMultipleSources);
            }
            if !fetch::is_http(&op.sources[0]) {
                return Err(CopyError::ChecksumNotHttp(op.sources[0].clone()));
            }
            Some(Digest::parse(value).map_err(|e| CopyError::BadChecksum {
                value: value.to_string(),
                reason: e.to_string(),
            })?)
        }
        _ => None,
    };
    let chmod = op.chmod.as_deref().map(Chmod::parse).transpose()?;
    let exclude = Matcher::new(&op.exclude)?;
    let dest = Dest::open(req.diff_dir, req.dest_view).map_err(|source| CopyError::Io {
        op: "open",
        path: req.diff_dir.display().to_string(),
        source,
    })?;
    let owner = match op.chown.as_deref() {
        Some(spec) if !spec.is_empty() => {
            let users = match req.users_view {
                Some(p) => Some(fsx::open_root(p).map_err(|source| CopyError::Io {
                    op: "open",
                    path: p.display().to_string(),
                    source,
                })?),
                None => None,
            };
            let root = match &users {
                Some(fd) => Some(fd.as_fd()),
                None => dest.lower(),
            };
            Some(resolve_owner(spec, root)?)
        }
        _ => None,
    };
    let src = match req.source {
        CopySource::Context(ctx) => Src::context(ctx).map_err(|source| CopyError::Io {
            op: "open",
            path: ctx.root().display().to_string(),
            source,
        })?,
        CopySource::Tree(p) => Src::tree(p).map_err(|source| CopyError::Io {
            op: "open",
            path: p.display().to_string(),
            source,
        })?,
    };
    let mut c = Copier {
        op,
        src,
        dest,
        owner,
        chmod,
        exclude,
        checksum,
        out: CopyOutcome::default(),
        links: HashMap::new(),
        links_source: None,
        reuse: previous.and_then(Reuser::open),
        pending: None,
        pending_dir: None,
        pending_dirs: 0,
        downloads: req.downloads,
    };
    let items = c.planner().plan()?;
    for item in items {
        c.run(item)?;
    }
    c.dest.finish()?;
    Ok(c.out)
}

/// Downloads an ADD URL (verified against `checksum` when given), in
/// CopyError's terms.
fn fetch_url(
    url: &str,
    checksum: Option<&Digest>,
    downloads: Option<&fetch::Downloads>,
) -> Result<fetch::Fetched, CopyError> {
    fetch::fetch(url, checksum, downloads).map_err(|e| match e {
        FetchError::Http(reason) => CopyError::Fetch {
            url: url.to_string(),
            reason,
        },
        FetchError::Io(source) => CopyError::Io {
            op: "download",
            path: url.to_string(),
            source,
        },
        FetchError::Mismatch { expected, actual } => CopyError::ChecksumMismatch {
            url: url.to_string(),
            expected,
            actual,
        },
    })
}

/// `--chown` as BuildKit resolves it: `user[:group]`, each a name (looked
/// up in the destination's files) or a number; a numeric user alone means
/// the same number for the group.
fn resolve_owner(spec: &str, root: Option<BorrowedFd<'_>>) -> Result<(u32, u32), CopyError> {
    use forge_sandbox::users::{read_in_root, resolve_user, UserError};
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group.is_none() {
        if let Ok(n) = user.parse::<u32>() {
            return Ok((n, n));
        }
    }
    let read = |path: &'static str| -> Result<Option<String>, CopyError> {
        match root {
            Some(r) => read_in_root(r, path).map_err(|e| CopyError::Io {
                op: "read",
                path: path.to_string(),
                source: io::Error::other(e.to_string()),
            }),
            None => Ok(None),
        }
    };
    let passwd = read("/etc/passwd")?;
    let groups = read("/etc/group")?;
    match resolve_user(spec, passwd.as_deref(), groups.as_deref()) {
        Ok(u) => Ok((u.uid, u.gid)),
        Err(UserError::NoSuchUser(n)) => Err(CopyError::UnknownUser(n)),
        Err(UserError::NoSuchGroup(n)) => Err(CopyError::UnknownGroup(n)),
        Err(e) => Err(CopyError::InvalidChown {
            value: spec.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// `--parents`' include pattern.
#[derive(Clone)]
struct Include {
    matcher: Matcher,
    parts: Vec<String>,
}

enum Item {
    Local {
        /// Resolved inside the source root: names the source's final node.
        path: Comps,
        /// The name the source was matched by (before following a link).
        name: OsString,
        dir: bool,
        archive: bool,
        include: Option<Include>,
        shown: String,
        /// Index of the source string it came from: hard links are kept
        /// within one source, as BuildKit copies each source separately.
        source: usize,
    },
    Url(String),
    Inline {
        name: String,
        content: String,
    },
}

struct Copier<'a> {
    op: &'a graph::Copy,
    src: Src<'a>,
    dest: Dest,
    owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    exclude: Matcher,
    checksum: Option<Digest>,
    out: CopyOutcome,
    /// Source inode → first copy's path, for the current source.
    links: HashMap<(u64, u64), Comps>,
    links_source: Option<usize>,
    reuse: Option<Reuser>,
    /// Files of the directory source being walked, written after the walk (or when
    /// [`MAX_PENDING_DIRS`] directories are held open for them).
    pending: Option<Vec<FileJob>>,
    /// The destination directory (path in the layer) of the last queued file and the
    /// directories it is copied between; files of one directory share them.
    pending_dir: Option<(Comps, Arc<(OwnedFd, OwnedFd)>)>,
    pending_dirs: usize,
    downloads: Option<&'a fetch::Downloads>,
}

/// Directories held open for queued files before they are written: bounds descriptors.
const MAX_PENDING_DIRS: usize = 128;

/// One regular file to write: source `sdir/sname` to `ddir/dname` (a new name), with
/// the copy's owner, mode and times.
struct FileJob {
    /// Source and destination directories.
    dirs: Arc<(OwnedFd, OwnedFd)>,
    sname: OsString,
    dname: OsString,
    dst_path: Comps,
    uid: Option<Uid>,
    gid: Option<Gid>,
    perm: u32,
    atime: TimeSpec,
    mtime: TimeSpec,
    stamp: Option<(String, SourceStamp)>,
    /// The previous result's file to hard-link instead, when it still stands for it.
    previous: Option<Candidate>,
}

/// What a [`FileJob`] did: the bytes copied, and whether it linked the previous file.
type JobResult = Result<(u64, bool), CopyError>;

impl FileJob {
    /// Writes the file (or links the previous result's): the bytes copied, and
    /// whether it was linked.
    fn run(&self) -> JobResult {
        let dst_path = &self.dst_path;
        let (sdir, ddir) = &*self.dirs;
        if self
            .previous
            .as_ref()
            .is_some_and(|c| c.link(ddir.as_fd(), &self.dname))
        {
            return Ok((0, true));
        }
        let mut from =
            fsx::open_file_at(sdir.as_fd(), &self.sname).map_err(ioe_at("open", dst_path))?;
        let fd = openat(
            ddir.as_fd(),
            self.dname.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io_at("create", dst_path))?;
        let mut to = File::from(fd);
        let n = io::copy(&mut from, &mut to).map_err(ioe_at("write", dst_path))?;
        fchown(to.as_fd(), self.uid, self.gid).map_err(io_at("chown", dst_path))?;
        fchmod(to.as_fd(), Mode::from_bits_truncate(self.perm))
            .map_err(io_at("chmod", dst_path))?;
        fsx::set_xattrs(to.as_fd(), &fsx::xattrs(from.as_fd()));
        futimens(to.as_fd(), &self.atime, &self.mtime).map_err(io_at("utimes", dst_path))?;
        Ok((n, false))
    }
}

fn timespec(t: SystemTime) -> TimeSpec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => TimeSpec::from_duration(d),
        Err(e) => {
            let d = e.duration();
            TimeSpec::new(-(d.as_secs() as i64), 0)
        }
    }
}

/// Expands a COPY's sources into items, for copying and for the cache key
/// alike: both must see exactly the same selection.
struct Planner<'a> {
    op: &'a graph::Copy,
    src: &'a Src<'a>,
}

impl Planner<'_> {
    fn not_found(&self, src: &str) -> CopyError {
        if self.src.is_context() {
            CopyError::NotFoundInContext(src.to_string())
        } else {
            CopyError::NotFound(format!("/{}", fsx::rel(&fsx::split_str(src))))
        }
    }

    fn unpack_local(&self) -> bool {
        match &self.op.add {
            Some(a) => a.unpack != Some(false),
            None => false,
        }
    }

    /// Expands the sources into the items to copy, checking each exists.
    fn plan(&self) -> Result<Vec<Item>, CopyError> {
        let mut items = Vec::new();
        for (index, src) in self.op.sources.iter().enumerate() {
            if fetch::is_git(src) {
                return Err(CopyError::GitUnsupported(src.clone()));
            }
            if fetch::is_http(src) {
                if self.op.add.is_none() {
                    return Err(CopyError::UrlInCopy(src.clone()));
                }
                items.push(Item::Url(src.clone()));
                continue;
            }
            let (base, pattern) = if self.op.parents {
                match src.split_once("/./") {
                    Some((parent, pattern)) => (parent.to_string(), Some(pattern.to_string())),
                    None => ("/".to_string(), Some(src.clone())),
                }
            } else {
                (src.clone(), None)
            };
            let include = match &pattern {
                Some(p) => {
                    let cleaned = clean_path(&format!("/{p}"));
                    let cleaned = cleaned.trim_start_matches('/');
                    if cleaned.is_empty() {
                        None
                    } else {
                        Some(Include {
                            matcher: Matcher::new(&[cleaned])?,
                            parts: cleaned.split('/').map(str::to_string).collect(),
                        })
                    }
                }
                None => None,
            };
            let base_comps = fsx::split_str(&base);
            let wild = base_comps
                .iter()
                .any(|c| has_wildcard(&c.to_string_lossy()));
            if let Some(p) = &pattern {
                if !wild && !has_wildcard(p) {
                    // BuildKit's RequiredPaths: a plain --parents source must exist.
                    let mut required = base_comps.clone();
                    required.extend(fsx::split_str(p));
                    let resolved = self.src.resolve(required, true)?;
                    let node = self
                        .src
                        .lookup(&resolved)
                        .map_err(ioe_at("stat", &resolved))?;
                    if !node.exists() {
                        return Err(self.not_found(src));
                    }
                }
            }
            let matches = self.src.expand(&base_comps)?;
            for m in matches {
                let resolved = self.src.resolve(m.clone(), true)?;
                let node = self
                    .src
                    .lookup(&resolved)
                    .map_err(ioe_at("stat", &resolved))?;
                let dir = match &node {
                    Node::Dir(_) => true,
                    Node::Other(_) => false,
                    Node::Missing | Node::Link(_) => {
                        if wild {
                            continue;
                        }
                        return Err(self.not_found(src));
                    }
                };
                let archive = !dir
                    && self.unpack_local()
                    && matches!(&node, Node::Other(st) if kind(st) == SFlag::S_IFREG)
                    && self.is_archive(&resolved)?;
                items.push(Item::Local {
                    name: m.last().cloned().unwrap_or_default(),
                    path: resolved,
                    dir,
                    archive,
                    include: include.clone(),
                    shown: src.clone(),
                    source: index,
                });
            }
        }
        for (name, content) in &self.op.inline {
            items.push(Item::Inline {
                name: name.clone(),
                content: content.clone(),
            });
        }
        Ok(items)
    }

    fn open_source_file(&self, path: &[OsString]) -> Result<File, CopyError> {
        let Some((name, parent)) = path.split_last() else {
            return Err(CopyError::NotADirectory(fsx::show(path)));
        };
        let Walked::Dir(dir) = walk_dir(self.src.root(), parent).map_err(ioe_at("open", path))?
        else {
            return Err(ioe_at("open", path)(io::Error::from_raw_os_error(
                libc::ENOENT,
            )));
        };
        fsx::open_file_at(dir.as_fd(), name).map_err(ioe_at("open", path))
    }

    fn is_archive(&self, path: &[OsString]) -> Result<bool, CopyError> {
        let mut f = self.open_source_file(path)?;
        Ok(archive::is_tar(&mut f))
    }
}

impl<'a> Copier<'a> {
    fn planner(&self) -> Planner<'_> {
        Planner {
            op: self.op,
            src: &self.src,
        }
    }

    fn new_dir_owner(&self) -> (u32, u32) {
        self.owner.unwrap_or((0, 0))
    }

    /// Where an item goes (fsutil's `Copy` and `prepareTargetDir`): creates
    /// the directories it needs and returns the target path, resolved in
    /// the merged destination.
    fn place(&mut self, is_dir: bool, contents: bool, base: &OsStr) -> Result<Comps, CopyError> {
        let raw = self.op.dest.as_str();
        let comps = fsx::split_str(raw);
        let dir_syntax = raw.is_empty() || raw.ends_with('/') || raw == "." || raw.ends_with("/.");
        let owner = self.new_dir_owner();
        let ensure = if dir_syntax || comps.is_empty() {
            comps.clone()
        } else {
            comps[..comps.len() - 1].to_vec()
        };
        let ensure = self.dest.resolve(ensure, true)?;
        self.dest.mkdir_p(&ensure, owner)?;
        let dst = self.dest.resolve(comps, true)?;
        let node = self.dest.lookup(&dst).map_err(ioe_at("stat", &dst))?;
        let exists = node.exists();
        let mut target = dst;
        if (!contents && is_dir && exists) || (!is_dir && matches!(node, Node::Dir(_))) {
            target.push(base.to_os_string());
        }
        let mk = if contents && is_dir && !exists {
            target.clone()
        } else {
            target[..target.len().saturating_sub(1)].to_vec()
        };
        self.dest.mkdir_p(&mk, owner)?;
        Ok(target)
    }

    fn run(&mut self, item: Item) -> Result<(), CopyError> {
        if let Item::Local { source, .. } = &item {
            if self.links_source != Some(*source) {
                self.links.clear();
                self.links_source = Some(*source);
            }
        }
        match item {
            Item::Local {
                path,
                archive: true,
                shown,
                ..
            } => {
                let file = self.planner().open_source_file(&path)?;
                self.extract(file, &shown)
            }
            Item::Local {
                path,
                name,
                dir: true,
                include,
                ..
            } => {
                let target = self.place(true, true, &name)?;
                self.copy_dir(&path, &target, include.as_ref())
            }
            Item::Local { path, name, .. } => {
                let target = self.place(false, true, &name)?;
                self.copy_top(&path, &target)
            }
            Item::Url(url) => self.add_url(&url),
            Item::Inline { name, content } => {
                let base = fsx::split_str(&name)
                    .last()
                    .cloned()
                    .unwrap_or_else(|| OsString::from(&name));
                let target = self.place(false, false, &base)?;
                self.write_new_file(&target, &mut content.as_bytes(), 0o644, UNIX_EPOCH)
            }
        }
    }

    fn add_url(&mut self, url: &str) -> Result<(), CopyError> {
        let fetched = fetch_url(url, self.checksum.as_ref(), self.downloads)?;
        self.out.urls.push(FetchedUrl {
            url: url.to_string(),
            digest: fetched.digest.clone(),
            size: fetched.size,
            last_modified: fetched.last_modified,
        });
        let mut file = fetched.file;
        // Remote archives are extracted only with --unpack=true.
        let unpack = self.op.add.as_ref().and_then(|a| a.unpack) == Some(true);
        if unpack && archive::is_tar(&mut file) {
            return self.extract(file, url);
        }
        let name = OsString::from(fetch::file_name(url));
        let target = self.place(false, false, &name)?;
        let mtime = fetched.last_modified.unwrap_or_else(SystemTime::now);
        self.write_new_file(&target, &mut file, 0o600, mtime)
    }

    fn extract(&mut self, file: File, shown: &str) -> Result<(), CopyError> {
        let root = self.dest.resolve(fsx::split_str(&self.op.dest), true)?;
        let owner = self.new_dir_owner();
        self.dest.mkdir_p(&root, owner)?;
        // An archive's entries keep the owners the archive gives them, --chown or not:
        // docker 20.10's BuildKit extracts them so (peer case p-addlocal), as the
        // classic builder did.
        archive::extract(file, &mut self.dest, &root, None, &mut self.out, shown)?;
        self.out.archives += 1;
        Ok(())
    }

    fn owner_for(&self, st: &FileStat) -> (u32, u32) {
        match self.owner {
            Some(o) => o,
            None if self.src.keeps_owner() => (st.st_uid, st.st_gid),
            None => (0, 0),
        }
    }

    fn perm_for(&self, st: &FileStat, is_dir: bool) -> u32 {
        let perm = st.st_mode & 0o7777;
        match &self.chmod {
            Some(c) => c.apply(perm, is_dir),
            None => perm,
        }
    }

    /// A non-directory source onto `target`.
    fn copy_top(&mut self, path: &[OsString], target: &[OsString]) -> Result<(), CopyError> {
        let Some((name, parent)) = path.split_last() else {
            return Err(CopyError::NotADirectory(fsx::show(path)));
        };
        let Walked::Dir(sdir) = walk_dir(self.src.root(), parent).map_err(ioe_at("open", path))?
        else {
            return Err(ioe_at("open", path)(io::Error::from_raw_os_error(
                libc::ENOENT,
            )));
        };
        let Some(st) = lstat_at(sdir.as_fd(), name).map_err(ioe_at("stat", path))? else {
            return Err(ioe_at("stat", path)(io::Error::from_raw_os_error(
                libc::ENOENT,
            )));
        };
        let Some((tname, tparent)) = target.split_last() else {
            return Err(CopyError::IsADirectory("/".into()));
        };
        let Some(dp) = self.dest.open_dir(tparent)? else {
            return Err(CopyError::NotADirectory(fsx::show(tparent)));
        };
        let mut links = std::mem::take(&mut self.links);
        let r = self.write_entry(sdir.as_fd(), name, &dp, tname, &st, target, &mut links);
        self.links = links;
        r.map(|_| ())
    }

    /// A directory's contents onto the directory `dst_top`.
    fn copy_dir(
        &mut self,
        src_top: &[OsString],
        dst_top: &[OsString],
        include: Option<&Include>,
    ) -> Result<(), CopyError> {
        let descend = |d: &[OsString]| include.is_none_or(|i| may_contain(&i.parts, d));
        let entries = self.src.entries(src_top, &descend)?;
        let Walked::Dir(root_src) =
            walk_dir(self.src.root(), src_top).map_err(ioe_at("open", src_top))?
        else {
            return Err(ioe_at("open", src_top)(io::Error::from_raw_os_error(
                libc::ENOENT,
            )));
        };
        let Some(root_dst) = self.dest.open_dir(dst_top)? else {
            return Err(CopyError::NotADirectory(fsx::show(dst_top)));
        };
        let cache: (Comps, OwnedFd, DirHandle) = (Vec::new(), root_src, root_dst);
        let mut made: Vec<Comps> = Vec::new();
        let mut made_set: HashSet<Comps> = HashSet::new();
        let mut links = std::mem::take(&mut self.links);
        self.pending = Some(Vec::new());
        let r = self.copy_entries(
            src_top,
            dst_top,
            include,
            entries,
            cache,
            &mut made,
            &mut made_set,
            &mut links,
        );
        self.links = links;
        if r.is_err() {
            self.pending = None;
            self.pending_dir = None;
            return r;
        }
        // Written before the directories' times are set, and before anything else of
        // the copy can write the same names.
        let written = self.write_pending();
        self.pending = None;
        written?;
        for rel in made.iter().rev() {
            self.finish_dir(src_top, dst_top, rel)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_entries(
        &mut self,
        src_top: &[OsString],
        dst_top: &[OsString],
        include: Option<&Include>,
        entries: Vec<Comps>,
        mut cache: (Comps, OwnedFd, DirHandle),
        made: &mut Vec<Comps>,
        made_set: &mut HashSet<Comps>,
        links: &mut HashMap<(u64, u64), Comps>,
    ) -> Result<(), CopyError> {
        for rel in entries {
            let Some((name, parent)) = rel.split_last() else {
                continue;
            };
            let sub = fsx::rel(&rel);
            if !self.exclude.is_empty() && self.exclude.matches(&sub) {
                continue;
            }
            if let Some(inc) = include {
                if !inc.matcher.matches(&sub) {
                    continue;
                }
            }
            if cache.0.as_slice() != parent {
                cache = self.open_parent(src_top, dst_top, parent, made, made_set)?;
            }
            let mut dst_path = dst_top.to_vec();
            dst_path.extend(rel.iter().cloned());
            let Some(st) = lstat_at(cache.1.as_fd(), name).map_err(ioe_at("stat", &rel))? else {
                continue;
            };
            let made_dir =
                self.write_entry(cache.1.as_fd(), name, &cache.2, name, &st, &dst_path, links)?;
            if let Some(handle) = made_dir {
                if made_set.insert(rel.clone()) {
                    made.push(rel.clone());
                }
                if let Ok(Some(sfd)) = open_dir_at(cache.1.as_fd(), name) {
                    cache = (rel.clone(), sfd, handle);
                }
            }
        }
        Ok(())
    }

    /// Opens the source directory `src_top/parent` and the destination
    /// directory `dst_top/parent`, creating destination directories not
    /// made yet (parents of included entries whose own directory was
    /// filtered out).
    fn open_parent(
        &mut self,
        src_top: &[OsString],
        dst_top: &[OsString],
        parent: &[OsString],
        made: &mut Vec<Comps>,
        made_set: &mut HashSet<Comps>,
    ) -> Result<(Comps, OwnedFd, DirHandle), CopyError> {
        let mut sp = src_top.to_vec();
        sp.extend(parent.iter().cloned());
        let Walked::Dir(sfd) = walk_dir(self.src.root(), &sp).map_err(ioe_at("open", &sp))? else {
            return Err(ioe_at("open", &sp)(io::Error::from_raw_os_error(
                libc::ENOENT,
            )));
        };
        let Some(mut cur) = self.dest.open_dir(dst_top)? else {
            return Err(CopyError::NotADirectory(fsx::show(dst_top)));
        };
        let mut path = dst_top.to_vec();
        for i in 0..parent.len() {
            path.push(parent[i].clone());
            let (next, _) = cur.ensure_dir(&parent[i], &path)?;
            let rel = parent[..=i].to_vec();
            if made_set.insert(rel.clone()) {
                made.push(rel);
            }
            cur = next;
        }
        Ok((parent.to_vec(), sfd, cur))
    }

    /// Sets a copied directory's metadata from its source, after its
    /// contents are written.
    fn finish_dir(
        &mut self,
        src_top: &[OsString],
        dst_top: &[OsString],
        rel: &[OsString],
    ) -> Result<(), CopyError> {
        let mut sp = src_top.to_vec();
        sp.extend(rel.iter().cloned());
        let mut dp = dst_top.to_vec();
        dp.extend(rel.iter().cloned());
        let Walked::Dir(sfd) = walk_dir(self.src.root(), &sp).map_err(ioe_at("open", &sp))? else {
            return Ok(());
        };
        let st = nix::sys::stat::fstat(sfd.as_fd()).map_err(io_at("stat", &sp))?;
        let Some((name, parent)) = dp.split_last() else {
            return Ok(());
        };
        let Walked::Dir(pfd) = walk_dir(self.dest.upper(), parent).map_err(ioe_at("open", &dp))?
        else {
            return Ok(());
        };
        let (uid, gid) = self.owner_for(&st);
        fchownat(
            pfd.as_fd(),
            name.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io_at("chown", &dp))?;
        fchmodat(
            pfd.as_fd(),
            name.as_os_str(),
            Mode::from_bits_truncate(self.perm_for(&st, true)),
            FchmodatFlags::FollowSymlink,
        )
        .map_err(io_at("chmod", &dp))?;
        if let Ok(Some(dfd)) = open_dir_at(pfd.as_fd(), name) {
            fsx::set_xattrs(dfd.as_fd(), &fsx::xattrs(sfd.as_fd()));
        }
        utimensat(
            pfd.as_fd(),
            name.as_os_str(),
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io_at("utimes", &dp))?;
        self.dest.forget(&dp);
        Ok(())
    }

    /// Copies one entry (not following it) from `sdir/sname` to
    /// `dst/dname`. A directory is only created (its metadata is set by
    /// `finish_dir`); its handle is returned.
    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &mut self,
        sdir: BorrowedFd<'_>,
        sname: &OsStr,
        dst: &DirHandle,
        dname: &OsStr,
        st: &FileStat,
        dst_path: &[OsString],
        links: &mut HashMap<(u64, u64), Comps>,
    ) -> Result<Option<DirHandle>, CopyError> {
        let k = kind(st);
        if k == SFlag::S_IFDIR {
            let (h, _) = dst.ensure_dir(dname, dst_path)?;
            self.out.dirs += 1;
            return Ok(Some(h));
        }
        dst.clear_for_file(dname, dst_path)?;
        let (uid, gid) = self.owner_for(st);
        let uid = Some(Uid::from_raw(uid));
        let gid = Some(Gid::from_raw(gid));
        let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
        let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
        match k {
            SFlag::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = links.get(&key) {
                        if let Some((lname, lparent)) = first.split_last() {
                            if let Walked::Dir(lp) = walk_dir(self.dest.upper(), lparent)
                                .map_err(ioe_at("open", first))?
                            {
                                linkat(
                                    lp.as_fd(),
                                    lname.as_os_str(),
                                    dst.upper.as_fd(),
                                    dname,
                                    AtFlags::empty(),
                                )
                                .map_err(io_at("link", dst_path))?;
                                self.out.hardlinks += 1;
                                return Ok(None);
                            }
                        }
                    }
                }
                // Context files with one link are stamped, and reused when unchanged.
                let stamped = (self.src.is_context() && st.st_nlink == 1)
                    .then(|| layer_key(dst_path).map(|k| (k, SourceStamp::of(st))))
                    .flatten();
                let previous = stamped
                    .as_ref()
                    .and_then(|(key, stamp)| self.candidate(key, dst_path, stamp, st));
                // A file with one link needs nothing copied before it: it may be
                // written (or linked) in parallel with the rest of its directory walk.
                let queued = st.st_nlink == 1 && self.pending.is_some();
                let job = FileJob {
                    dirs: self.job_dirs(sdir, dst, dst_path, queued)?,
                    sname: sname.to_os_string(),
                    dname: dname.to_os_string(),
                    dst_path: dst_path.to_vec(),
                    uid,
                    gid,
                    perm: self.perm_for(st, false),
                    atime,
                    mtime,
                    stamp: stamped,
                    previous,
                };
                if queued {
                    if let Some(pending) = self.pending.as_mut() {
                        pending.push(job);
                        return Ok(None);
                    }
                }
                let (n, reused) = job.run()?;
                self.finished(job, n, reused);
                if st.st_nlink > 1 {
                    links.insert(key, dst_path.to_vec());
                }
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(sdir, sname).map_err(io_at("readlink", dst_path))?;
                symlinkat(target.as_os_str(), dst.upper.as_fd(), dname)
                    .map_err(io_at("symlink", dst_path))?;
                fchownat(
                    dst.upper.as_fd(),
                    dname,
                    uid,
                    gid,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io_at("chown", dst_path))?;
                utimensat(
                    dst.upper.as_fd(),
                    dname,
                    &atime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(io_at("utimes", dst_path))?;
                self.out.symlinks += 1;
            }
            _ => {
                mknodat(
                    dst.upper.as_fd(),
                    dname,
                    k,
                    Mode::from_bits_truncate(0o600),
                    st.st_rdev,
                )
                .map_err(io_at("mknod", dst_path))?;
                fchownat(
                    dst.upper.as_fd(),
                    dname,
                    uid,
                    gid,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io_at("chown", dst_path))?;
                fchmodat(
                    dst.upper.as_fd(),
                    dname,
                    Mode::from_bits_truncate(self.perm_for(st, false)),
                    FchmodatFlags::FollowSymlink,
                )
                .map_err(io_at("chmod", dst_path))?;
                utimensat(
                    dst.upper.as_fd(),
                    dname,
                    &atime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(io_at("utimes", dst_path))?;
                self.out.special += 1;
            }
        }
        Ok(None)
    }

    /// The source and destination directories of a file to write, shared with the
    /// queued files of the same directory when `queued`. Writes the queue first when
    /// it holds too many directories open.
    fn job_dirs(
        &mut self,
        sdir: BorrowedFd<'_>,
        dst: &DirHandle,
        dst_path: &[OsString],
        queued: bool,
    ) -> Result<Arc<(OwnedFd, OwnedFd)>, CopyError> {
        let parent = &dst_path[..dst_path.len().saturating_sub(1)];
        if queued {
            if let Some((p, dirs)) = &self.pending_dir {
                if p.as_slice() == parent {
                    return Ok(Arc::clone(dirs));
                }
            }
            if self.pending_dirs >= MAX_PENDING_DIRS {
                self.write_pending()?;
            }
        }
        let dirs = Arc::new((
            sdir.try_clone_to_owned()
                .map_err(ioe_at("open", dst_path))?,
            dst.upper.try_clone().map_err(ioe_at("open", dst_path))?,
        ));
        if queued {
            self.pending_dir = Some((parent.to_vec(), Arc::clone(&dirs)));
            self.pending_dirs += 1;
        }
        Ok(dirs)
    }

    fn finished(&mut self, job: FileJob, bytes: u64, reused: bool) {
        self.out.bytes += bytes;
        self.out.files += 1;
        self.out.reused += u64::from(reused);
        if let Some((key, stamp)) = job.stamp {
            self.out.stamps.insert(key, stamp);
        }
    }

    /// Writes the files queued while walking a directory source, on several threads:
    /// creating thousands of inodes is kernel work that scales with cores. The first
    /// failure in walk order is the one reported.
    fn write_pending(&mut self) -> Result<(), CopyError> {
        self.pending_dir = None;
        self.pending_dirs = 0;
        let Some(jobs) = self.pending.as_mut().map(std::mem::take) else {
            return Ok(());
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 8)
            .min(jobs.len().div_ceil(64).max(1));
        let results: Vec<JobResult> = if threads <= 1 {
            jobs.iter().map(FileJob::run).collect()
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let slots: Vec<std::sync::Mutex<Option<JobResult>>> =
                jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { return };
                        let r = job.run();
                        if let Ok(mut slot) = slots[i].lock() {
                            *slot = Some(r);
                        }
                    });
                }
            });
            slots
                .into_iter()
                .map(|slot| {
                    slot.into_inner().ok().flatten().unwrap_or_else(|| {
                        Err(CopyError::Io {
                            op: "write",
                            path: String::new(),
                            source: io::Error::other("a copy thread stopped"),
                        })
                    })
                })
                .collect()
        };
        for (job, r) in jobs.into_iter().zip(results) {
            let (n, reused) = r?;
            self.finished(job, n, reused);
        }
        Ok(())
    }

    /// The previous result's file that may stand for `dst_path`: its source is
    /// unchanged; the job linking it checks it has the metadata this copy would give
    /// it, and copies the file otherwise.
    fn candidate(
        &mut self,
        key: &str,
        dst_path: &[OsString],
        stamp: &SourceStamp,
        st: &FileStat,
    ) -> Option<Candidate> {
        let (uid, gid) = self.owner_for(st);
        let want = Expected {
            size: st.st_size,
            perm: self.perm_for(st, false),
            uid,
            gid,
            mtime: (st.st_mtime, st.st_mtime_nsec),
        };
        self.reuse.as_mut()?.find(key, dst_path, stamp, want)
    }

    /// Writes a file that comes from no tree (a download, a heredoc).
    fn write_new_file(
        &mut self,
        target: &[OsString],
        content: &mut dyn Read,
        mode: u32,
        mtime: SystemTime,
    ) -> Result<(), CopyError> {
        let Some((name, parent)) = target.split_last() else {
            return Err(CopyError::IsADirectory("/".into()));
        };
        let Some(dp) = self.dest.open_dir(parent)? else {
            return Err(CopyError::NotADirectory(fsx::show(parent)));
        };
        dp.clear_for_file(name, target)?;
        let fd = openat(
            dp.upper.as_fd(),
            name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io_at("create", target))?;
        let mut to = File::from(fd);
        let n = io::copy(content, &mut to).map_err(ioe_at("write", target))?;
        self.out.bytes += n;
        let (uid, gid) = self.new_dir_owner();
        fchown(
            to.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .map_err(io_at("chown", target))?;
        let perm = match &self.chmod {
            Some(c) => c.apply(mode, false),
            None => mode,
        };
        fchmod(to.as_fd(), Mode::from_bits_truncate(perm)).map_err(io_at("chmod", target))?;
        let t = timespec(mtime);
        futimens(to.as_fd(), &t, &t).map_err(io_at("utimes", target))?;
        self.out.files += 1;
        Ok(())
    }
}

/// The cache-key digest of what a COPY/ADD from the build context selects:
/// the same items and entries [`copy`] would write (globs, `.dockerignore`,
/// `--exclude`, `--parents`, followed source symlinks), each with its path,
/// type, mode, size, and content digest or link target — not mtimes, not
/// owners (context files are copied as 0:0). File contents come from
/// `stat_cache` when their stat is unchanged. URLs are keyed by their
/// address (and `--checksum`, which is part of the op).
pub fn source_digest(
    op: &graph::Copy,
    ctx: &BuildContext,
    stat_cache: &mut StatCache,
    downloads: Option<&fetch::Downloads>,
) -> Result<Digest, CopyError> {
    let src = Src::context(ctx).map_err(|source| CopyError::Io {
        op: "open",
        path: ctx.root().display().to_string(),
        source,
    })?;
    let exclude = Matcher::new(&op.exclude)?;
    let items = Planner { op, src: &src }.plan()?;
    // What is hashed, in order: bytes, and the contents of files, whose digests are
    // computed together at the end (in parallel, from the stat cache when it can).
    #[derive(Default)]
    struct Parts {
        parts: Vec<Option<Vec<u8>>>,
        files: Vec<(String, std::fs::Metadata)>,
    }
    impl Parts {
        fn update(&mut self, bytes: &[u8]) {
            self.parts.push(Some(bytes.to_vec()));
        }
    }
    let mut h = Parts::default();
    let entry = |h: &mut Parts, rel: &str, shown: &str| -> Result<(), CopyError> {
        let full = ctx.root().join(rel);
        let meta =
            std::fs::symlink_metadata(&full).map_err(ioe_at("stat", &fsx::split_str(rel)))?;
        let ft = meta.file_type();
        h.update(format!("\0{shown}\0{:o}\0{}\0", meta.mode(), meta.len()).as_bytes());
        if ft.is_file() {
            // A file's place: its digest goes here.
            h.parts.push(None);
            h.files.push((rel.to_owned(), meta));
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&full).map_err(ioe_at("readlink", &fsx::split_str(rel)))?;
            h.update(target.as_os_str().as_encoded_bytes());
        }
        Ok(())
    };
    for item in items {
        match item {
            Item::Url(url) => {
                h.update(format!("url\0{url}\0").as_bytes());
                // Without --checksum, what a URL gives is only known by fetching it:
                // BuildKit's HTTP source keys the cache on the content (and on
                // Last-Modified, which becomes the file's mtime), so a changed
                // download re-runs the step instead of reusing a stale layer.
                // With --checksum the pinned digest is in the op already.
                if op.add.as_ref().is_none_or(|a| a.checksum.is_none()) {
                    let fetched = fetch_url(&url, None, downloads)?;
                    h.update(fetched.digest.as_str().as_bytes());
                    let modified = fetched
                        .last_modified
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    h.update(format!("\0{modified}\0").as_bytes());
                }
            }
            // Inline content is part of the op itself.
            Item::Inline { .. } => {}
            Item::Local {
                path,
                dir,
                include,
                shown,
                ..
            } => {
                let top = fsx::rel(&path);
                h.update(format!("source\0{shown}\0{top}\0").as_bytes());
                entry(&mut h, &top, ".")?;
                if !dir {
                    continue;
                }
                let descend =
                    |d: &[OsString]| include.as_ref().is_none_or(|i| may_contain(&i.parts, d));
                for rel in src.entries(&path, &descend)? {
                    let sub = fsx::rel(&rel);
                    if !exclude.is_empty() && exclude.matches(&sub) {
                        continue;
                    }
                    if include.as_ref().is_some_and(|i| !i.matcher.matches(&sub)) {
                        continue;
                    }
                    let full_rel = if top.is_empty() || top == "." {
                        sub.clone()
                    } else {
                        format!("{top}/{sub}")
                    };
                    entry(&mut h, &full_rel, &sub)?;
                }
            }
        }
    }
    let digests = stat_cache
        .file_digests(ctx.root(), &h.files)
        .map_err(|e| match e {
            crate::context::ContextError::Io { path, source } => CopyError::Io {
                op: "read",
                path: path.display().to_string(),
                source,
            },
            e => CopyError::Io {
                op: "read",
                path: ctx.root().display().to_string(),
                source: io::Error::other(e.to_string()),
            },
        })?;
    let mut digests = digests.iter();
    let mut hasher = Hasher::new(Algorithm::Sha256);
    for part in &h.parts {
        match part {
            Some(bytes) => hasher.update(bytes),
            None => {
                if let Some(d) = digests.next() {
                    hasher.update(d.as_str().as_bytes());
                }
            }
        }
    }
    Ok(hasher.finish())
}
