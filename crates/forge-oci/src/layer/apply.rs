//! Applying a layer tar to a directory without ever writing outside it.
//!
//! Containment, the part that matters (CVE-2018-15664, CVE-2019-14271, runc's and
//! containerd's tar breakouts): every entry name is split into components and refused if it
//! is absolute or has a `..` component. Parent directories are then reached by opening one
//! component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor of the
//! target, so a symlink anywhere in the parents (planted by an earlier entry or already
//! there) is refused instead of followed, and every create, link, unlink, chown, chmod,
//! xattr and utimes call works relative to that parent descriptor on the final name only,
//! never following it. Hardlink targets go through the same walk. We chose to refuse such
//! entries (typed error naming the entry) rather than resolve them "inside the root" as
//! docker's chroot-based applier does: a layer produced by docker, BuildKit or forge never
//! needs a path through a symlink, since they write real paths from the upper dir.
//!
//! Nothing is buffered: file data is copied straight from the tar stream into the file, and
//! the only per-entry state kept is the set of paths written (for opaque directories in
//! plain mode) and the directories whose mode and mtime are set at the end (because writing
//! their children changes the mtime, and a read-only mode would stop an unprivileged user
//! from writing the children).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use super::{
    is_overlay_xattr, peek, sniff, Compression, Decoder, Sniffed, OVERLAY_OPAQUE_XATTR, SNIFF_LEN,
    WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};
use crate::digest::{Algorithm, Digest, Hasher};

/// Deepest directory nesting removed recursively (whiteouts, opaque dirs, replacements).
const MAX_DEPTH: usize = 512;

/// What whiteouts become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// Whiteouts take effect: `.wh.<name>` deletes `<name>`, `.wh..wh..opq` removes what
    /// lower layers put in the directory. For applying layers one after another into one
    /// directory (export to a rootfs, `ADD` of a tarball).
    #[default]
    Plain,
    /// overlayfs snapshot format: `.wh.<name>` becomes a 0/0 character device and
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on the directory, so the directory can
    /// be used as an overlay lowerdir above the previous layers' snapshots.
    Overlay,
    /// A plain archive, not a layer: `.wh.*` names are ordinary files, as docker's `ADD`
    /// of a local tarball extracts them. Containment rules are the same.
    Extract,
}

/// How to apply a layer.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Plain or overlay snapshot.
    pub mode: ApplyMode,
    /// Set owners from the tar's uid/gid. `None`: only when running as root (euid 0).
    pub same_owner: Option<bool>,
}

/// What was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Digest of the stream as given (the compressed blob).
    pub digest: Digest,
    /// Digest of the uncompressed tar: the layer's diffID.
    pub diff_id: Digest,
    /// The compression detected from the magic bytes.
    pub compression: Compression,
    /// Number of tar entries processed.
    pub entries: u64,
    /// Extended attributes the filesystem or our privileges refused (ENOTSUP / EPERM), as
    /// (entry, attribute). docker skips these the same way.
    pub skipped_xattrs: Vec<(String, String)>,
}

/// Why an entry name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeReason {
    /// Starts with `/`.
    Absolute,
    /// Has a `..` component.
    ParentDir,
    /// A whiteout naming `.`, `..` or nothing.
    BadWhiteout,
}

impl std::fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnsafeReason::Absolute => "absolute path",
            UnsafeReason::ParentDir => "path has a '..' component",
            UnsafeReason::BadWhiteout => "whiteout names no file",
        })
    }
}

