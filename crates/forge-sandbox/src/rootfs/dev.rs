//! `/dev`: a small tmpfs with the devices runc's default spec gives
//! (`null zero full random urandom tty`), a private `devpts` instance,
//! `/dev/shm`, `/dev/mqueue` and the usual symlinks.
//!
//! Devices are created with `mknod(2)` rather than bind-mounted from the
//! host: forge is real root outside any user namespace (runc does the same
//! there), and one `mknodat` is cheaper than a resolve-and-bind.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;

use super::{mount_at, Kind, StepResult};
use crate::report::{step, Step};
use crate::sys;

/// (name, major, minor), all mode 0666 as in runc's default spec.
const NODES: [(&CStr, u32, u32); 6] = [
    (c"null", 1, 3),
    (c"zero", 1, 5),
    (c"full", 1, 7),
    (c"random", 1, 8),
    (c"urandom", 1, 9),
    (c"tty", 5, 0),
];

// No `core -> /proc/kcore`: runc adds it only when the host's /proc has kcore, and
// neither docker's containers nor BuildKit's RUN steps show it (checked with docker
// 20.10); /proc/kcore is masked anyway.
const SYMLINKS: [(&CStr, &CStr); 5] = [
    (c"ptmx", c"pts/ptmx"),
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
];

fn at(kind: u16, index: usize) -> impl Fn(Errno) -> (Step, Errno) {
    move |e| (Step::new(kind, index), e)
}

pub(crate) fn setup(root: BorrowedFd<'_>) -> StepResult<()> {
    // runc: tmpfs, nosuid, strictatime, mode=755, size=65536k. Not nodev:
    // the device nodes live here.
    mount_at(
        root,
        Path::new("dev"),
        Kind::Dir,
        Some(c"tmpfs"),
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(at(step::MOUNT_DEV, 0))?;
    // A fresh lookup crosses into the tmpfs just mounted.
    let dev = sys::open_in_root(root.as_raw_fd(), c"dev", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(at(step::MOUNT_DEV, 0))?;
    let devfd = dev.as_raw_fd();

    for (i, (name, major, minor)) in NODES.iter().enumerate() {
        // The process umask is 0 in pid 1, so the mode is exact.
        // SAFETY: valid dirfd and NUL-terminated name.
        let r = unsafe {
            libc::mknodat(
                devfd,
                name.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(*major, *minor),
            )
        };
        if r < 0 {
            return Err((Step::new(step::DEV_NODE, i), Errno::last()));
        }
    }
    for (i, (name, mode)) in [(c"pts", 0o755), (c"shm", 0o1777), (c"mqueue", 0o755)]
        .into_iter()
        .enumerate()
    {
        // SAFETY: valid dirfd and NUL-terminated name.
        if unsafe { libc::mkdirat(devfd, name.as_ptr(), mode) } < 0 {
            return Err((Step::new(step::DEV_DIR, i), Errno::last()));
        }
    }
    // A private devpts instance: the sandbox's ptys are its own, and
    // /dev/ptmx points into it. gid 5 is "tty" by convention.
    mount_at(
        root,
        Path::new("dev/pts"),
        Kind::Dir,
        Some(c"devpts"),
        Some(c"devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(at(step::MOUNT_DEVPTS, 0))?;
    mount_at(
        root,
        Path::new("dev/shm"),
        Kind::Dir,
        Some(c"shm"),
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(at(step::MOUNT_SHM, 0))?;
    // mqueue shows the IPC namespace of whoever mounts it: ours.
    mount_at(
        root,
        Path::new("dev/mqueue"),
        Kind::Dir,
        Some(c"mqueue"),
        Some(c"mqueue"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(at(step::MOUNT_MQUEUE, 0))?;
    for (i, (name, target)) in SYMLINKS.iter().enumerate() {
        // SAFETY: valid dirfd and NUL-terminated strings.
        if unsafe { libc::symlinkat(target.as_ptr(), devfd, name.as_ptr()) } < 0 {
            return Err((Step::new(step::DEV_SYMLINK, i), Errno::last()));
        }
    }
    Ok(())
}

/// Human name of a `/dev` step index, for error messages.
pub(crate) fn describe(kind: u16, index: usize) -> Option<String> {
    Some(match kind {
        step::DEV_NODE => format!("creating /dev/{}", NODES.get(index)?.0.to_string_lossy()),
        step::DEV_DIR => format!("creating /dev/{}", ["pts", "shm", "mqueue"].get(index)?),
        step::DEV_SYMLINK => {
            let (name, target) = SYMLINKS.get(index)?;
            format!(
                "linking /dev/{} to {}",
                name.to_string_lossy(),
                target.to_string_lossy()
            )
        }
        _ => return None,
    })
}
