//! The destination of a copy: a read-only view of the current root
//! filesystem (the lower layers, merged) and an empty directory that
//! receives the new files (the upper layer of the step).
//!
//! Paths are looked up in the merged view the way overlayfs shows it: an
//! entry in the upper directory wins, a non-directory there hides whatever
//! the view has below it. Writing a file into a directory that exists only
//! in the view first recreates that directory (and its ancestors) in the
//! upper directory with the view's mode, owner, extended attributes and
//! times, so merging the layer changes nothing but what was copied.
//! Every write happens through descriptors of the upper directory, one
//! component at a time without following symlinks: nothing is ever created
//! outside it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmodat, fstat, mkdirat, utimensat, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::fsx::{
    self, child_node, is_dir, node_at, open_dir_at, walk_dir, Comps, Found, Node, ResolveError,
    Walked,
};

/// Deepest directory nesting removed recursively.
const MAX_REMOVE_DEPTH: usize = 1024;

/// An open directory of the merged view: its upper half (always present)
/// and, when the view has it too, its lower half.
pub(crate) struct DirHandle {
    pub(crate) upper: OwnedFd,
    pub(crate) lower: Option<OwnedFd>,
}

/// Why an operation on the destination failed.
#[derive(Debug)]
pub(crate) enum DestError {
    /// A path that must be a directory is something else.
    NotADirectory(String),
    /// A directory is where a file should go.
    IsADirectory(String),
    TooManyLinks(String),
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
}

pub(crate) fn io_err<'c>(
    op: &'static str,
    comps: &'c [OsString],
) -> impl FnOnce(Errno) -> DestError + 'c {
    move |e| DestError::Io {
        op,
        path: fsx::show(comps),
        source: e.into(),
    }
}

pub(crate) struct Dest {
    upper: OwnedFd,
    lower: Option<OwnedFd>,
    /// Directories recreated from the view, with their times, restored
    /// last (creating children changes a directory's mtime).
    replicated: Vec<(Comps, TimeSpec, TimeSpec)>,
}

fn atime(st: &nix::sys::stat::FileStat) -> TimeSpec {
    TimeSpec::new(st.st_atime, st.st_atime_nsec)
}

fn mtime(st: &nix::sys::stat::FileStat) -> TimeSpec {
    TimeSpec::new(st.st_mtime, st.st_mtime_nsec)
}

impl Dest {
    pub(crate) fn open(upper: &Path, lower: Option<&Path>) -> io::Result<Dest> {
        Ok(Dest {
            upper: fsx::open_root(upper)?,
            lower: lower.map(fsx::open_root).transpose()?,
            replicated: Vec::new(),
        })
    }