/// Why applying a layer failed. Entry names are as written in the tar.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The target directory could not be opened.
    #[error("opening layer target {path}: {source}")]
    Target {
        /// The target.
        path: PathBuf,
        /// The OS error.
        source: Errno,
    },
    /// bzip2 or xz: recognised but not supported for layers.
    #[error("unsupported layer compression {0}")]
    UnsupportedCompression(&'static str),
    /// Reading, decompressing or parsing the stream failed (truncated gzip, bad checksum…).
    #[error("reading layer stream{}: {source}", after.as_ref().map(|e| format!(" after entry {e:?}")).unwrap_or_default())]
    Stream {
        /// The last entry read before the failure, if any.
        after: Option<String>,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry's data ended before its header's size.
    #[error("layer entry {entry:?} is truncated: header says {expected} bytes, stream has {got}")]
    Truncated {
        /// The entry.
        entry: String,
        /// Size from the header.
        expected: u64,
        /// Bytes actually there.
        got: u64,
    },
    /// An absolute or `..` name.
    #[error("layer entry {entry:?} refused: {reason}")]
    UnsafePath {
        /// The entry.
        entry: String,
        /// Why.
        reason: UnsafeReason,
    },
    /// A parent component is a symlink: following it could leave the target.
    #[error("layer entry {entry:?} refused: parent {component:?} is a symbolic link")]
    SymlinkInPath {
        /// The entry.
        entry: String,
        /// The parent path (inside the target) that is a symlink.
        component: String,
    },
    /// A parent component exists but is not a directory.
    #[error("layer entry {entry:?}: parent {component:?} is not a directory")]
    NotADirectory {
        /// The entry.
        entry: String,
        /// The parent path that is not a directory.
        component: String,
    },
    /// A hardlink whose target is outside the layer root, through a symlink, missing or a
    /// directory.
    #[error("layer entry {entry:?}: hardlink target {target:?} refused: {reason}")]
    HardlinkTarget {
        /// The entry.
        entry: String,
        /// The link target as written.
        target: String,
        /// Why.
        reason: String,
    },
    /// Creating a device node needs CAP_MKNOD.
    #[error("layer entry {entry:?} is a device node, which needs root (CAP_MKNOD) to create")]
    DeviceNotPermitted {
        /// The entry.
        entry: String,
    },
    /// An entry type a layer cannot hold.
    #[error("layer entry {entry:?} has unsupported tar type {kind:?}")]
    UnsupportedType {
        /// The entry.
        entry: String,
        /// The type byte.
        kind: char,
    },
    /// Removing a directory tree nested deeper than we recurse.
    #[error("layer entry {entry:?}: {path:?} is nested too deeply to remove")]
    TooDeep {
        /// The entry.
        entry: String,
        /// The directory.
        path: String,
    },
    /// A filesystem operation on the target failed.
    #[error("layer entry {entry:?}: {op} {path}: {source}")]
    Fs {
        /// The entry.
        entry: String,
        /// What we were doing (`create`, `chown`, …).
        op: &'static str,
        /// The path inside the target.
        path: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The parsed, checked components of an entry name.
fn components<'a>(entry: &str, name: &'a [u8]) -> Result<Vec<&'a [u8]>, ApplyError> {
    if name.starts_with(b"/") {
        return Err(ApplyError::UnsafePath {
            entry: entry.to_string(),
            reason: UnsafeReason::Absolute,
        });
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(ApplyError::UnsafePath {
                    entry: entry.to_string(),
                    reason: UnsafeReason::ParentDir,
                })
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// What [`unpack_rootfs`] unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The compression detected from the magic bytes.
    pub compression: Compression,
    /// Number of tar entries processed.
    pub entries: u64,
    /// Extended attributes refused, as in [`Applied::skipped_xattrs`].
    pub skipped_xattrs: Vec<(String, String)>,
}

/// Applies the layer read from `r` to the directory `target`.
pub fn apply_layer<R: Read>(
    r: R,
    target: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, ApplyError> {
    let (unpacked, digests) = apply(r, target, opts, true)?;
    let (digest, diff_id) = digests.ok_or_else(|| ApplyError::Stream {
        after: None,
        source: io::Error::other("the layer was not hashed"),
    })?;
    Ok(Applied {
        digest,
        diff_id,
        compression: unpacked.compression,
        entries: unpacked.entries,
        skipped_xattrs: unpacked.skipped_xattrs,
    })
}

/// [`apply_layer`] for a tarball whose digests nobody needs (`forge import` writes a
/// canonical layer from the tree afterwards): the same checks and the same tree, without
/// hashing every byte of the stream twice.
pub fn unpack_rootfs<R: Read>(
    r: R,
    target: &Path,
    opts: &ApplyOptions,
) -> Result<Unpacked, ApplyError> {
    apply(r, target, opts, false).map(|(unpacked, _)| unpacked)
}

/// Applies, returning the blob digest and the diffID when `hashed`.
fn apply<R: Read>(
    r: R,
    target: &Path,
    opts: &ApplyOptions,
    hashed: bool,
) -> Result<(Unpacked, Option<(Digest, Digest)>), ApplyError> {
    let root = openat(
        AT_FDCWD,
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ApplyError::Target {
        path: target.to_path_buf(),
        source,
    })?;
    let stream_err = |after: Option<String>| move |source| ApplyError::Stream { after, source };

    let (prefix, chained) = peek(r, SNIFF_LEN).map_err(stream_err(None))?;
    let compression = match sniff(&prefix) {
        Sniffed::Known(c) => c,
        Sniffed::Bzip2 => return Err(ApplyError::UnsupportedCompression("bzip2")),
        Sniffed::Xz => return Err(ApplyError::UnsupportedCompression("xz")),
    };
    // A plain tar's stream digest is its diffID: hashing it twice would be wasted work.
    let outer = StreamHash {
        inner: chained,
        hasher: (hashed && compression != Compression::None)
            .then(|| Hasher::new(Algorithm::Sha256)),
    };
    let decoder = Decoder::new(outer, compression).map_err(stream_err(None))?;
    let mut archive = tar::Archive::new(StreamHash {
        inner: decoder,
        hasher: hashed.then(|| Hasher::new(Algorithm::Sha256)),
    });
    let same_owner = opts
        .same_owner
        .unwrap_or_else(|| nix::unistd::geteuid().is_root());
    let mut ap = Applier {
        root: root.as_fd(),
        mode: opts.mode,
        same_owner,
        written: HashSet::new(),
        dirs: Vec::new(),
        cache: None,
        skipped_xattrs: Vec::new(),
        buf: vec![0u8; 128 * 1024],
    };
    let mut entries: u64 = 0;
    let mut last: Option<String> = None;
    {
        let iter = archive.entries().map_err(stream_err(None))?;
        for entry in iter {
            let mut entry = entry.map_err(stream_err(last.clone()))?;
            let name = lossy(&entry.path_bytes());
            ap.entry(&mut entry, &name)?;
            last = Some(name);
            entries += 1;
        }
    }
    ap.finish_dirs()?;
    let skipped_xattrs = std::mem::take(&mut ap.skipped_xattrs);

    // Read past the end-of-archive blocks to the end of the stream, so the diffID covers
    // the whole tar and the compressor's trailer (gzip CRC) is checked.
    let mut inner = archive.into_inner();
    io::copy(&mut inner, &mut io::sink()).map_err(stream_err(last.clone()))?;
    let StreamHash {
        inner: decoder,
        hasher: tar_hasher,
    } = inner;
    let diff_id = tar_hasher.map(Hasher::finish);
    let mut outer = match decoder {
        Decoder::Plain(c) => c,
        Decoder::Gzip(g) => g.into_inner(),
        Decoder::Zstd(z) => z.finish().into_inner(),
    };
    io::copy(&mut outer, &mut io::sink()).map_err(stream_err(last))?;
    let digests = diff_id.map(|diff_id| {
        let digest = match outer.hasher {
            Some(h) => h.finish(),
            None => diff_id.clone(),
        };
        (digest, diff_id)
    });
    let unpacked = Unpacked {
        compression,
        entries,
        skipped_xattrs,
    };
    Ok((unpacked, digests))
}

/// The compressed stream under the decoder, hashed for the blob digest unless that is the
/// diffID anyway (a plain tar).
struct StreamHash<R> {
    inner: R,
    hasher: Option<Hasher>,
}

impl<R: Read> Read for StreamHash<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Metadata from one entry's header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier<'r> {
    root: BorrowedFd<'r>,
    mode: ApplyMode,
    same_owner: bool,
    /// Paths written by this layer (plain mode): an opaque marker keeps these.
    written: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set at the end.
    dirs: Vec<(Vec<u8>, u32, TimeSpec)>,
    /// The last parent directory walked to, since sorted entries share parents.
    cache: Option<(Vec<u8>, OwnedFd)>,
    skipped_xattrs: Vec<(String, String)>,
    /// Copy buffer, reused for every file.
    buf: Vec<u8>,
}

/// The result of opening one path component without following symlinks.
enum Step {
    Dir(OwnedFd),
    Missing,
}

impl<'r> Applier<'r> {
    fn fs_err(entry: &str, op: &'static str, path: &[u8], e: impl Into<io::Error>) -> ApplyError {
        ApplyError::Fs {
            entry: entry.to_string(),
            op,
            path: lossy(path),
            source: e.into(),
        }
    }

    /// Opens `name` in `dir` as a directory, never following a symlink.
    fn step(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Step, Errno> {
        match openat(
            dir,
            os(name),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Step::Dir(fd)),
            Err(Errno::ENOENT) => Ok(Step::Missing),
            Err(e) => Err(e),
        }
    }

    /// Classifies a failed step: symlink, or something else that is not a directory.
    fn step_error(
        &self,
        entry: &str,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        e: Errno,
    ) -> ApplyError {
        if matches!(e, Errno::ELOOP | Errno::ENOTDIR) {
            if let Ok(st) = fstatat(dir, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK {
                    return ApplyError::SymlinkInPath {
                        entry: entry.to_string(),
                        component: lossy(path),
                    };
                }
                return ApplyError::NotADirectory {
                    entry: entry.to_string(),
                    component: lossy(path),
                };
            }
        }
        Self::fs_err(entry, "open", path, e)
    }

    /// Walks to the directory `comps` inside the root without following symlinks. Missing
    /// directories are created (0755, like docker) when `create`; otherwise `Ok(None)`.
    fn walk(
        &mut self,
        entry: &str,
        comps: &[&[u8]],
        create: bool,
    ) -> Result<Option<OwnedFd>, ApplyError> {
        let key = join(comps);
        if let Some((k, fd)) = &self.cache {
            if *k == key {
                return fd
                    .try_clone()
                    .map(Some)
                    .map_err(|e| Self::fs_err(entry, "dup", &key, e));
            }
        }
        let mut cur: OwnedFd = self
            .root
            .try_clone_to_owned()
            .map_err(|e| Self::fs_err(entry, "dup", b".", e))?;
        for (i, c) in comps.iter().enumerate() {
            let path = join(&comps[..=i]);
            match Self::step(cur.as_fd(), c) {
                Ok(Step::Dir(fd)) => cur = fd,
                Ok(Step::Missing) if create => {
                    mkdirat(cur.as_fd(), os(c), Mode::from_bits_truncate(0o755))
                        .map_err(|e| Self::fs_err(entry, "mkdir", &path, e))?;
                    self.written.insert(path.clone());
                    cur = match Self::step(cur.as_fd(), c) {
                        Ok(Step::Dir(fd)) => fd,
                        Ok(Step::Missing) => {
                            return Err(Self::fs_err(entry, "open", &path, Errno::ENOENT))
                        }
                        Err(e) => return Err(self.step_error(entry, cur.as_fd(), c, &path, e)),
                    };
                }
                Ok(Step::Missing) => return Ok(None),
                Err(e) => return Err(self.step_error(entry, cur.as_fd(), c, &path, e)),
            }
        }
        if let Ok(dup) = cur.try_clone() {
            self.cache = Some((key, dup));
        }
        Ok(Some(cur))
    }

    /// Forgets the cached parent if `path` is it or one of its ancestors (it is about to be
    /// replaced or removed).
    fn invalidate(&mut self, path: &[u8]) {
        if let Some((k, _)) = &self.cache {
            if k.as_slice() == path
                || (k.starts_with(path) && k.get(path.len()) == Some(&b'/'))
                || path.is_empty()
            {
                self.cache = None;
            }
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), ApplyError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_name = entry.path_bytes().into_owned();
        let comps = components(name, &raw_name)?;
        let Some((base, parents)) = comps.split_last() else {
            // The root itself ("./"): its metadata belongs to whoever owns the target.
            return Ok(());
        };
        let base: &[u8] = base;
        let full = join(&comps);

        // Whiteouts.
        let whiteout = match self.mode {
            ApplyMode::Extract => None,
            ApplyMode::Plain | ApplyMode::Overlay => base.strip_prefix(WHITEOUT_PREFIX.as_bytes()),
        };
        if let Some(rest) = whiteout {
            let pfd = self
                .walk(name, parents, true)?
                .ok_or_else(|| Self::fs_err(name, "open", &join(parents), Errno::ENOENT))?;
            let parent_path = join(parents);
            if base == WHITEOUT_OPAQUE.as_bytes() {
                return self.opaque(name, pfd, &parent_path);
            }
            if base.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
                // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): never content.
                return Ok(());
            }
            if rest.is_empty() || rest == b"." || rest == b".." || rest.contains(&b'/') {
                return Err(ApplyError::UnsafePath {
                    entry: name.to_string(),
                    reason: UnsafeReason::BadWhiteout,
                });
            }
            let mut victim = parent_path.clone();
            if !victim.is_empty() {
                victim.push(b'/');
            }
            victim.extend_from_slice(rest);
            self.invalidate(&victim);
            self.remove_all(name, pfd.as_fd(), rest, &victim)?;
            if self.mode == ApplyMode::Overlay {
                self.mknod(name, pfd.as_fd(), rest, &victim, SFlag::S_IFCHR, 0, 0)?;
                let meta = self.meta(entry)?;
                self.chown(name, pfd.as_fd(), rest, &victim, &meta)?;
            }
            return Ok(());
        }

        let meta = self.meta(entry)?;
        let pfd = self
            .walk(name, parents, true)?
            .ok_or_else(|| Self::fs_err(name, "open", &join(parents), Errno::ENOENT))?;
        let pfd = pfd.as_fd();
        self.written.insert(full.clone());

        match kind {
            EntryType::Directory => {
                self.invalidate_if_not_dir(name, pfd, base, &full)?;
                match mkdirat(pfd, os(base), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Self::fs_err(name, "mkdir", &full, e)),
                }
                self.chown(name, pfd, base, &full, &meta)?;
                let dfd = match Self::step(pfd, base) {
                    Ok(Step::Dir(fd)) => fd,
                    Ok(Step::Missing) => {
                        return Err(Self::fs_err(name, "open", &full, Errno::ENOENT))
                    }
                    Err(e) => return Err(self.step_error(name, pfd, base, &full, e)),
                };
                self.xattrs_fd(name, &File::from(dfd), &meta)?;
                self.dirs.push((full, meta.mode, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.remove_all(name, pfd, base, &full)?;
                let fd = openat(
                    pfd,
                    os(base),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| Self::fs_err(name, "create", &full, e))?;
                let mut file = File::from(fd);
                copy_data(entry, &mut file, name, &full, &mut self.buf)?;
                self.chown(name, pfd, base, &full, &meta)?;
                // chmod after chown: chown clears setuid/setgid.
                fchmod(file.as_fd(), Mode::from_bits_truncate(meta.mode & 0o7777))
                    .map_err(|e| Self::fs_err(name, "chmod", &full, e))?;
                // xattrs after chown too: chown drops security.capability.
                self.xattrs_fd(name, &file, &meta)?;
                futimens(file.as_fd(), &meta.mtime, &meta.mtime)
                    .map_err(|e| Self::fs_err(name, "utimes", &full, e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.remove_all(name, pfd, base, &full)?;
                // The target is stored, never followed by us: later entries never traverse
                // symlinks, so it may point anywhere.
                symlinkat(os(&target), pfd, os(base))
                    .map_err(|e| Self::fs_err(name, "symlink", &full, e))?;
                self.chown(name, pfd, base, &full, &meta)?;
                self.xattrs_path(name, pfd, base, &full, &meta)?;
                utimensat(
                    pfd,
                    os(base),
                    &meta.mtime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| Self::fs_err(name, "utimes", &full, e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                self.hardlink(name, pfd, base, &full, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Char | EntryType::Block => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        let f = if kind == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (f, makedev(major.into(), minor.into()))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.remove_all(name, pfd, base, &full)?;
                self.mknod(name, pfd, base, &full, sflag, meta.mode & 0o7777, dev)?;
                self.chown(name, pfd, base, &full, &meta)?;
                fchmodat(
                    pfd,
                    os(base),
                    Mode::from_bits_truncate(meta.mode & 0o7777),
                    FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| Self::fs_err(name, "chmod", &full, e))?;
                self.xattrs_path(name, pfd, base, &full, &meta)?;
                utimensat(
                    pfd,
                    os(base),
                    &meta.mtime,
                    &meta.mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| Self::fs_err(name, "utimes", &full, e))?;
            }
            other => {
                return Err(ApplyError::UnsupportedType {
                    entry: name.to_string(),
                    kind: char::from(other.as_byte()),
                })
            }
        }
        Ok(())
    }

    /// A directory entry over something that is not a directory replaces it.
    fn invalidate_if_not_dir(
        &mut self,
        entry: &str,
        pfd: BorrowedFd<'_>,
        base: &[u8],
        full: &[u8],
    ) -> Result<(), ApplyError> {
        match fstatat(pfd, os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if (SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT) == SFlag::S_IFDIR => {
                Ok(())
            }
            Ok(_) => {
                self.invalidate(full);
                unlinkat(pfd, os(base), UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| Self::fs_err(entry, "unlink", full, e))
            }
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Self::fs_err(entry, "stat", full, e)),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, ApplyError> {
        let h = entry.header();
        let name = lossy(&entry.path_bytes());
        let bad = |e: io::Error| ApplyError::Stream {
            after: Some(name.clone()),
            source: e,
        };
        let old = h.as_old();
        let mode = lenient(&old.mode, h.mode().map(u64::from)).map_err(bad)?;
        let mode = u32::try_from(mode).unwrap_or(0);
        let uid = lenient(&old.uid, h.uid()).map_err(bad)?;
        let gid = lenient(&old.gid, h.gid()).map_err(bad)?;
        let mtime = lenient(&old.mtime, h.mtime()).map_err(bad)?;
        let mut mtime = TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(bad)? {
            for rec in pax {
                let rec = rec.map_err(bad)?;
                let key = rec.key_bytes();
                if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
                    // overlayfs bookkeeping from a tar would let a layer hide or redirect
                    // lower-layer files in ways the whiteout rules do not describe.
                    if !is_overlay_xattr(xname) {
                        xattrs.push((xname.to_vec(), rec.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    if let Some(t) = rec.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn chown(
        &self,
        entry: &str,
        pfd: BorrowedFd<'_>,
        base: &[u8],
        full: &[u8],
        m: &Meta,
    ) -> Result<(), ApplyError> {
        if !self.same_owner {
            return Ok(());
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(m.uid), u32::try_from(m.gid)) else {
            return Err(Self::fs_err(entry, "chown", full, Errno::EINVAL));
        };
        fchownat(
            pfd,
            os(base),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Self::fs_err(entry, "chown", full, e))
    }

    fn xattr_result(
        &mut self,
        entry: &str,
        full: &[u8],
        xname: &[u8],
        r: io::Result<()>,
    ) -> Result<(), ApplyError> {
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOTSUP) | Some(nix::libc::EPERM)
                ) =>
            {
                self.skipped_xattrs.push((entry.to_string(), lossy(xname)));
                Ok(())
            }
            Err(e) => Err(Self::fs_err(entry, "setxattr", full, e)),
        }
    }

    fn xattrs_fd(&mut self, entry: &str, file: &File, m: &Meta) -> Result<(), ApplyError> {
        use xattr::FileExt;
        for (k, v) in &m.xattrs {
            let r = file.set_xattr(os(k), v);
            self.xattr_result(entry, b"", k, r)?;
        }
        Ok(())
    }

    /// xattrs on a symlink, device or fifo: `lsetxattr` through the parent's descriptor in
    /// /proc, which resolves the parent without a path walk and does not follow `base`.
    fn xattrs_path(
        &mut self,
        entry: &str,
        pfd: BorrowedFd<'_>,
        base: &[u8],
        full: &[u8],
        m: &Meta,
    ) -> Result<(), ApplyError> {
        if m.xattrs.is_empty() {
            return Ok(());
        }
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", pfd.as_raw_fd()));
        p.push(os(base));
        for (k, v) in &m.xattrs {
            let r = xattr::set(&p, os(k), v);
            self.xattr_result(entry, full, k, r)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn mknod(
        &self,
        entry: &str,
        pfd: BorrowedFd<'_>,
        base: &[u8],
        full: &[u8],
        kind: SFlag,
        perm: u32,
        dev: u64,
    ) -> Result<(), ApplyError> {
        match mknodat(pfd, os(base), kind, Mode::from_bits_truncate(perm), dev) {
            Ok(()) => Ok(()),
            Err(Errno::EPERM) if kind != SFlag::S_IFIFO => Err(ApplyError::DeviceNotPermitted {
                entry: entry.to_string(),
            }),
            Err(e) => Err(Self::fs_err(entry, "mknod", full, e)),
        }
    }

    fn hardlink(
        &mut self,
        entry: &str,
        pfd: BorrowedFd<'_>,
        base: &[u8],
        full: &[u8],
        target: &[u8],
    ) -> Result<(), ApplyError> {
        let refuse = |reason: String| ApplyError::HardlinkTarget {
            entry: entry.to_string(),
            target: lossy(target),
            reason,
        };
        let tcomps = components(entry, target).map_err(|e| match e {
            ApplyError::UnsafePath { reason, .. } => refuse(reason.to_string()),
            other => other,
        })?;
        let Some((tbase, tparents)) = tcomps.split_last() else {
            return Err(refuse("names the layer root".to_string()));
        };
        let tfull = join(&tcomps);
        if tfull == full {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let tpfd = match self.walk(entry, tparents, false) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Err(refuse("does not exist".to_string())),
            Err(ApplyError::SymlinkInPath { component, .. }) => {
                return Err(refuse(format!("parent {component:?} is a symbolic link")))
            }
            Err(e) => return Err(e),
        };
        match fstatat(tpfd.as_fd(), os(tbase), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if (SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT) == SFlag::S_IFDIR => {
                return Err(refuse("is a directory".to_string()))
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => return Err(refuse("does not exist".to_string())),
            Err(e) => return Err(Self::fs_err(entry, "stat", &tfull, e)),
        }
        self.remove_all(entry, pfd, base, full)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(tpfd.as_fd(), os(tbase), pfd, os(base), AtFlags::empty())
            .map_err(|e| Self::fs_err(entry, "link", full, e))
    }

    /// `.wh..wh..opq` in `parent`.
    fn opaque(&mut self, entry: &str, pfd: OwnedFd, parent: &[u8]) -> Result<(), ApplyError> {
        match self.mode {
            ApplyMode::Overlay => {
                use xattr::FileExt;
                let f = File::from(pfd);
                f.set_xattr(OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| Self::fs_err(entry, "setxattr", parent, e))
            }
            ApplyMode::Plain | ApplyMode::Extract => self.clear_lower(entry, pfd, parent),
        }
    }

    /// Removes everything under `dir` this layer did not write (what lower layers put
    /// there), keeping what it did, recursively (docker's opaque handling).
    fn clear_lower(&mut self, entry: &str, dir: OwnedFd, path: &[u8]) -> Result<(), ApplyError> {
        self.clear_lower_at(entry, dir, path, 0)
    }

    fn clear_lower_at(
        &mut self,
        entry: &str,
        dir: OwnedFd,
        path: &[u8],
        depth: usize,
    ) -> Result<(), ApplyError> {
        Self::check_depth(entry, path, depth)?;
        let names = list_dir(&dir).map_err(|e| Self::fs_err(entry, "readdir", path, e))?;
        for n in names {
            let mut child = path.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&n);
            if !self.written.contains(&child) {
                self.invalidate(&child);
                self.remove_all_at(entry, dir.as_fd(), &n, &child, depth + 1)?;
            } else if let Ok(Step::Dir(sub)) = Self::step(dir.as_fd(), &n) {
                self.clear_lower_at(entry, sub, &child, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Recursion below a directory holds one descriptor per level; bound it so a hostile
    /// tree gives an error instead of exhausting the stack.
    fn check_depth(entry: &str, path: &[u8], depth: usize) -> Result<(), ApplyError> {
        if depth > MAX_DEPTH {
            return Err(ApplyError::TooDeep {
                entry: entry.to_string(),
                path: lossy(path),
            });
        }
        Ok(())
    }

    /// Removes `name` in `dir` whatever it is (directories recursively, without following
    /// symlinks). Missing is fine.
    fn remove_all(
        &mut self,
        entry: &str,
        dir: BorrowedFd<'_>,
        name: &[u8],
        full: &[u8],
    ) -> Result<(), ApplyError> {
        self.remove_all_at(entry, dir, name, full, 0)
    }

    fn remove_all_at(
        &mut self,
        entry: &str,
        dir: BorrowedFd<'_>,
        name: &[u8],
        full: &[u8],
        depth: usize,
    ) -> Result<(), ApplyError> {
        match unlinkat(dir, os(name), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
            Err(e) => return Err(Self::fs_err(entry, "unlink", full, e)),
        }
        // A directory (Linux reports EISDIR; POSIX allows EPERM).
        Self::check_depth(entry, full, depth)?;
        self.invalidate(full);
        let sub = match Self::step(dir, name) {
            Ok(Step::Dir(fd)) => fd,
            Ok(Step::Missing) => return Ok(()),
            Err(e) => return Err(Self::fs_err(entry, "open", full, e)),
        };
        let names = list_dir(&sub).map_err(|e| Self::fs_err(entry, "readdir", full, e))?;
        for n in names {
            let mut child = full.to_vec();
            child.push(b'/');
            child.extend_from_slice(&n);
            self.remove_all_at(entry, sub.as_fd(), &n, &child, depth + 1)?;
        }
        match unlinkat(dir, os(name), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Self::fs_err(entry, "rmdir", full, e)),
        }
    }

    /// Sets directories' modes and mtimes now that their contents are written. Deepest
    /// first is not needed (utimes on a dir does not touch its parent); a directory removed
    /// or replaced by a later entry is skipped.
    fn finish_dirs(&mut self) -> Result<(), ApplyError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, mode, mtime) in dirs {
            let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let entry = lossy(&path);
            let fd = match self.walk(&entry, &comps, false) {
                Ok(Some(fd)) => fd,
                Ok(None)
                | Err(ApplyError::SymlinkInPath { .. })
                | Err(ApplyError::NotADirectory { .. }) => continue,
                Err(e) => return Err(e),
            };
            fchmod(fd.as_fd(), Mode::from_bits_truncate(mode & 0o7777))
                .map_err(|e| Self::fs_err(&entry, "chmod", &path, e))?;
            futimens(fd.as_fd(), &mtime, &mtime)
                .map_err(|e| Self::fs_err(&entry, "utimes", &path, e))?;
        }
        Ok(())
    }
}

/// A numeric header field; an empty one (all NULs or spaces, as some writers leave uid,
/// gid or mtime) is 0, as Go's archive/tar reads it.
fn lenient(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

/// Names in a directory, except `.` and `..`.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = dir.try_clone()?;
    let d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Copies exactly the entry's size into `file`, telling a short stream (truncated layer)
/// apart from a failed write.
fn copy_data<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut File,
    name: &str,
    full: &[u8],
    buf: &mut [u8],
) -> Result<(), ApplyError> {
    let expected = entry.size();
    let mut got: u64 = 0;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ApplyError::Stream {
                    after: Some(name.to_string()),
                    source,
                })
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| Applier::fs_err(name, "write", full, e))?;
        got += n as u64;
    }
    if got != expected {
        return Err(ApplyError::Truncated {
            entry: name.to_string(),
            expected,
            got,
        });
    }
    Ok(())
}

/// A PAX time: decimal seconds with an optional fraction.
fn parse_pax_time(s: &str) -> Option<TimeSpec> {
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = i64::from(c.to_digit(10)?);
        nanos += d * 10_i64.pow(8 - i as u32);
    }
    if secs < 0 && nanos > 0 {
        // "-1.5" means 1.5 s before the epoch.
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_rules() {
        assert_eq!(
            components("e", b"./a//b/./c/").expect("ok"),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(components("e", b"./").expect("root").is_empty());
        assert!(matches!(
            components("e", b"/etc/x"),
            Err(ApplyError::UnsafePath {
                reason: UnsafeReason::Absolute,
                ..
            })
        ));
        assert!(matches!(
            components("e", b"a/../../x"),
            Err(ApplyError::UnsafePath {
                reason: UnsafeReason::ParentDir,
                ..
            })
        ));
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
