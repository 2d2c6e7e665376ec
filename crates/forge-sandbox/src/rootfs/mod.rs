//! The sandbox's root filesystem, as pid 1 builds it in its own mount
//! namespace (runc's `prepareRootfs` order):
//!
//! 1. `mount --make-rprivate /`: nothing mounted from here on propagates
//!    back to the host, and the namespace's mounts die with it.
//! 2. The rootfs (a detached mount forge prepared: an overlay, or a clone of
//!    a bind) is attached at a fresh directory with `move_mount(2)`.
//! 3. `/proc`, `/dev` (see [`dev`]), `/sys`, then the generated `/etc` files
//!    and the caller's mounts, shallowest target first. Every target is
//!    resolved inside the rootfs ([`resolve`]) and mounted through its
//!    `/proc/self/fd` path, so a symlink in the image cannot redirect a
//!    mount (or a created mountpoint) outside the rootfs.
//! 4. `pivot_root(".", ".")` and a lazy unmount of the old root.
//! 5. Masked and read-only paths, and a read-only root if asked.
//!
//! Mountpoints the rootfs lacks are not created in it: forge adds them on an
//! extra top layer of the overlay ([`mountpoints`]), so the upper dir only
//! ever holds the command's own changes.

pub(crate) mod dev;
pub(crate) mod mountpoints;
pub(crate) mod resolve;

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::report::{step, Step};
use crate::sys;
pub(crate) use resolve::Kind;

/// One bind or tmpfs mount pid 1 performs (the generated `/etc` files and
/// the caller's [`MountSpec`](crate::MountSpec)s), prepared by forge before forking.
#[derive(Debug)]
pub(crate) struct MountOp {
    /// Absolute path inside the rootfs, as given; resolved at mount time.
    pub target: PathBuf,
    pub kind: Kind,
    pub source: CString,
    /// `None` for bind mounts.
    pub fstype: Option<CString>,
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
    /// A second `MS_REMOUNT` with these flags (read-only binds).
    pub remount: Option<libc::c_ulong>,
}

/// What pid 1 needs to build the rootfs.
#[derive(Debug)]
pub(crate) struct RootfsPlan {
    /// The detached rootfs mount (from `fsmount` or `open_tree`).
    pub rootfs_fd: RawFd,
    /// Where it is attached: `<state_dir>/<id>/rootfs`.
    pub rootdir: CString,
    pub mounts: Vec<MountOp>,
    pub masked: Vec<CString>,
    pub readonly_paths: Vec<CString>,
    pub readonly_root: bool,
}

pub(crate) type StepResult<T> = Result<T, (Step, Errno)>;

fn at(kind: u16, index: usize) -> impl Fn(Errno) -> (Step, Errno) {
    move |e| (Step::new(kind, index), e)
}