    pub(crate) fn upper(&self) -> BorrowedFd<'_> {
        self.upper.as_fd()
    }

    /// The view's root, for reading its /etc files.
    pub(crate) fn lower(&self) -> Option<BorrowedFd<'_>> {
        self.lower.as_ref().map(|l| l.as_fd())
    }

    /// What a symlink-free path names in the merged view.
    pub(crate) fn lookup(&self, comps: &[OsString]) -> io::Result<Node> {
        match node_at(self.upper.as_fd(), comps)? {
            Found::Node(n) => return Ok(n),
            Found::Blocked => return Ok(Node::Missing),
            Found::Absent => {}
        }
        let Some(lower) = &self.lower else {
            return Ok(Node::Missing);
        };
        Ok(match node_at(lower.as_fd(), comps)? {
            Found::Node(n) => n,
            Found::Absent | Found::Blocked => Node::Missing,
        })
    }

    /// Resolves an absolute destination path in the merged view, following
    /// symlinks inside it (BuildKit resolves its destination with
    /// `fs.RootPath` on the mounted snapshot).
    pub(crate) fn resolve(&self, comps: Comps, follow_last: bool) -> Result<Comps, DestError> {
        let shown = fsx::show(&comps);
        fsx::resolve(comps, follow_last, &mut |c| self.lookup(c)).map_err(|e| match e {
            ResolveError::TooManyLinks => DestError::TooManyLinks(shown.clone()),
            ResolveError::Io(source) => DestError::Io {
                op: "resolve",
                path: shown.clone(),
                source,
            },
        })
    }

    /// Opens the directory at `comps` (symlink-free in the merged view),
    /// creating what is missing: directories the view has are recreated
    /// with their metadata, others are made 0755 and owned by `owner`
    /// (BuildKit's `MkdirAll` with the `--chown` user).
    pub(crate) fn mkdir_p(
        &mut self,
        comps: &[OsString],
        owner: (u32, u32),
    ) -> Result<DirHandle, DestError> {
        let mut upper = self.upper.try_clone().map_err(|e| DestError::Io {
            op: "dup",
            path: "/".into(),
            source: e,
        })?;
        let mut lower = match &self.lower {
            Some(l) => Some(l.try_clone().map_err(|e| DestError::Io {
                op: "dup",
                path: "/".into(),
                source: e,
            })?),
            None => None,
        };
        for (i, c) in comps.iter().enumerate() {
            let here = &comps[..=i];
            let lower_child = match &lower {
                Some(l) => match open_dir_at(l.as_fd(), c) {
                    Ok(fd) => fd,
                    Err(Errno::ENOTDIR | Errno::ELOOP) => None,
                    Err(e) => return Err(io_err("open", here)(e)),
                },
                None => None,
            };
            let next = match open_dir_at(upper.as_fd(), c) {
                Ok(Some(fd)) => fd,
                Ok(None) => {
                    // Not in the upper dir: a directory of the view, or new.
                    let in_lower = match &lower {
                        Some(l) => child_node(l.as_fd(), c).map_err(|e| DestError::Io {
                            op: "stat",
                            path: fsx::show(here),
                            source: e,
                        })?,
                        None => Node::Missing,
                    };
                    match in_lower {
                        Node::Dir(st) => {
                            mkdirat(
                                upper.as_fd(),
                                c.as_os_str(),
                                Mode::from_bits_truncate(0o700),
                            )
                            .map_err(io_err("mkdir", here))?;
                            let fd = open_dir_at(upper.as_fd(), c)
                                .map_err(io_err("open", here))?
                                .ok_or_else(|| io_err("open", here)(Errno::ENOENT))?;
                            fchownat(
                                upper.as_fd(),
                                c.as_os_str(),
                                Some(Uid::from_raw(st.st_uid)),
                                Some(Gid::from_raw(st.st_gid)),
                                AtFlags::AT_SYMLINK_NOFOLLOW,
                            )
                            .map_err(io_err("chown", here))?;
                            fchmodat(
                                upper.as_fd(),
                                c.as_os_str(),
                                Mode::from_bits_truncate(st.st_mode & 0o7777),
                                FchmodatFlags::FollowSymlink,
                            )
                            .map_err(io_err("chmod", here))?;
                            if let Some(ld) = &lower_child {
                                fsx::set_xattrs(fd.as_fd(), &fsx::xattrs(ld.as_fd()));
                            }
                            self.replicated
                                .push((here.to_vec(), atime(&st), mtime(&st)));
                            fd
                        }
                        Node::Missing => {
                            mkdirat(
                                upper.as_fd(),
                                c.as_os_str(),
                                Mode::from_bits_truncate(0o755),
                            )
                            .map_err(io_err("mkdir", here))?;
                            fchownat(
                                upper.as_fd(),
                                c.as_os_str(),
                                Some(Uid::from_raw(owner.0)),
                                Some(Gid::from_raw(owner.1)),
                                AtFlags::AT_SYMLINK_NOFOLLOW,
                            )
                            .map_err(io_err("chown", here))?;
                            // Not subject to the umask.
                            fchmodat(
                                upper.as_fd(),
                                c.as_os_str(),
                                Mode::from_bits_truncate(0o755),
                                FchmodatFlags::FollowSymlink,
                            )
                            .map_err(io_err("chmod", here))?;
                            open_dir_at(upper.as_fd(), c)
                                .map_err(io_err("open", here))?
                                .ok_or_else(|| io_err("open", here)(Errno::ENOENT))?
                        }
                        Node::Link(_) | Node::Other(_) => {
                            return Err(DestError::NotADirectory(fsx::show(here)))
                        }
                    }
                }
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    return Err(DestError::NotADirectory(fsx::show(here)))
                }
                Err(e) => return Err(io_err("open", here)(e)),
            };
            upper = next;
            lower = lower_child;
        }
        Ok(DirHandle { upper, lower })
    }

    /// Opens the directory at `comps` if the merged view has one there
    /// (creating nothing): `None` when it has none.
    pub(crate) fn open_dir(&self, comps: &[OsString]) -> Result<Option<DirHandle>, DestError> {
        let upper = match walk_dir(self.upper.as_fd(), comps).map_err(|e| DestError::Io {
            op: "open",
            path: fsx::show(comps),
            source: e,
        })? {
            Walked::Dir(fd) => Some(fd),
            Walked::Absent => None,
            Walked::Blocked => return Ok(None),
        };
        let lower = match &self.lower {
            Some(l) => match walk_dir(l.as_fd(), comps).map_err(|e| DestError::Io {
                op: "open",
                path: fsx::show(comps),
                source: e,
            })? {
                Walked::Dir(fd) => Some(fd),
                _ => None,
            },
            None => None,
        };
        match upper {
            Some(upper) => Ok(Some(DirHandle { upper, lower })),
            None => Ok(None),
        }
    }

    /// Forgets a recreated directory whose metadata a later step set
    /// explicitly (a copied source directory, an archive's entry).
    pub(crate) fn forget(&mut self, comps: &[OsString]) {
        self.replicated.retain(|(c, _, _)| c.as_slice() != comps);
    }

    /// Restores the times of directories recreated from the view, except
    /// those that gained an entry: BuildKit writes into the mounted snapshot,
    /// where creating a name (a new file or directory, or a file written
    /// after removing the one there) sets its directory's mtime, and only
    /// copying a directory up through overlayfs keeps it.
    pub(crate) fn finish(&mut self) -> Result<(), DestError> {
        for (comps, at, mt) in self.replicated.drain(..).rev() {
            let Some((last, parents)) = comps.split_last() else {
                continue;
            };
            let walk = |root: BorrowedFd<'_>, comps: &[OsString]| {
                walk_dir(root, comps).map_err(|e| DestError::Io {
                    op: "open",
                    path: fsx::show(comps),
                    source: e,
                })
            };
            let Walked::Dir(dir) = walk(self.upper.as_fd(), &comps)? else {
                continue;
            };
            let lower = match &self.lower {
                Some(l) => match walk(l.as_fd(), &comps)? {
                    Walked::Dir(fd) => Some(fd),
                    _ => None,
                },
                None => None,
            };
            if gained_entries(dir.as_fd(), lower.as_ref().map(|l| l.as_fd())).map_err(|e| {
                DestError::Io {
                    op: "read",
                    path: fsx::show(&comps),
                    source: e,
                }
            })? {
                continue;
            }
            if let Walked::Dir(p) = walk(self.upper.as_fd(), parents)? {
                utimensat(
                    p.as_fd(),
                    last.as_os_str(),
                    &at,
                    &mt,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(io_err("utimes", &comps))?;
            }
        }
        Ok(())
    }
}

