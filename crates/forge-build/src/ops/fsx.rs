//! Descriptor-based file system primitives.
//!
//! A path is a list of components below some root directory descriptor; it
//! is walked one component at a time with `O_NOFOLLOW`, so a symlink met on
//! the way is never followed by the kernel. Following a symlink is always
//! an explicit step ([`resolve`]) that interprets the link inside the same
//! root, the way containerd's `fs.RootPath` (which BuildKit uses) does. That
//! keeps every read inside the source root and every write inside the
//! directory we are asked to fill, whatever links the trees contain.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

/// Path components below a root: never empty strings, `.` or `..`.
pub(crate) type Comps = Vec<OsString>;

/// Most symlinks followed while resolving one path (containerd's limit).
const MAX_LINKS: usize = 255;

/// Splits a `/`-separated path into clean components: `.` and empty parts
/// dropped, `..` removing the previous component and never going above the
/// root (Go's `filepath.Clean` of the path joined to `/`).
pub(crate) fn split(path: &OsStr) -> Comps {
    let mut out: Comps = Vec::new();
    for part in path.as_bytes().split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(OsString::from_vec(p.to_vec())),
        }
    }
    out
}

/// `split` of a `&str`.
pub(crate) fn split_str(path: &str) -> Comps {
    split(OsStr::new(path))
}

