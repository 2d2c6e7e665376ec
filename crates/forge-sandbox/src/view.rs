//! [`RootFsView`]: a read-only look at a [`RootFs`] from forge itself, to
//! read files such as `/etc/passwd` before running anything (`USER`
//! resolution, image inspection), with symlinks resolved inside it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{io_err, SandboxError};
use crate::overlay::{self, Layers};
use crate::spec::RootFs;
use crate::users::{self, User, UserError};

/// A read-only view of a rootfs: for an overlay, its layers (the upper dir
/// on top, if it has anything) mounted read-only and *detached*, so no
/// mount namespace sees it and it goes away with the value (or the
/// process); for a bind rootfs, the directory itself.
#[derive(Debug)]
pub struct RootFsView {
    root: OwnedFd,
}

impl RootFsView {
    pub fn open(rootfs: &RootFs) -> Result<RootFsView, SandboxError> {
        let root = match rootfs {
            RootFs::Bind { path, .. } => open_dir(path)?,
            RootFs::Overlay {
                lowerdirs,
                upperdir,
                ..
            } => {
                let mut layers: Vec<PathBuf> = Vec::with_capacity(lowerdirs.len() + 1);
                if let Some(upper) = upperdir {
                    let mut entries = std::fs::read_dir(upper).map_err(io_err("reading", upper))?;
                    if entries.next().is_some() {
                        layers.push(upper.clone());
                    }
                }
                layers.extend(lowerdirs.iter().cloned());
                match layers.as_slice() {
                    [] => {
                        return Err(SandboxError::InvalidSpec {
                            what: "rootfs",
                            reason: "an overlay needs at least one lower dir".to_owned(),
                        })
                    }
                    [single] => open_dir(single)?,
                    [first, ..] => {
                        // The option-string fallback mounts in a private
                        // namespace of its own; any existing directory is
                        // fine as the mountpoint there.
                        let scratch = first.parent().unwrap_or(first).to_path_buf();
                        overlay::mount_detached(
                            &Layers {
                                lower: &layers,
                                upper: None,
                                work: None,
                                volatile: false,
                            },
                            overlay::Method::Auto,
                            &scratch,
                        )?
                    }
                }
            }
        };
        Ok(RootFsView { root })
    }

    /// A *writable* view of an overlay rootfs, its upper and work dirs
    /// included, mounted detached: to change a container's files while it
    /// is not running (`docker cp` into a stopped container). The caller
    /// makes sure nothing else mounts the same upper dir meanwhile.
    pub fn open_writable(
        lowerdirs: &[PathBuf],
        upperdir: &Path,
        workdir: &Path,
    ) -> Result<RootFsView, SandboxError> {
        let scratch = upperdir.parent().unwrap_or(upperdir).to_path_buf();
        let root = overlay::mount_detached(
            &Layers {
                lower: lowerdirs,
                upper: Some(upperdir),
                work: Some(workdir),
                volatile: false,
            },
            overlay::Method::Auto,
            &scratch,
        )?;
        Ok(RootFsView { root })
    }

    /// The root directory of a running process (`/proc/PID/root`): a
    /// container's root as it sees it, its volumes and tmpfs mounts included.
    pub fn of_process(pid: u32) -> Result<RootFsView, SandboxError> {
        let path = PathBuf::from(format!("/proc/{pid}/root"));
        Ok(RootFsView {
            root: open_dir(&path)?,
        })
    }

    /// Open `path` (absolute or relative, always taken from this root) with
    /// `O_PATH`, resolved inside the root: `..` and absolute symlinks stay in
    /// it. The last component is followed only when `follow_last`.
    pub fn open_path(&self, path: &Path, follow_last: bool) -> Result<OwnedFd, SandboxError> {
        use std::os::fd::AsRawFd;
        let rel = path.strip_prefix("/").unwrap_or(path);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let c = std::ffi::CString::new(rel.as_os_str().as_encoded_bytes()).map_err(|_| {
            SandboxError::InvalidSpec {
                what: "path",
                reason: format!("{} holds a NUL byte", path.display()),
            }
        })?;
        let flags = libc::O_PATH | if follow_last { 0 } else { libc::O_NOFOLLOW };
        crate::sys::open_in_root(self.root.as_raw_fd(), &c, flags).map_err(|e| SandboxError::Io {
            op: "resolving",
            path: path.to_path_buf(),
            source: e.into(),
        })
    }

    /// The root as a path (`/proc/self/fd/N`), for code that walks paths; it
    /// names the view only while the view lives.
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.root.as_raw_fd()))
    }

    /// The root directory, for `*at()` calls. Resolve paths below it with
    /// `openat2(RESOLVE_IN_ROOT)` (as [`users::read_in_root`] does) so that
    /// absolute symlinks stay inside.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Resolve a docker `USER` string against this rootfs's `/etc/passwd`
    /// and `/etc/group`.
    pub fn resolve_user(&self, spec: &str) -> Result<User, UserError> {
        users::resolve_user_in(self.root.as_fd(), spec)
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, SandboxError> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SandboxError::Io {
        op: "opening the rootfs",
        path: path.to_path_buf(),
        source: e.into(),
    })
}
