//! Mountpoints the rootfs lacks, and how to add them without touching the
//! upper dir.
//!
//! A busybox or distroless image often lacks `/proc`, `/etc/hosts` or the
//! target of a bind mount. runc creates them in the rootfs, which for an
//! overlay means in the upper dir: they would end up in the step's layer.
//! Docker solves it with an "init layer" between the image and the
//! container's upper dir. We do the same, per run and only when needed:
//!
//! 1. forge mounts the overlay detached (no namespace sees it) and resolves
//!    every rootfs-level mount target in it ([`resolve`](super::resolve)).
//! 2. If some are missing, it builds a *skeleton* directory holding exactly
//!    those paths (at the place symlinks really lead to), plus their
//!    existing parent directories with the owner, mode and times they have
//!    in the merged view, so the skeleton changes nothing visible.
//! 3. The overlay is mounted again with the skeleton as its top lower
//!    layer. Pid 1 then finds every mountpoint present and creates nothing.
//!
//! For a [`RootFs::Bind`](crate::RootFs::Bind) there is no layer to add:
//! the missing mountpoints are created in the directory, recorded in the
//! state dir, and removed after the run when they are still empty.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::FileStat;

use super::resolve::{self, Kind, Resolved};
use crate::error::SandboxError;

/// The mountpoints pid 1 needs at rootfs level: `/proc`, `/dev`, `/sys`
/// and every planned mount target that is not below another one (those
/// are created inside the mount above them, which is the sandbox's own).
pub(crate) fn rootfs_targets<'a>(
    mounts: impl Iterator<Item = (&'a Path, Kind)> + Clone,
) -> Vec<(PathBuf, Kind)> {
    let mut out: Vec<(PathBuf, Kind)> = ["/proc", "/dev", "/sys"]
        .iter()
        .map(|p| (PathBuf::from(p), Kind::Dir))
        .collect();
    let fixed: Vec<PathBuf> = out.iter().map(|(p, _)| p.clone()).collect();
    let all: Vec<&Path> = mounts.clone().map(|(p, _)| p).collect();
    for (target, kind) in mounts {
        let nested = fixed.iter().any(|f| target.starts_with(f))
            || all
                .iter()
                .any(|other| *other != target && target.starts_with(other));
        if !nested && !out.iter().any(|(p, _)| p == target) {
            out.push((target.to_path_buf(), kind));
        }
    }
    out
}

/// Resolve `targets` in the tree at `root` and return those with missing parts.
pub(crate) fn find_missing(
    root: BorrowedFd<'_>,
    targets: &[(PathBuf, Kind)],
) -> Result<Vec<(Resolved, Kind)>, SandboxError> {
    let mut missing = Vec::new();
    for (target, kind) in targets {
        let r = resolve::resolve(root, target).map_err(|e| SandboxError::Mountpoint {
            path: target.clone(),
            source: e.into(),
        })?;
        if !r.missing.is_empty() {
            missing.push((r, *kind));
        }
    }
    Ok(missing)
}

fn stat_at(root: BorrowedFd<'_>, rel: &Path) -> Result<FileStat, Errno> {
    if rel.as_os_str().is_empty() {
        nix::sys::stat::fstat(root)
    } else {
        let c = CString::new(rel.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
        nix::sys::stat::fstatat(root, c.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
    }
}

/// Give `dst` the owner, permission bits and times `st` describes.
fn copy_attributes(dst: &Path, st: &FileStat) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(st.st_uid), Some(st.st_gid))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(st.st_mode & 0o7777))?;
    let c = CString::new(dst.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: valid path and two timespecs.
    if unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Build the skeleton layer at `skel` (an empty directory) for `missing`,
/// mirroring attributes from the merged view at `root`.
pub(crate) fn build_skeleton(
    root: BorrowedFd<'_>,
    missing: &[(Resolved, Kind)],
    skel: &Path,
) -> Result<(), SandboxError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| SandboxError::Io {
            op: "building the mountpoint layer",
            path: path.clone(),
            source,
        }
    };
    let mut mirrored: Vec<PathBuf> = vec![PathBuf::new()];
    for (r, kind) in missing {
        // The existing part: directories standing in for the real ones.
        let mut prefix = PathBuf::new();
        for name in r.existing.iter() {
            prefix.push(name);
            if !mirrored.contains(&prefix) {
                let dst = skel.join(&prefix);
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&dst)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(io_err(&dst))?;
                mirrored.push(prefix.clone());
            }
        }
        // The missing part: plain root-owned entries, as runc would create.
        let mut path = prefix;
        let last = r.missing.len() - 1;
        for (i, name) in r.missing.iter().enumerate() {
            path.push(name);
            let dst = skel.join(&path);
            if dst.symlink_metadata().is_ok() {
                continue;
            }
            if i == last && *kind == Kind::File {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&dst)
                    .map_err(io_err(&dst))?;
                fs::set_permissions(&dst, fs::Permissions::from_mode(0o644))
                    .map_err(io_err(&dst))?;
            } else {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&dst)
                    .map_err(io_err(&dst))?;
                fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&dst))?;
            }
        }
    }
    // Attributes last: creating entries above changed the directories' mtimes.
    for rel in &mirrored {
        let st = stat_at(root, rel).map_err(|e| SandboxError::Mountpoint {
            path: Path::new("/").join(rel),
            source: e.into(),
        })?;
        let dst = skel.join(rel);
        copy_attributes(&dst, &st).map_err(io_err(&dst))?;
    }
    Ok(())
}

/// Create `missing` in place (a bind rootfs) and return what was created,
/// relative to the root, parents first.
pub(crate) fn create_in_place(
    root: BorrowedFd<'_>,
    missing: &[(Resolved, Kind)],
) -> Result<Vec<PathBuf>, SandboxError> {
    let mut created = Vec::new();
    for (r, kind) in missing {
        // An earlier target may have created part of this one.
        let r = resolve::resolve(root, &r.full()).map_err(|e| SandboxError::Mountpoint {
            path: r.full(),
            source: e.into(),
        })?;
        if r.missing.is_empty() {
            continue;
        }
        let made =
            resolve::create_missing(root, &r, *kind).map_err(|e| SandboxError::Mountpoint {
                path: r.full(),
                source: e.into(),
            })?;
        created.extend(made);
    }
    Ok(created)
}

/// Remove what [`create_in_place`] created below `root_dir`, deepest first,
/// when it is still an empty directory or an empty file. Anything that got
/// content (or was replaced) is the command's now and stays.
pub(crate) fn remove_created(root_dir: &Path, created: &[PathBuf]) {
    for rel in created.iter().rev() {
        let path = root_dir.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir(&path);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_targets_are_left_to_the_mount_above() {
        let mounts = [
            (Path::new("/etc/hosts"), Kind::File),
            (Path::new("/data"), Kind::Dir),
            (Path::new("/data/sub"), Kind::Dir),
            (Path::new("/dev/fuse"), Kind::File),
            (Path::new("/database"), Kind::Dir),
        ];
        let t = rootfs_targets(mounts.iter().copied());
        let names: Vec<_> = t
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["/proc", "/dev", "/sys", "/etc/hosts", "/data", "/database"]
        );
    }
}
