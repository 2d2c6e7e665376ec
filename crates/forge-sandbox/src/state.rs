//! Where a sandbox keeps its files, and the cleanup of what a killed forge
//! left behind.
//!
//! On disk, under the caller's state dir, one file per running sandbox:
//!
//! ```text
//! <state_dir>/<id>.lock   flock'ed by the forge process running the sandbox; it lists
//!                         the cgroups and the mountpoints created in a bind rootfs,
//!                         each written *before* it is created
//! ```
//!
//! Everything else (the generated `/etc/hosts`, `/etc/resolv.conf`,
//! `/etc/hostname` and the mountpoint layer) goes in a *scratch* directory:
//! `<id>/` on a tmpfs private to the forge process, mounted detached
//! (`fsmount`), so it shows in no mountinfo, costs no disk I/O, and
//! vanishes with the process whatever way it ends. Where the kernel cannot
//! use a detached mount for overlay layers and bind sources (before Linux
//! 6.15, probed once), the scratch directory is `<state_dir>/<id>.d/` on disk.
//!
//! Mounts never need cleaning: they exist only detached or in the
//! sandbox's mount namespace. Processes die with forge through the lifeline
//! pipe. Cgroups, mountpoints created in a bind rootfs and on-disk scratch
//! dirs are what may remain, and [`cleanup_stale`] removes them for every
//! lock file nobody holds.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{io_err, SandboxError};
use crate::sys;

/// Record kinds in a lock file: a cgroup directory, the root of a bind
/// rootfs, a mountpoint created below that root.
pub(crate) const RECORD_CGROUP: u8 = b'c';
pub(crate) const RECORD_BIND_ROOT: u8 = b'r';
pub(crate) const RECORD_CREATED: u8 = b'm';

const LOCK_SUFFIX: &str = ".lock";
const DISK_SCRATCH_SUFFIX: &str = ".d";

static FORCE_DISK_SCRATCH: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Use on-disk scratch directories even where the private tmpfs works, as
/// on kernels before 6.15 (for tests of that path).
#[doc(hidden)]
pub fn force_disk_scratch() {
    FORCE_DISK_SCRATCH.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The process's private tmpfs for scratch files, if this kernel lets
/// overlayfs and bind mounts use a detached mount (probed once).
fn scratch_tmpfs() -> Option<&'static OwnedFd> {
    static TMPFS: OnceLock<Option<OwnedFd>> = OnceLock::new();
    if FORCE_DISK_SCRATCH.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    TMPFS.get_or_init(|| probe_tmpfs().ok()).as_ref()
}

fn probe_tmpfs() -> Result<OwnedFd, nix::errno::Errno> {
    use nix::errno::Errno;
    let fs = sys::fsopen(c"tmpfs")?;
    sys::fsconfig_string(fs.as_fd(), c"mode", c"0700")?;
    sys::fsconfig_string(fs.as_fd(), c"size", c"64m")?;
    sys::fsconfig_create(fs.as_fd())?;
    let mnt = sys::fsmount(fs.as_fd(), libc::MOUNT_ATTR_NODEV as libc::c_uint)?;
    let base = format!("/proc/self/fd/{}", mnt.as_raw_fd());
    let io = |e: io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    for d in ["probe", "probe/a", "probe/b"] {
        fs::create_dir(format!("{base}/{d}")).map_err(io)?;
    }
    // 1. overlayfs takes layers on a detached mount (clone_private_mount
    //    of an anonymous namespace's root, Linux 6.15).
    let ovl = sys::fsopen(c"overlay")?;
    for layer in ["a", "b"] {
        let p = CString::new(format!("{base}/probe/{layer}")).map_err(|_| Errno::EINVAL)?;
        sys::fsconfig_string(ovl.as_fd(), c"lowerdir+", &p)?;
    }
    sys::fsconfig_create(ovl.as_fd())?;
    drop(sys::fsmount(ovl.as_fd(), 0)?);
    // 2. pid 1 can bind-mount from it inside its own mount namespace: try
    //    it in a thread with a private namespace of its own.
    let source = CString::new(format!("{base}/probe/a")).map_err(|_| Errno::EINVAL)?;
    std::thread::spawn(move || -> Result<(), Errno> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        // Any directory will do as the target: the namespace dies with
        // the thread.
        nix::mount::mount(
            Some(source.as_c_str()),
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .map_err(|_| Errno::EIO)??;
    fs::remove_dir_all(format!("{base}/probe")).map_err(io)?;
    Ok(mnt)
}

/// A sandbox's files, its lock held while it lives.
#[derive(Debug)]
pub(crate) struct StateDir {
    lock_path: PathBuf,
    lock: File,
    /// Where generated files and the mountpoint layer go.
    pub scratch: PathBuf,
    /// The tmpfs holding `scratch`, which pid 1 must keep open to reach it.
    pub scratch_fd: Option<RawFd>,
    /// An existing directory pid 1 attaches the rootfs to, in its own
    /// mount namespace (so overmounting it affects nobody else).
    pub rootdir: PathBuf,
}

fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

impl StateDir {
    pub fn create(state_dir: &Path, id: &str) -> Result<StateDir, SandboxError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(io_err("creating the state dir", state_dir))?;
        // Created under a hidden name and renamed into place locked, so
        // cleanup_stale never sees the lock of a live sandbox unlocked.
        let tmp = state_dir.join(format!(".{id}{LOCK_SUFFIX}"));
        let lock = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        let locked = try_lock(&lock).map_err(io_err("locking", &tmp));
        let lock_path = state_dir.join(format!("{id}{LOCK_SUFFIX}"));
        let renamed = locked.and_then(|_| {
            // link(2) fails if the name exists (a rename would replace it):
            // ids are unique among live sandboxes.
            fs::hard_link(&tmp, &lock_path).map_err(io_err("creating", &lock_path))
        });
        let _ = fs::remove_file(&tmp);
        renamed?;

        let (scratch, scratch_fd, rootdir) = match scratch_tmpfs() {
            Some(tmpfs) => {
                let scratch = PathBuf::from(format!("/proc/self/fd/{}/{id}", tmpfs.as_raw_fd()));
                (scratch, Some(tmpfs.as_raw_fd()), state_dir.to_path_buf())
            }
            None => {
                let scratch = state_dir.join(format!("{id}{DISK_SCRATCH_SUFFIX}"));
                (scratch.clone(), None, scratch.join("rootfs"))
            }
        };
        let state = StateDir {
            lock_path,
            lock,
            scratch,
            scratch_fd,
            rootdir,
        };
        fs::create_dir(&state.scratch).map_err(io_err("creating", &state.scratch))?;
        if state.scratch_fd.is_none() {
            fs::create_dir(&state.rootdir).map_err(io_err("creating", &state.rootdir))?;
        }
        Ok(state)
    }

    /// Append records of `kind` to the lock file.
    pub fn record(&self, kind: u8, paths: &[&Path]) -> Result<(), SandboxError> {
        let mut data = Vec::new();
        for p in paths {
            data.push(kind);
            data.extend_from_slice(p.as_os_str().as_bytes());
            data.push(0);
        }
        (&self.lock)
            .write_all(&data)
            .map_err(io_err("writing", &self.lock_path))
    }

    /// Write a file in the scratch directory.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf, SandboxError> {
        let path = self.scratch.join(name);
        fs::write(&path, contents).map_err(io_err("writing", &path))?;
        Ok(path)
    }

    /// Remove the scratch directory, then the lock file.
    pub fn remove(&self) -> Result<(), SandboxError> {
        let scratch = fs::remove_dir_all(&self.scratch).map_err(io_err("removing", &self.scratch));
        fs::remove_file(&self.lock_path).map_err(io_err("removing", &self.lock_path))?;
        scratch
    }
}

