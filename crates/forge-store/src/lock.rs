//! File locks that let several forge processes share one store.
//!
//! Two `flock(2)` locks under `locks/`, held briefly or for one command:
//!
//! - `index.lock`, exclusive, around each read-modify-write of `index.json` (tag, untag,
//!   add an image). Never held across long work, so a load never blocks another's tagging
//!   for more than a file rename.
//! - `gc.lock`: every command that writes or reads blobs holds it *shared* for its whole
//!   run (a [`Lease`]); garbage collection takes it *exclusive*, so it never deletes a blob
//!   another process has written but not yet tagged, or is reading, and it can clear `tmp/`
//!   knowing no one is staging there.
//!
//! `flock` locks belong to the open file description and the kernel drops them when the
//! process dies, so a `forge` killed with SIGKILL never leaves the store locked.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{io_err, Result, StoreError};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _lock: Flock<File>,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A shared hold on `gc.lock` for the duration of an operation that adds or reads blobs.
pub type Lease = LockGuard;

/// How to take a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("open lock", path))
}

/// Takes `path` in `mode`, waiting for other holders.
pub fn lock(path: &Path, mode: LockMode) -> Result<LockGuard> {
    let arg = match mode {
        LockMode::Shared => FlockArg::LockShared,
        LockMode::Exclusive => FlockArg::LockExclusive,
    };
    let mut file = open_lock_file(path)?;
    loop {
        match Flock::lock(file, arg) {
            Ok(l) => {
                return Ok(LockGuard {
                    _lock: l,
                    path: path.to_path_buf(),
                })
            }
            // A signal interrupted the wait: wait again.
            Err((f, Errno::EINTR)) => file = f,
            Err((_, source)) => {
                return Err(StoreError::Lock {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Takes `path` in `mode` if no one else holds it in a conflicting mode; `None` otherwise.
pub fn try_lock(path: &Path, mode: LockMode) -> Result<Option<LockGuard>> {
    let arg = match mode {
        LockMode::Shared => FlockArg::LockSharedNonblock,
        LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
    };
    let file = open_lock_file(path)?;
    match Flock::lock(file, arg) {
        Ok(l) => Ok(Some(LockGuard {
            _lock: l,
            path: path.to_path_buf(),
        })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, source)) => Err(StoreError::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}