/// Whether the upper half of a recreated directory holds a name that is
/// not the view's directory of that name copied up: anything but a
/// directory was (re)created, and a directory the view lacks is new.
fn gained_entries(upper: BorrowedFd<'_>, lower: Option<BorrowedFd<'_>>) -> io::Result<bool> {
    for name in list_dir(upper)? {
        if !fsx::lstat_at(upper, &name)?.as_ref().is_some_and(is_dir) {
            return Ok(true);
        }
        let in_lower = match lower {
            Some(l) => fsx::lstat_at(l, &name)?,
            None => None,
        };
        if !in_lower.as_ref().is_some_and(is_dir) {
            return Ok(true);
        }
    }
    Ok(false)
}

impl DirHandle {
    /// What `name` is in the merged directory.
    pub(crate) fn child(&self, name: &OsStr) -> io::Result<Node> {
        match child_node(self.upper.as_fd(), name)? {
            Node::Missing => {}
            n => return Ok(n),
        }
        match &self.lower {
            Some(l) => child_node(l.as_fd(), name),
            None => Ok(Node::Missing),
        }
    }

    /// Whether the upper half has `name`.
    pub(crate) fn in_upper(&self, name: &OsStr) -> io::Result<bool> {
        Ok(fsx::lstat_at(self.upper.as_fd(), name)?.is_some())
    }

