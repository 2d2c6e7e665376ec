//! Path resolution scoped to a root directory, as `filepath-securejoin` does
//! for runc: symlinks are followed as if the root were `/`, `..` stops at
//! the root, and what does not exist yet is returned separately so it can
//! be created at the place the existing part really leads to.
//!
//! Used by forge to find which mountpoints a rootfs lacks (in the parent,
//! on a detached overlay mount) and by pid 1 to create them inside nested
//! mounts. It works relative to a directory descriptor, so it never leaves
//! the tree even though the process's own root is the host's.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

/// Symlinks followed before giving up, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

/// The outcome of [`resolve`]: `existing` (relative to the root, free of
/// symlinks and `..`) exists; `missing` are the names below it that do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub existing: PathBuf,
    pub missing: Vec<OsString>,
}

impl Resolved {
    /// The whole resolved path (existing + missing), relative to the root.
    pub fn full(&self) -> PathBuf {
        let mut p = self.existing.clone();
        p.extend(self.missing.iter());
        p
    }
}

fn relative_cstring(path: &Path) -> Result<CString, Errno> {
    let bytes = path.as_os_str().as_bytes();
    let bytes = if bytes.is_empty() { b"." } else { bytes };
    CString::new(bytes).map_err(|_| Errno::EINVAL)
}

/// Resolve `path` (absolute or relative; both taken relative to `root`).
///
/// Errors: `ENOTDIR` when a non-directory is followed by more components,
/// `ELOOP` after too many symlinks, and what `fstatat`/`readlinkat` return.
pub(crate) fn resolve(root: BorrowedFd<'_>, path: &Path) -> Result<Resolved, Errno> {
    let mut todo: VecDeque<OsString> = components(path).collect();
    let mut existing = PathBuf::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            existing.pop();
            continue;
        }
        let candidate = existing.join(&name);
        let c = relative_cstring(&candidate)?;
        let st = match nix::sys::stat::fstatat(root, c.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                let mut missing = vec![name];
                // What follows a missing name cannot contain symlinks, but
                // may contain `..`: fold it lexically, never above the root
                // of what is missing.
                for n in todo {
                    if n == ".." {
                        if missing.pop().is_none() {
                            existing.pop();
                        }
                    } else {
                        missing.push(n);
                    }
                }
                return Ok(Resolved { existing, missing });
            }
            Err(e) => return Err(e),
        };
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = nix::fcntl::readlinkat(root, c.as_c_str())?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    existing = PathBuf::new();
                }
                for (i, n) in components(target).enumerate() {
                    todo.insert(i, n);
                }
            }
            SFlag::S_IFDIR => existing.push(name),
            _ => {
                if !todo.is_empty() {
                    return Err(Errno::ENOTDIR);
                }
                existing.push(name);
                return Ok(Resolved {
                    existing,
                    missing: Vec::new(),
                });
            }
        }
    }
    Ok(Resolved {
        existing,
        missing: Vec::new(),
    })
}

/// The normal and `..` components of `path`, without the root and `.`.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Whether a mountpoint is a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// Create what [`resolve`] found missing: directories (0755) for all but
/// the last name, and the last as `kind` (directory 0755 or empty file
/// 0644). Returns the paths created, relative to `root`, parents first.
pub(crate) fn create_missing(
    root: BorrowedFd<'_>,
    resolved: &Resolved,
    kind: Kind,
) -> Result<Vec<PathBuf>, Errno> {
    let mut created = Vec::new();
    let mut path = resolved.existing.clone();
    let last = resolved.missing.len().saturating_sub(1);
    for (i, name) in resolved.missing.iter().enumerate() {
        path.push(name);
        let c = relative_cstring(&path)?;
        if i == last && kind == Kind::File {
            let fd: OwnedFd = nix::fcntl::openat(
                root,
                c.as_c_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_CLOEXEC
                    | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )?;
            drop(fd);
        } else {
            nix::sys::stat::mkdirat(root, c.as_c_str(), Mode::from_bits_truncate(0o755))?;
        }
        created.push(path.clone());
    }
    Ok(created)
}

/// Open `rel` (already resolved) below `root` as an `O_PATH` descriptor,
/// with the kernel enforcing that it stays inside `root`.
pub(crate) fn open_path_in_root(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Errno> {
    let c = relative_cstring(rel)?;
    crate::sys::open_in_root(root.as_raw_fd(), &c, libc::O_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, fs::File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
        fs::create_dir_all(r.join("etc")).expect("mkdir");
        fs::write(r.join("etc/passwd"), "").expect("write");
        symlink("usr/lib", r.join("lib")).expect("symlink");
        symlink("/usr/lib", r.join("abslib")).expect("symlink");
        symlink("../../../../etc", r.join("usr/lib/escape")).expect("symlink");
        symlink("../run/resolv.conf", r.join("etc/resolv.conf")).expect("symlink");
        symlink("loop2", r.join("loop1")).expect("symlink");
        symlink("loop1", r.join("loop2")).expect("symlink");
        let f = fs::File::open(r).expect("open");
        (dir, f)
    }

    fn res(f: &fs::File, p: &str) -> Result<(String, Vec<String>), Errno> {
        resolve(f.as_fd(), Path::new(p)).map(|r| {
            (
                r.existing.to_string_lossy().into_owned(),
                r.missing
                    .iter()
                    .map(|m| m.to_string_lossy().into_owned())
                    .collect(),
            )
        })
    }

    #[test]
    fn follows_symlinks_inside_the_root() {
        let (_d, f) = tree();
        assert_eq!(
            res(&f, "/lib/x").expect("ok"),
            ("usr/lib".into(), vec!["x".into()])
        );
        assert_eq!(res(&f, "/abslib").expect("ok"), ("usr/lib".into(), vec![]));
        assert_eq!(
            res(&f, "/lib/escape/passwd").expect("ok"),
            ("etc/passwd".into(), vec![])
        );
        assert_eq!(res(&f, "/../../etc").expect("ok"), ("etc".into(), vec![]));
        // A dangling link leads to where its target would be.
        assert_eq!(
            res(&f, "/etc/resolv.conf").expect("ok"),
            ("".into(), vec!["run".into(), "resolv.conf".into()])
        );
        assert_eq!(res(&f, "/").expect("ok"), ("".into(), vec![]));
        assert_eq!(
            res(&f, "/a/b/../c").expect("ok"),
            ("".into(), vec!["a".into(), "c".into()])
        );
    }

    #[test]
    fn reports_loops_and_files_in_the_middle() {
        let (_d, f) = tree();
        assert_eq!(res(&f, "/loop1"), Err(Errno::ELOOP));
        assert_eq!(res(&f, "/etc/passwd/x"), Err(Errno::ENOTDIR));
    }

    #[test]
    fn creates_what_is_missing() {
        let (d, f) = tree();
        let r = resolve(f.as_fd(), Path::new("/lib/a/b")).expect("resolve");
        let created = create_missing(f.as_fd(), &r, Kind::File).expect("create");
        assert_eq!(
            created,
            vec![PathBuf::from("usr/lib/a"), PathBuf::from("usr/lib/a/b")]
        );
        assert!(d.path().join("usr/lib/a/b").is_file());
        let again = resolve(f.as_fd(), Path::new("/lib/a/b")).expect("resolve");
        assert!(again.missing.is_empty());
    }
}
