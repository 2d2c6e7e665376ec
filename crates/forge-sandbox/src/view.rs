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