    /// Makes room for a non-directory at `name` (BuildKit's
    /// `ensureEmptyFileTarget`): a directory there is an error, anything
    /// else in the upper half is removed (one only in the view is hidden by
    /// the new entry).
    pub(crate) fn clear_for_file(&self, name: &OsStr, path: &[OsString]) -> Result<(), DestError> {
        match self.child(name).map_err(|e| DestError::Io {
            op: "stat",
            path: fsx::show(path),
            source: e,
        })? {
            Node::Dir(_) => Err(DestError::IsADirectory(fsx::show(path))),
            Node::Missing => Ok(()),
            _ => match unlinkat(self.upper.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(io_err("unlink", path)(e)),
            },
        }
    }

    /// Removes whatever the upper half has at `name`, a directory tree
    /// included (an archive entry replacing it).
    pub(crate) fn remove_all(&self, name: &OsStr, path: &[OsString]) -> Result<(), DestError> {
        remove_all_at(self.upper.as_fd(), name, path, 0)
    }

    /// Ensures a directory `name` exists in the upper half (the merged view
    /// must have a directory or nothing there). Returns its handle and
    /// whether it was created (in neither half before).
    pub(crate) fn ensure_dir(
        &self,
        name: &OsStr,
        path: &[OsString],
    ) -> Result<(DirHandle, bool), DestError> {
        let lower = match &self.lower {
            Some(l) => match open_dir_at(l.as_fd(), name) {
                Ok(fd) => fd,
                Err(Errno::ENOTDIR | Errno::ELOOP) => None,
                Err(e) => return Err(io_err("open", path)(e)),
            },
            None => None,
        };
        let mut created = false;
        let upper = match open_dir_at(self.upper.as_fd(), name) {
            Ok(Some(fd)) => fd,
            Ok(None) => {
                match self.child(name).map_err(|e| DestError::Io {
                    op: "stat",
                    path: fsx::show(path),
                    source: e,
                })? {
                    Node::Missing => created = true,
                    Node::Dir(_) => {}
                    _ => return Err(DestError::NotADirectory(fsx::show(path))),
                }
                mkdirat(self.upper.as_fd(), name, Mode::from_bits_truncate(0o700))
                    .map_err(io_err("mkdir", path))?;
                open_dir_at(self.upper.as_fd(), name)
                    .map_err(io_err("open", path))?
                    .ok_or_else(|| io_err("open", path)(Errno::ENOENT))?
            }
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                return Err(DestError::NotADirectory(fsx::show(path)))
            }
            Err(e) => return Err(io_err("open", path)(e)),
        };
        Ok((DirHandle { upper, lower }, created))
    }
}

fn remove_all_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &[OsString],
    depth: usize,
) -> Result<(), DestError> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => {}
        Err(e) => return Err(io_err("unlink", path)(e)),
    }
    if depth > MAX_REMOVE_DEPTH {
        return Err(DestError::Io {
            op: "remove",
            path: fsx::show(path),
            source: io::Error::other("directory nested too deeply"),
        });
    }
    let Some(sub) = open_dir_at(dir, name).map_err(io_err("open", path))? else {
        return Ok(());
    };
    let st = fstat(sub.as_fd()).map_err(io_err("stat", path))?;
    if !is_dir(&st) {
        return Ok(());
    }
    let names = list_dir(sub.as_fd()).map_err(|e| DestError::Io {
        op: "readdir",
        path: fsx::show(path),
        source: e,
    })?;
    for n in names {
        let mut p = path.to_vec();
        p.push(n.clone());
        remove_all_at(sub.as_fd(), &n, &p, depth + 1)?;
    }
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_err("rmdir", path)(e)),
    }
}

/// The names in a directory, sorted bytewise, without `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    // A fresh open description: reading must not move a shared offset.
    let fd = nix::fcntl::openat(
        dir,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(n).to_os_string());
    }
    names.sort();
    Ok(names)
}