/// The records of a lock file, in order.
pub(crate) fn read_records(path: &Path) -> Vec<(u8, PathBuf)> {
    fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| s.len() > 1)
        .map(|s| (s[0], PathBuf::from(OsStr::from_bytes(&s[1..]))))
        .collect()
}

/// What [`cleanup_stale`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Sandboxes whose leftovers were removed.
    pub removed: Vec<String>,
    /// Cgroups that could not be removed because processes are still in
    /// them (a sandbox that somehow outlived its forge).
    pub busy_cgroups: Vec<PathBuf>,
}

/// Remove what sandboxes of dead forge processes left under `state_dir`:
/// their cgroups, the mountpoints created in a bind rootfs, on-disk scratch
/// dirs, and their lock files. Sandboxes whose lock is held (running) are
/// left alone, so this is safe while other forge processes run.
pub fn cleanup_stale(state_dir: &Path) -> Result<Cleanup, SandboxError> {
    let mut report = Cleanup::default();
    let entries = match fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(io_err("reading", state_dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("reading", state_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with('.') {
            // A lock being created right now, or left by a forge killed
            // in between: only the latter is old.
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60);
            if old && name.ends_with(LOCK_SUFFIX) {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        let Some(id) = name.strip_suffix(LOCK_SUFFIX) else {
            continue;
        };
        let lock = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("opening", &path)(e)),
        };
        if !try_lock(&lock).map_err(io_err("locking", &path))? {
            continue; // alive
        }
        let records = read_records(&path);
        let mut busy = false;
        for (kind, p) in &records {
            if *kind == RECORD_CGROUP && crate::cgroups::remove_dir(p).is_err() {
                busy = true;
                report.busy_cgroups.push(p.clone());
            }
        }
        if let Some((_, root)) = records.iter().find(|(k, _)| *k == RECORD_BIND_ROOT) {
            let created: Vec<PathBuf> = records
                .iter()
                .filter(|(k, _)| *k == RECORD_CREATED)
                .map(|(_, p)| p.clone())
                .collect();
            crate::rootfs::mountpoints::remove_created(root, &created);
        }
        let disk_scratch = state_dir.join(format!("{id}{DISK_SCRATCH_SUFFIX}"));
        match fs::remove_dir_all(&disk_scratch) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &disk_scratch)(e)),
        }
        if !busy {
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
            report.removed.push(id.to_owned());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_tmpfs_probe() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        // Detached mounts as overlay layers and bind sources: Linux 6.15.
        let release = nix::sys::utsname::uname().expect("uname");
        let release = release.release().to_string_lossy().into_owned();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        let r = super::probe_tmpfs();
        if (major, minor) >= (6, 15) {
            assert!(r.is_ok(), "{release}: {r:?}");
        }
    }
}