fn mount_raw(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: NUL-terminated strings or NULL, as mount(2) takes them.
    let r = unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags,
            p(data).cast::<libc::c_void>(),
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Resolve `target` inside `root`, create what is missing (only inside
/// mounts made by the sandbox itself: forge made sure the rootfs has its
/// own), and open it `O_PATH`.
pub(crate) fn prepare_mountpoint(
    root: BorrowedFd<'_>,
    target: &Path,
    kind: Kind,
) -> Result<OwnedFd, Errno> {
    let r = resolve::resolve(root, target)?;
    if !r.missing.is_empty() {
        resolve::create_missing(root, &r, kind)?;
    }
    resolve::open_path_in_root(root, &r.full())
}

/// Mount onto `target` inside `root` via its `/proc/self/fd` path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mount_at(
    root: BorrowedFd<'_>,
    target: &Path,
    kind: Kind,
    source: Option<&CStr>,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let fd = prepare_mountpoint(root, target, kind)?;
    let mut buf = [0u8; 40];
    let path = sys::proc_fd_path(fd.as_raw_fd(), &mut buf);
    mount_raw(source, path, fstype, flags, data)
}

/// Steps 1–3: make everything private, attach the rootfs, mount the
/// pseudo-filesystems and the planned mounts. Returns a descriptor of the
/// new root.
pub(crate) fn setup(plan: &RootfsPlan) -> StepResult<OwnedFd> {
    // Without this, mounts below would propagate to the host's shared
    // mounts (systemd makes `/` shared), and umounts back.
    mount_raw(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(at(step::MAKE_PRIVATE, 0))?;
    sys::move_mount_to(plan.rootfs_fd, &plan.rootdir).map_err(at(step::ATTACH_ROOTFS, 0))?;
    // The detached mount is attached now; its descriptor is not needed.
    // SAFETY: our copy of the descriptor, not used afterwards.
    unsafe { libc::close(plan.rootfs_fd) };
    // A fresh lookup of the directory lands on the mount just attached.
    let root = nix::fcntl::open(
        plan.rootdir.as_c_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(at(step::OPEN_ROOTFS, 0))?;
    let r = root.as_fd();

    mount_at(
        r,
        Path::new("proc"),
        Kind::Dir,
        Some(c"proc"),
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(at(step::MOUNT_PROC, 0))?;
    dev::setup(r)?;
    // A fresh sysfs, read-only (runc's default spec); in a new network
    // namespace it shows that namespace's interfaces.
    mount_at(
        r,
        Path::new("sys"),
        Kind::Dir,
        Some(c"sysfs"),
        Some(c"sysfs"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(at(step::MOUNT_SYS, 0))?;

    for (i, m) in plan.mounts.iter().enumerate() {
        let fd = prepare_mountpoint(r, &m.target, m.kind).map_err(at(step::MOUNTPOINT, i))?;
        let mut buf = [0u8; 40];
        let path = sys::proc_fd_path(fd.as_raw_fd(), &mut buf);
        mount_raw(
            Some(&m.source),
            path,
            m.fstype.as_deref(),
            m.flags,
            m.data.as_deref(),
        )
        .map_err(at(step::MOUNT, i))?;
        if let Some(flags) = m.remount {
            // A bind mount takes its flags from its source; read-only needs a
            // remount of the new mount itself, reached by a fresh lookup
            // (the old descriptor is the mountpoint below it).
            drop(fd);
            let fd = prepare_mountpoint(r, &m.target, m.kind).map_err(at(step::REMOUNT, i))?;
            let path = sys::proc_fd_path(fd.as_raw_fd(), &mut buf);
            mount_raw(None, path, None, flags, None).map_err(at(step::REMOUNT, i))?;
        }
    }
    Ok(root)
}

/// Step 4: make the rootfs `/` and detach the old root, runc's way:
/// `pivot_root(".", ".")` stacks the old root on top of the new one at `/`,
/// and the lazy unmount of `.` then takes the old root away, so no
/// directory for it is needed in the rootfs (and nothing is left in it).
pub(crate) fn pivot_root(rootdir: &CStr) -> StepResult<()> {
    let e = at(step::PIVOT_ROOT, 0);
    nix::unistd::chdir(rootdir).map_err(&e)?;
    nix::unistd::pivot_root(".", ".").map_err(&e)?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(&e)?;
    nix::unistd::chdir("/").map_err(&e)?;
    Ok(())
}

/// The per-mount flags of the mount at `path` as `MS_*` flags, so a
/// remount keeps nosuid/nodev/noexec/atime settings (runc's `getMountFlags`).
fn mount_flags_of(path: &CStr) -> Result<libc::c_ulong, Errno> {
    // SAFETY: statvfs fills the struct; all-zero is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } < 0 {
        return Err(Errno::last());
    }
    let f = st.f_flag as libc::c_ulong;
    // ST_* and MS_* agree bit for bit except ST_RELATIME (4096).
    let mut flags = f
        & (libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_SYNCHRONOUS
            | libc::MS_MANDLOCK
            | libc::MS_NOATIME
            | libc::MS_NODIRATIME);
    if f & 4096 != 0 {
        flags |= libc::MS_RELATIME;
    }
    Ok(flags)
}

/// Step 5 (after pivot_root, so paths are the sandbox's own).
pub(crate) fn finish(plan: &RootfsPlan) -> StepResult<()> {
    for (i, path) in plan.masked.iter().enumerate() {
        // runc's maskPath: /dev/null over a file; for a directory the bind
        // fails with ENOTDIR and an empty read-only tmpfs covers it instead.
        match mount_raw(Some(c"/dev/null"), path, None, libc::MS_BIND, None) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) => mount_raw(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )
            .map_err(at(step::MASK, i))?,
            Err(e) => return Err((Step::new(step::MASK, i), e)),
        }
    }
    for (i, path) in plan.readonly_paths.iter().enumerate() {
        // runc's readonlyPath: bind the path onto itself, then remount that
        // bind read-only, keeping its other flags.
        match mount_raw(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err((Step::new(step::READONLY_PATH, i), e)),
        }
        let flags = mount_flags_of(path).map_err(at(step::READONLY_PATH, i))?;
        mount_raw(
            None,
            path,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        )
        .map_err(at(step::READONLY_PATH, i))?;
    }
    if plan.readonly_root {
        let flags = mount_flags_of(c"/").map_err(at(step::READONLY_ROOT, 0))?;
        mount_raw(
            None,
            c"/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        )
        .map_err(at(step::READONLY_ROOT, 0))?;
    }
    Ok(())
}