/// `/a/b` for display in errors (`/` for the root).
pub(crate) fn show(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// `a/b` (relative, `/`-separated) as matchers want it.
pub(crate) fn rel(comps: &[OsString]) -> String {
    comps
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Opens a directory given as a host path (the roots we are handed).
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    openat(
        AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens `name` in `dir` as a directory without following a symlink.
/// `Ok(None)` when it does not exist; `ENOTDIR`/`ELOOP` when it is not a
/// directory (a symlink included).
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<OwnedFd>, Errno> {
    match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How far a walk got.
pub(crate) enum Walked {
    /// The directory at the path.
    Dir(OwnedFd),
    /// Some component does not exist.
    Absent,
    /// Some component exists but is not a directory (or is a symlink).
    Blocked,
}

/// Walks to the directory at `comps` below `root`, one component at a time,
/// never following symlinks.
pub(crate) fn walk_dir(root: BorrowedFd<'_>, comps: &[OsString]) -> io::Result<Walked> {
    let mut cur = root.try_clone_to_owned()?;
    for c in comps {
        match open_dir_at(cur.as_fd(), c) {
            Ok(Some(fd)) => cur = fd,
            Ok(None) => return Ok(Walked::Absent),
            Err(Errno::ENOTDIR | Errno::ELOOP) => return Ok(Walked::Blocked),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Walked::Dir(cur))
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The type bits of a stat.
pub(crate) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

pub(crate) fn is_dir(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFDIR
}

/// What a path names in one tree.
#[derive(Debug)]
pub(crate) enum Node {
    Missing,
    Dir(FileStat),
    Link(OsString),
    /// A regular file or a special file.
    Other(FileStat),
}

impl Node {
    pub(crate) fn exists(&self) -> bool {
        !matches!(self, Node::Missing)
    }
}

/// What a lookup found: a node, nothing, or a non-directory in the way
/// (which hides anything a lower layer has below it).
pub(crate) enum Found {
    Node(Node),
    Absent,
    Blocked,
}

/// Looks `comps` up below `root` without following any symlink.
pub(crate) fn node_at(root: BorrowedFd<'_>, comps: &[OsString]) -> io::Result<Found> {
    let Some((last, parents)) = comps.split_last() else {
        return Ok(Found::Node(Node::Dir(fstat(root)?)));
    };
    let parent = match walk_dir(root, parents)? {
        Walked::Dir(fd) => fd,
        Walked::Absent => return Ok(Found::Absent),
        Walked::Blocked => return Ok(Found::Blocked),
    };
    child_node(parent.as_fd(), last).map(|n| match n {
        Node::Missing => Found::Absent,
        n => Found::Node(n),
    })
}

/// What `name` in `dir` is, without following it.
pub(crate) fn child_node(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Node> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(Node::Missing);
    };
    Ok(match kind(&st) {
        SFlag::S_IFDIR => Node::Dir(st),
        SFlag::S_IFLNK => Node::Link(readlinkat(dir, name)?),
        _ => Node::Other(st),
    })
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    TooManyLinks,
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(e: io::Error) -> Self {
        ResolveError::Io(e)
    }
}

/// Resolves `comps` inside a root the way containerd's `fs.RootPath` does:
/// each symlink met is replaced by its target, an absolute target counting
/// from the root, a relative one from the link's directory, `..` never
/// leaving the root. The last component is followed only when
/// `follow_last`. A missing component ends the resolution (the rest is
/// taken as written). `lookup` tells what a symlink-free path names.
pub(crate) fn resolve(
    comps: Comps,
    follow_last: bool,
    lookup: &mut dyn FnMut(&[OsString]) -> io::Result<Node>,
) -> Result<Comps, ResolveError> {
    let mut comps = comps;
    let mut links = 0usize;
    'restart: loop {
        let mut out: Comps = Vec::with_capacity(comps.len());
        for i in 0..comps.len() {
            let last = i + 1 == comps.len();
            out.push(comps[i].clone());
            if last && !follow_last {
                return Ok(out);
            }
            match lookup(&out)? {
                Node::Link(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(ResolveError::TooManyLinks);
                    }
                    out.pop();
                    let mut joined: Vec<u8> = Vec::new();
                    if !target.as_bytes().starts_with(b"/") {
                        for c in &out {
                            joined.push(b'/');
                            joined.extend_from_slice(c.as_bytes());
                        }
                    }
                    joined.push(b'/');
                    joined.extend_from_slice(target.as_bytes());
                    for c in &comps[i + 1..] {
                        joined.push(b'/');
                        joined.extend_from_slice(c.as_bytes());
                    }
                    comps = split(OsStr::from_bytes(&joined));
                    continue 'restart;
                }
                Node::Missing => {
                    out.extend(comps[i + 1..].iter().cloned());
                    return Ok(out);
                }
                Node::Dir(_) | Node::Other(_) => {}
            }
        }
        return Ok(out);
    }
}

/// Converts a raw descriptor result of libc into io::Result.
fn cvt(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        // Non-negative ssize_t fits usize.
        Ok(r.unsigned_abs())
    }
}

/// Extended attributes of an open file or directory, as (name, value).
/// overlayfs' own attributes are left out; errors give an empty list (a
/// file system without xattrs).
pub(crate) fn xattrs(fd: BorrowedFd<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let raw = fd.as_raw_fd();
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: the buffer is valid for its length.
        let r = unsafe { libc::flistxattr(raw, names.as_mut_ptr().cast(), names.len()) };
        match cvt(r) {
            Ok(n) => break n,
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0);
            }
            Err(_) => return Vec::new(),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: name is NUL-terminated, the buffer valid for its length.
            let r = unsafe {
                libc::fgetxattr(raw, cname.as_ptr(), value.as_mut_ptr().cast(), value.len())
            };
            match cvt(r) {
                Ok(n) => {
                    value.truncate(n);
                    out.push((name.to_vec(), value));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) && value.len() < (1 << 20) => {
                    let l = value.len();
                    value.resize(l * 4, 0);
                }
                Err(_) => break,
            }
        }
    }
    out
}

/// Sets extended attributes on an open file; failures (a file system or
/// privilege that refuses one) are skipped, as BuildKit's copy does.
pub(crate) fn set_xattrs(fd: BorrowedFd<'_>, attrs: &[(Vec<u8>, Vec<u8>)]) {
    for (name, value) in attrs {
        let Ok(cname) = std::ffi::CString::new(name.as_slice()) else {
            continue;
        };
        // SAFETY: name is NUL-terminated, value valid for its length.
        let _ = unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
    }
}

/// Opens a regular file `name` in `dir` for reading without following a
/// symlink (and without blocking, should it have become a FIFO).
pub(crate) fn open_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<std::fs::File> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(fd.as_fd())?;
    if kind(&st) != SFlag::S_IFREG {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cleans_like_go() {
        let s = |p: &str| rel(&split_str(p));
        assert_eq!(s("/a/./b//c/"), "a/b/c");
        assert_eq!(s("../../etc/passwd"), "etc/passwd");
        assert_eq!(s("a/../../b"), "b");
        assert_eq!(s("/"), "");
        assert_eq!(show(&split_str("/")), "/");
        assert_eq!(show(&split_str("x/y")), "/x/y");
    }
}
