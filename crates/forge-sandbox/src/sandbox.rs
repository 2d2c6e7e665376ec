//! [`Sandbox`]: starting one, talking to it, waiting for it, cleaning up.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::capabilities::{self, CapSet};
use crate::cgroups::{Cgroup, Usage};
use crate::error::{io_err, SandboxError};
use crate::init::{self, ExecPlan, Plan};
use crate::overlay::{self, Layers};
use crate::report::{self, step, Msg, Step};
use crate::rootfs::{self, mountpoints, Kind, MountOp, RootfsPlan};
use crate::spec::{MountSpec, ProcessSpec, RootFs, SandboxSpec, Stdio, WindowSize, DEFAULT_PATH};
use crate::state::{self, StateDir};
use crate::{etc, namespaces, sys};

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It failed (non-zero exit or killed) and the kernel's OOM killer
    /// killed a process of the sandbox for exceeding the memory limit.
    OutOfMemory,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code docker reports: the code, 128 + signal, 137 for OOM.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
            ExitStatus::OutOfMemory => 137,
        }
    }
}

/// The result of [`Sandbox::wait_with_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub usage: Usage,
}

/// A running sandbox.
///
/// Dropping it without [`wait`](Sandbox::wait) kills it: forge's end of the
/// lifeline pipe closes, the intermediate process SIGKILLs pid 1, and the
/// kernel kills the rest of the pid namespace. The same happens when the
/// forge process dies, however it dies.
#[derive(Debug)]
pub struct Sandbox {
    id: String,
    intermediate: Option<libc::pid_t>,
    intermediate_status: Option<libc::c_int>,
    init_pid: Option<libc::pid_t>,
    init_pidfd: Option<OwnedFd>,
    report: Option<OwnedFd>,
    lifeline: Option<OwnedFd>,
    cgroup: Option<Cgroup>,
    state: Option<StateDir>,
    created: Option<(PathBuf, Vec<PathBuf>)>,
    /// forge's reference to the rootfs mount (see [`close_in_background`]).
    rootfs_mount: Option<OwnedFd>,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    pty: Option<File>,
}

/// Run `spec` to completion: [`Sandbox::spawn`] then [`Sandbox::wait`].
///
/// Meant for [`Stdio::Inherit`], [`Stdio::Null`] and [`Stdio::Fd`]: a
/// [`Stdio::Piped`] output would have no reader (use
/// [`Sandbox::wait_with_output`]).
pub fn run(spec: &SandboxSpec) -> Result<ExitStatus, SandboxError> {
    Sandbox::spawn(spec)?.wait()
}

pub(crate) fn cstring(what: &'static str, bytes: &[u8]) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::InvalidSpec {
        what,
        reason: format!("{:?} contains a NUL byte", String::from_utf8_lossy(bytes)),
    })
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom fills the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Practically unreachable; fall back on time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes = (t ^ ((std::process::id() as u64) << 32)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SOCK_SEQPACKET pair: message boundaries kept, descriptors passable.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills the array with two new descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(SandboxError::Syscall {
            call: "socketpair",
            source: Errno::last(),
        });
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Syscall {
        call: "pipe2",
        source: e,
    })
}

/// A close-on-exec duplicate numbered ≥ 3, so the command's dup2 onto
/// 0/1/2 never overwrites a source it still needs.
pub(crate) fn dup_high(fd: BorrowedFd<'_>) -> Result<OwnedFd, SandboxError> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(SandboxError::Syscall {
            call: "fcntl(F_DUPFD_CLOEXEC)",
            source: Errno::last(),
        });
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn has_cap_sys_resource() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1 << 24) != 0)
}

/// The `MS_*` per-mount flags of the filesystem mounted at `path`, for a
/// read-only remount that must not drop nosuid/nodev/noexec.
fn mount_flags(path: &Path) -> libc::c_ulong {
    match nix::sys::statvfs::statvfs(path) {
        Ok(st) => {
            use nix::sys::statvfs::FsFlags;
            let f = st.flags();
            let mut flags = 0;
            for (st_flag, ms) in [
                (FsFlags::ST_NOSUID, libc::MS_NOSUID),
                (FsFlags::ST_NODEV, libc::MS_NODEV),
                (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
                (FsFlags::ST_NOATIME, libc::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, libc::MS_RELATIME),
            ] {
                if f.contains(st_flag) {
                    flags |= ms;
                }
            }
            flags
        }
        Err(_) => 0,
    }
}

fn validate(spec: &SandboxSpec) -> Result<(), SandboxError> {
    let invalid = |what, reason: &str| {
        Err(SandboxError::InvalidSpec {
            what,
            reason: reason.to_owned(),
        })
    };
    if spec.process.args.is_empty() || spec.process.args[0].is_empty() {
        return invalid("process.args", "no command");
    }
    let l = &spec.limits;
    if !spec.use_cgroup
        && (l.memory.is_some() || l.memory_swap.is_some() || l.cpus.is_some() || l.pids.is_some())
    {
        return invalid("limits", "cgroup limits need use_cgroup");
    }
    if !spec.process.cwd.is_absolute() {
        return invalid("process.cwd", "must be an absolute path");
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return invalid("hostname", "must be 1 to 64 bytes");
    }
    if let Some(id) = &spec.id {
        let ok = !id.is_empty()
            && id.len() <= 64
            && !id.starts_with('.')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return invalid("id", "use 1 to 64 of [A-Za-z0-9_.-], not starting with '.'");
        }
    }
    if spec.cgroup_parent.is_empty()
        || spec.cgroup_parent.starts_with('/')
        || spec.cgroup_parent.contains("..")
    {
        return invalid("cgroup_parent", "must be a relative path without '..'");
    }
    for m in &spec.mounts {
        if !m.target().is_absolute() {
            return invalid("mounts", "targets must be absolute paths");
        }
    }
    for r in &spec.limits.rlimits {
        if r.soft > r.hard {
            return Err(SandboxError::InvalidSpec {
                what: "limits.rlimits",
                reason: format!(
                    "{}: soft limit {} above hard limit {}",
                    r.resource.name(),
                    r.soft,
                    r.hard
                ),
            });
        }
    }
    if let Some(cpus) = spec.limits.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return invalid("limits.cpus", "must be a positive number");
        }
    }
    Ok(())
}

/// Refuse an rlimit whose hard value is above ours when we cannot raise
/// it, before forking anything: the child would fail with EPERM anyway.
fn check_rlimits(spec: &SandboxSpec) -> Result<(), SandboxError> {
    if spec.limits.rlimits.is_empty() || has_cap_sys_resource() {
        return Ok(());
    }
    for r in &spec.limits.rlimits {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills cur.
        if unsafe { libc::getrlimit(r.resource.raw(), &mut cur) } < 0 {
            continue;
        }
        if r.hard > cur.rlim_max {
            return Err(SandboxError::RlimitAboveHard {
                resource: r.resource.name(),
                requested: r.hard,
                hard: cur.rlim_max,
            });
        }
    }
    Ok(())
}

/// Bind and tmpfs mounts pid 1 performs: the generated /etc files and the
/// caller's mounts, shallowest target first (docker sorts the same way, so
/// a mount at /a is made before one at /a/b).
fn mount_ops(
    spec: &SandboxSpec,
    etc_files: &[(PathBuf, &str)],
) -> Result<Vec<MountOp>, SandboxError> {
    let mut ops = Vec::new();
    for (source, target) in etc_files {
        ops.push(MountOp {
            target: PathBuf::from(target),
            kind: Kind::File,
            source: cstring("state dir", source.as_os_str().as_bytes())?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            remount: None,
        });
    }
    for m in &spec.mounts {
        ops.push(match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => {
                let meta = fs::metadata(source).map_err(io_err("bind mount source", source))?;
                MountOp {
                    target: target.clone(),
                    kind: if meta.is_dir() { Kind::Dir } else { Kind::File },
                    source: cstring("mounts.source", source.as_os_str().as_bytes())?,
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                    remount: readonly.then(|| {
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | mount_flags(source)
                    }),
                }
            }
            MountSpec::Tmpfs { target, size, mode } => {
                let mut data = format!("mode={:o}", mode & 0o7777);
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                MountOp {
                    target: target.clone(),
                    kind: Kind::Dir,
                    source: CString::from(c"tmpfs"),
                    fstype: Some(CString::from(c"tmpfs")),
                    flags: libc::MS_NOSUID | libc::MS_NODEV,
                    data: Some(cstring("mounts.size", data.as_bytes())?),
                    remount: None,
                }
            }
        });
    }
    // Stable: the /etc files keep their order among equals.
    ops.sort_by_key(|op| op.target.components().count());
    Ok(ops)
}

/// The paths the command is looked up at, in order.
pub(crate) fn exec_candidates(arg0: &str, env: &[String]) -> Vec<String> {
    if arg0.contains('/') {
        return vec![arg0.to_owned()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            format!("{}/{arg0}", dir.trim_end_matches('/'))
        })
        .collect()
}

/// The directories `mkdir -p` would make for an absolute `cwd`, outermost
/// first: the path up to each component as written (`.` and `..` are
/// walked through by the kernel, not made).
fn cwd_dirs(cwd: &[u8]) -> Vec<&[u8]> {
    let mut dirs = Vec::new();
    let mut start = 0;
    for end in (0..=cwd.len()).filter(|&i| i == cwd.len() || cwd[i] == b'/') {
        let comp = &cwd[start..end];
        if !comp.is_empty() && comp != b"." && comp != b".." {
            dirs.push(&cwd[..end]);
        }
        start = end + 1;
    }
    dirs
}

/// What the command process does before `execve`, for `p` with these
/// standard descriptors, rlimits, capabilities and `PATH` candidates.
pub(crate) fn exec_plan(
    p: &ProcessSpec,
    stdio: [Option<RawFd>; 3],
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    caps: CapSet,
    candidates: &[String],
) -> Result<ExecPlan, SandboxError> {
    let mut exec = ExecPlan {
        stdio,
        rlimits,
        no_new_privileges: p.no_new_privileges,
        caps: caps.bits(),
        last_cap: capabilities::last_cap(),
        uid: p.uid,
        gid: p.gid,
        groups: p.additional_gids.clone(),
        cwd: cstring("process.cwd", p.cwd.as_os_str().as_bytes())?,
        cwd_dirs: cwd_dirs(p.cwd.as_os_str().as_bytes())
            .into_iter()
            .map(|d| cstring("process.cwd", d))
            .collect::<Result<_, _>>()?,
        umask: p.umask as libc::mode_t,
        candidates: candidates
            .iter()
            .map(|c| cstring("process.args", c.as_bytes()))
            .collect::<Result<_, _>>()?,
        argv: Vec::new(),
        envp: Vec::new(),
        _args: Vec::new(),
        _env: Vec::new(),
    };
    exec.set_args(
        p.args
            .iter()
            .map(|a| cstring("process.args", a.as_bytes()))
            .collect::<Result<_, _>>()?,
        p.env
            .iter()
            .map(|e| cstring("process.env", e.as_bytes()))
            .collect::<Result<_, _>>()?,
    );
    Ok(exec)
}

/// The descriptors of one standard stream: the child's end and forge's.
pub(crate) fn stdio_fds(
    s: &Stdio,
    input: bool,
) -> Result<(Option<OwnedFd>, Option<File>), SandboxError> {
    Ok(match s {
        Stdio::Inherit => (None, None),
        Stdio::Null => {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(io_err("opening", "/dev/null"))?;
            (Some(dup_high(f.as_fd())?), None)
        }
        Stdio::Piped => {
            let (r, w) = pipe()?;
            if input {
                (Some(dup_high(r.as_fd())?), Some(File::from(w)))
            } else {
                (Some(dup_high(w.as_fd())?), Some(File::from(r)))
            }
        }
        Stdio::Fd(fd) => (Some(dup_high(fd.as_fd())?), None),
    })
}

/// The rootfs as a detached mount, with the mountpoints it lacks added on
/// a layer of their own (overlay) or created in place (bind).
fn prepare_rootfs(
    spec: &SandboxSpec,
    ops: &[MountOp],
    state: &StateDir,
    created: &mut Option<(PathBuf, Vec<PathBuf>)>,
) -> Result<OwnedFd, SandboxError> {
    let targets = mountpoints::rootfs_targets(ops.iter().map(|op| (op.target.as_path(), op.kind)));
    match &spec.rootfs {
        RootFs::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        } => {
            // Where the option-string fallback may mount, in a private namespace.
            let scratch = state.rootdir.clone();
            // Look for missing mountpoints in a read-only view of the
            // layers, never in the writable mount itself: unmounting an
            // overlay with an upper dir syncs the upper filesystem, which
            // costs milliseconds (more under I/O load). A fresh (empty)
            // upper dir adds nothing to the view and is left out.
            let mut view_layers: Vec<PathBuf> = Vec::with_capacity(lowerdirs.len() + 1);
            if let Some(upper) = upperdir {
                if has_entries(upper)? {
                    view_layers.push(upper.clone());
                }
            }
            view_layers.extend(lowerdirs.iter().cloned());
            let view = match view_layers.as_slice() {
                [] => {
                    return Err(SandboxError::InvalidSpec {
                        what: "rootfs",
                        reason: "an overlay needs at least one lower dir".to_owned(),
                    })
                }
                [single] => open_dir(single)?,
                _ => overlay::mount_detached(
                    &Layers {
                        lower: &view_layers,
                        upper: None,
                        work: None,
                        volatile: false,
                    },
                    overlay::Method::Auto,
                    &scratch,
                )?,
            };
            // Mountpoints of the caller's mounts go into the upper dir when
            // asked (a container's), the rest on the mountpoint layer.
            let (in_upper, targets): (Vec<_>, Vec<_>) = targets.into_iter().partition(|(t, _)| {
                spec.mountpoints_in_upper
                    && upperdir.is_some()
                    && spec.mounts.iter().any(|m| m.target() == t.as_path())
            });
            let missing = mountpoints::find_missing(view.as_fd(), &targets)?;
            let missing_in_upper = mountpoints::find_missing(view.as_fd(), &in_upper)?;
            // overlayfs wants two lower dirs when there is no upper dir
            // (before Linux 6.?): a single read-only layer always gets the
            // (then possibly empty) mountpoint layer on top.
            let single_ro = lowerdirs.len() == 1 && upperdir.is_none();
            let mut lower = Vec::with_capacity(lowerdirs.len() + 1);
            if !missing.is_empty() || single_ro {
                let layer = state.scratch.join("layer");
                fs::create_dir(&layer).map_err(io_err("creating", &layer))?;
                mountpoints::build_skeleton(view.as_fd(), &missing, &layer)?;
                lower.push(layer);
            }
            drop(view);
            lower.extend(lowerdirs.iter().cloned());
            let root = overlay::mount_detached(
                &Layers {
                    lower: &lower,
                    upper: upperdir.as_deref(),
                    work: workdir.as_deref(),
                    volatile: spec.volatile_upper,
                },
                overlay::Method::Auto,
                &scratch,
            )?;
            if !missing_in_upper.is_empty() {
                mountpoints::create_in_place(root.as_fd(), &missing_in_upper)?;
            }
            Ok(root)
        }
        RootFs::Bind { path, .. } => {
            let dir = open_dir(path)?;
            let missing = mountpoints::find_missing(dir.as_fd(), &targets)?;
            if !missing.is_empty() {
                // Record first: a forge killed half-way still leaves a
                // complete list for cleanup_stale.
                let mut planned: Vec<PathBuf> = Vec::new();
                for (r, _) in &missing {
                    let mut p = r.existing.clone();
                    for name in &r.missing {
                        p.push(name);
                        if !planned.contains(&p) {
                            planned.push(p.clone());
                        }
                    }
                }
                state.record(state::RECORD_BIND_ROOT, &[path.as_path()])?;
                let record: Vec<&Path> = planned.iter().map(PathBuf::as_path).collect();
                state.record(state::RECORD_CREATED, &record)?;
                let made = mountpoints::create_in_place(dir.as_fd(), &missing);
                *created = Some((path.clone(), planned));
                made?;
            }
            let c = cstring("rootfs path", path.as_os_str().as_bytes())?;
            sys::open_tree_clone(&c).map_err(|e| SandboxError::Io {
                op: "cloning the rootfs bind mount",
                path: path.clone(),
                source: e.into(),
            })
        }
    }
}

fn has_entries(dir: &Path) -> Result<bool, SandboxError> {
    let mut entries = fs::read_dir(dir).map_err(io_err("reading", dir))?;
    Ok(entries.next().is_some())
}

fn open_dir(path: &Path) -> Result<OwnedFd, SandboxError> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SandboxError::Io {
        op: "opening the rootfs",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// What forge needs to turn a (step, errno) from the sandbox into an error.
struct Steps<'a> {
    spec: &'a SandboxSpec,
    ops: &'a [MountOp],
    cgroups: Vec<PathBuf>,
    candidates: &'a [String],
}

impl Steps<'_> {
    fn error(&self, s: Step, e: Errno) -> SandboxError {
        let idx = s.index();
        let p = &self.spec.process;
        if s.kind() == step::EXEC {
            let command = self
                .candidates
                .get(idx)
                .cloned()
                .unwrap_or_else(|| p.args[0].clone());
            return if e == Errno::ENOENT || e == Errno::ENOTDIR {
                SandboxError::CommandNotFound {
                    command: p.args[0].clone(),
                }
            } else {
                SandboxError::CommandNotExecutable { command, source: e }
            };
        }
        if s.kind() == step::RLIMIT && e == Errno::EPERM {
            if let Some(r) = self.spec.limits.rlimits.get(idx) {
                let mut cur = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit fills cur.
                unsafe { libc::getrlimit(r.resource.raw(), &mut cur) };
                return SandboxError::RlimitAboveHard {
                    resource: r.resource.name(),
                    requested: r.hard,
                    hard: cur.rlim_max,
                };
            }
        }
        let target = |i: usize| {
            self.ops
                .get(i)
                .map(|op| op.target.display().to_string())
                .unwrap_or_default()
        };
        let step = match s.kind() {
            step::UNSHARE => "unshare(mount, uts, ipc, pid[, net] namespaces)".to_owned(),
            step::FORK_INIT => "forking pid 1".to_owned(),
            step::JOIN_CGROUP => format!(
                "moving pid 1 into cgroup {}",
                self.cgroups
                    .get(idx)
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ),
            step::PARENT_ALIVE => "the intermediate process exited early".to_owned(),
            step::MAKE_PRIVATE => "making mounts private (mount --make-rprivate /)".to_owned(),
            step::ATTACH_ROOTFS => "attaching the rootfs (move_mount)".to_owned(),
            step::OPEN_ROOTFS => "opening the rootfs".to_owned(),
            step::MOUNT_PROC => "mounting /proc".to_owned(),
            step::MOUNT_DEV => "mounting /dev".to_owned(),
            step::MOUNT_DEVPTS => "mounting /dev/pts".to_owned(),
            step::MOUNT_SHM => "mounting /dev/shm".to_owned(),
            step::MOUNT_MQUEUE => "mounting /dev/mqueue".to_owned(),
            step::MOUNT_SYS => "mounting /sys".to_owned(),
            k @ (step::DEV_NODE | step::DEV_DIR | step::DEV_SYMLINK) => {
                rootfs::dev::describe(k, idx).unwrap_or_else(|| "setting up /dev".to_owned())
            }
            step::MOUNTPOINT => format!("creating mountpoint {}", target(idx)),
            step::MOUNT => format!("mounting {}", target(idx)),
            step::REMOUNT => format!("remounting {} read-only", target(idx)),
            step::HOSTNAME => format!("sethostname({:?})", self.spec.hostname),
            step::LOOPBACK => "bringing up lo".to_owned(),
            step::PIVOT_ROOT => "pivot_root".to_owned(),
            step::MASK => format!(
                "masking {}",
                self.spec
                    .masked_paths
                    .get(idx)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            step::READONLY_PATH => format!(
                "making {} read-only",
                self.spec
                    .readonly_paths
                    .get(idx)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            step::READONLY_ROOT => "remounting / read-only".to_owned(),
            step::PTY => "allocating the terminal".to_owned(),
            step::WAIT_CGROUP => "waiting to join the cgroups".to_owned(),
            step::UNSHARE_CGROUP => "unshare(cgroup namespace)".to_owned(),
            step::FORK_COMMAND => "forking the command".to_owned(),
            step::SETSID => "setsid".to_owned(),
            step::STDIO => format!("setting up descriptor {idx}"),
            step::RLIMIT => format!(
                "setrlimit({})",
                self.spec
                    .limits
                    .rlimits
                    .get(idx)
                    .map(|r| r.resource.name())
                    .unwrap_or("?")
            ),
            step::NO_NEW_PRIVS => "prctl(PR_SET_NO_NEW_PRIVS)".to_owned(),
            step::BOUNDING_SET => format!("dropping capability {idx} from the bounding set"),
            step::KEEPCAPS => "prctl(PR_SET_KEEPCAPS)".to_owned(),
            step::SETGROUPS => format!("setgroups({:?})", p.additional_gids),
            step::SETGID => format!("setgid({})", p.gid),
            step::SETUID => format!("setuid({})", p.uid),
            step::CAPSET => "capset".to_owned(),
            step::AMBIENT => "clearing the ambient capabilities".to_owned(),
            step::CHDIR => format!("chdir({})", p.cwd.display()),
            other => format!("step {other}"),
        };
        SandboxError::Setup { step, source: e }
    }
}

impl Sandbox {
    /// Start `spec`'s command in a new sandbox and return once it runs
    /// (`execve` succeeded) or failed to start.
    pub fn spawn(spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        validate(spec)?;
        check_rlimits(spec)?;
        let id = spec.id.clone().unwrap_or_else(random_id);
        let mut sb = Sandbox {
            id: id.clone(),
            intermediate: None,
            intermediate_status: None,
            init_pid: None,
            init_pidfd: None,
            report: None,
            lifeline: None,
            cgroup: None,
            state: None,
            created: None,
            rootfs_mount: None,
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
        };
        // From here on, an early return drops `sb`, which removes whatever
        // was set up so far.
        let state = sb.state.insert(StateDir::create(&spec.state_dir, &id)?);

        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let etc_files = [
            (
                state.write("hosts", &etc::hosts(&spec.hostname, &spec.hosts))?,
                "/etc/hosts",
            ),
            (
                state.write(
                    "resolv.conf",
                    &etc::resolv_conf(&spec.resolv_conf, spec.network, &host_resolv),
                )?,
                "/etc/resolv.conf",
            ),
            (
                state.write("hostname", &etc::hostname(&spec.hostname))?,
                "/etc/hostname",
            ),
        ];
        let ops = mount_ops(spec, &etc_files)?;
        let rootfs_fd = prepare_rootfs(spec, &ops, state, &mut sb.created)?;

        let cgroup = if spec.use_cgroup {
            Cgroup::plan(&spec.cgroup_parent, &id, spec.limits.freezer)
        } else {
            Cgroup::none()
        };
        cgroup.check(&spec.limits)?;
        let paths: Vec<&Path> = cgroup.dirs.iter().map(|d| d.path.as_path()).collect();
        state.record(state::RECORD_CGROUP, &paths)?;
        let cgroup = sb.cgroup.insert(cgroup);
        cgroup.create(&spec.limits)?;
        let procs = cgroup.procs_files()?;

        let p = &spec.process;
        let tty = p.tty;
        let (stdin_child, stdin_parent) = if tty.is_some() {
            (None, None)
        } else {
            stdio_fds(&p.stdin, true)?
        };
        let (stdout_child, stdout_parent) = if tty.is_some() {
            (None, None)
        } else {
            stdio_fds(&p.stdout, false)?
        };
        let (stderr_child, stderr_parent) = if tty.is_some() {
            (None, None)
        } else {
            stdio_fds(&p.stderr, false)?
        };
        sb.stdin = stdin_parent;
        sb.stdout = stdout_parent;
        sb.stderr = stderr_parent;

        let candidates = exec_candidates(&p.args[0], &p.env);
        let rlimits = spec
            .limits
            .rlimits
            .iter()
            .map(|r| {
                (
                    r.resource.raw(),
                    libc::rlimit {
                        rlim_cur: r.soft,
                        rlim_max: r.hard,
                    },
                )
            })
            .collect();
        let mut exec = exec_plan(
            p,
            [
                stdin_child.as_ref().map(AsRawFd::as_raw_fd),
                stdout_child.as_ref().map(AsRawFd::as_raw_fd),
                stderr_child.as_ref().map(AsRawFd::as_raw_fd),
            ],
            rlimits,
            spec.capabilities.unwrap_or_else(CapSet::docker_default),
            &candidates,
        )?;
        // A read-only bind root is the caller's directory: nothing is made in it.
        if matches!(spec.rootfs, RootFs::Bind { readonly: true, .. }) {
            exec.cwd_dirs.clear();
        }

        let (lifeline_r, lifeline_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let (report_parent, report_child) = socketpair()?;

        let rootdir = state.rootdir.clone();
        let scratch_fd = state.scratch_fd;
        let plan = Plan {
            keep_fds: Vec::new(),
            unshare: namespaces::unshare_flags(spec.network),
            lifeline: lifeline_r.as_raw_fd(),
            report: report_child.as_raw_fd(),
            cgroup_procs: procs.iter().map(AsRawFd::as_raw_fd).collect(),
            go: [go_r.as_raw_fd(), go_w.as_raw_fd()],
            rootfs: RootfsPlan {
                rootfs_fd: rootfs_fd.as_raw_fd(),
                rootdir: cstring("state dir", rootdir.as_os_str().as_bytes())?,
                mounts: ops,
                masked: spec
                    .masked_paths
                    .iter()
                    .map(|m| cstring("masked_paths", m.as_os_str().as_bytes()))
                    .collect::<Result<_, _>>()?,
                readonly_paths: spec
                    .readonly_paths
                    .iter()
                    .map(|m| cstring("readonly_paths", m.as_os_str().as_bytes()))
                    .collect::<Result<_, _>>()?,
                readonly_root: spec.readonly_rootfs
                    || matches!(spec.rootfs, RootFs::Bind { readonly: true, .. }),
            },
            scratch_fd,
            hostname: spec.hostname.as_bytes().to_vec(),
            loopback: spec.network == crate::Network::None,
            tty,
            exec,
        };
        let mut keep: Vec<RawFd> = vec![
            plan.lifeline,
            plan.report,
            plan.go[0],
            plan.go[1],
            plan.rootfs.rootfs_fd,
        ];
        keep.extend(&plan.cgroup_procs);
        keep.extend(plan.scratch_fd);
        keep.extend(plan.exec.stdio.iter().flatten());
        keep.sort_unstable();
        let plan = Plan {
            keep_fds: keep,
            ..plan
        };

        // SAFETY: the child runs only init::intermediate, which restricts
        // itself to async-signal-safe work on the prepared plan and never
        // returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SandboxError::Syscall {
                call: "fork",
                source: Errno::last(),
            });
        }
        if pid == 0 {
            init::intermediate(&plan);
        }
        sb.intermediate = Some(pid);
        sb.lifeline = Some(lifeline_w);
        sb.report = Some(report_parent);
        // The children's ends: closing ours makes EOF mean "they are gone".
        drop((lifeline_r, go_r, go_w, report_child, procs));
        sb.rootfs_mount = Some(rootfs_fd);
        drop((stdin_child, stdout_child, stderr_child));

        let steps = Steps {
            spec,
            ops: &plan.rootfs.mounts,
            cgroups: sb
                .cgroup
                .as_ref()
                .map(|c| c.dirs.iter().map(|d| d.path.clone()).collect())
                .unwrap_or_default(),
            candidates: &candidates,
        };
        loop {
            match sb.receive()? {
                Some((msg, fd)) => match msg.kind {
                    report::MSG_INIT_PID => {
                        sb.init_pid = Some(msg.value);
                        sb.init_pidfd = fd;
                    }
                    report::MSG_PTY => sb.pty = fd.map(File::from),
                    report::MSG_STARTED => return Ok(sb),
                    report::MSG_FAILED => {
                        let err = steps.error(Step(msg.step), Errno::from_raw(msg.errno));
                        sb.reap();
                        return Err(err);
                    }
                    _ => {}
                },
                None => {
                    let status = sb.reap();
                    return Err(SandboxError::InitDied {
                        detail: format!(
                            "before the command started; intermediate process {status}"
                        ),
                    });
                }
            }
        }
    }

    fn receive(&self) -> Result<Option<(Msg, Option<OwnedFd>)>, SandboxError> {
        let Some(sock) = &self.report else {
            return Ok(None);
        };
        report::recv(sock.as_raw_fd()).map_err(|e| SandboxError::Syscall {
            call: "recvmsg(report socket)",
            source: e,
        })
    }

    /// Wait for the intermediate process; describes how it ended.
    fn reap(&mut self) -> String {
        let Some(pid) = self.intermediate.take() else {
            return "already reaped".to_owned();
        };
        let mut status = 0;
        loop {
            // SAFETY: pid is our child, not yet reaped.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r >= 0 || Errno::last() != Errno::EINTR {
                break;
            }
        }
        self.intermediate_status = Some(status);
        if libc::WIFEXITED(status) {
            format!("exited {}", libc::WEXITSTATUS(status))
        } else {
            format!("killed by signal {}", libc::WTERMSIG(status))
        }
    }

    /// The sandbox's id (its cgroup and state dir name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host pid of the sandbox's pid 1 (its namespaces are at
    /// `/proc/<pid>/ns/*`).
    pub fn pid(&self) -> Option<u32> {
        self.init_pid.map(|p| p as u32)
    }

    /// The sandbox's cgroup directories, one per hierarchy used (for
    /// [`freeze`](crate::freeze), [`usage_of`](crate::usage_of) and
    /// [`exec_in`](crate::exec_in) from another process).
    pub fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.cgroup
            .as_ref()
            .map(|c| c.dirs.iter().map(|d| d.path.clone()).collect())
            .unwrap_or_default()
    }

    /// Forge's end of the command's stdin, when [`Stdio::Piped`].
    pub fn take_stdin(&mut self) -> Option<File> {
        self.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<File> {
        self.stderr.take()
    }

    /// The master end of the terminal, when the process has one.
    pub fn take_pty(&mut self) -> Option<File> {
        self.pty.take()
    }

    /// Send `signal` to the sandbox: pid 1 forwards it to the command,
    /// except SIGKILL, which kills pid 1 and with it everything.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        let Some(fd) = &self.init_pidfd else {
            return Err(SandboxError::Signal {
                signal,
                source: Errno::ESRCH,
            });
        };
        sys::pidfd_send_signal(fd.as_fd(), signal)
            .map_err(|e| SandboxError::Signal { signal, source: e })
    }

    /// Current resource usage, from the sandbox's cgroups.
    pub fn usage(&self) -> Usage {
        self.cgroup.as_ref().map(Cgroup::usage).unwrap_or_default()
    }

    /// Wait for the command to exit. Everything else in the sandbox is
    /// killed then, its cgroups and scratch files removed.
    pub fn wait(self) -> Result<ExitStatus, SandboxError> {
        self.wait_with_usage().map(|(status, _)| status)
    }

    /// [`wait`](Sandbox::wait), plus the final usage figures.
    pub fn wait_with_usage(mut self) -> Result<(ExitStatus, Usage), SandboxError> {
        // As std's Child::wait: close the command's stdin so it is not left
        // waiting for input. Piped stdout/stderr must be read by the caller
        // (or use wait_with_output), or a chatty command blocks on a full pipe.
        drop(self.stdin.take());
        let mut status = None;
        while status.is_none() {
            match self.receive()? {
                Some((msg, _)) => match msg.kind {
                    report::MSG_EXITED => status = Some(ExitStatus::Exited(msg.value)),
                    report::MSG_SIGNALED => status = Some(ExitStatus::Signaled(msg.value)),
                    _ => {}
                },
                None => break,
            }
        }
        let how = self.reap();
        let status = match status {
            Some(s) => s,
            // Pid 1 died without reporting: killed (SIGKILL through kill(),
            // the OOM killer). The intermediate mirrors its end.
            None => match self.intermediate_status {
                Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) > 128 => {
                    ExitStatus::Signaled(libc::WEXITSTATUS(st) - 128)
                }
                _ => {
                    return Err(SandboxError::InitDied {
                        detail: format!("intermediate process {how}"),
                    })
                }
            },
        };
        let usage = self.usage();
        let status = if usage.oom_kills > 0 && status != ExitStatus::Exited(0) {
            ExitStatus::OutOfMemory
        } else {
            status
        };
        self.cleanup()?;
        Ok((status, usage))
    }

    /// Read stdout and stderr (those that are [`Stdio::Piped`]) to their
    /// end, then [`wait`](Sandbox::wait).
    pub fn wait_with_output(mut self) -> Result<Output, SandboxError> {
        drop(self.stdin.take());
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut streams: Vec<(File, &mut Vec<u8>)> = Vec::new();
        if let Some(f) = self.stdout.take() {
            streams.push((f, &mut out));
        }
        if let Some(f) = self.stderr.take() {
            streams.push((f, &mut err));
        }
        read_all(&mut streams).map_err(io_err("reading the command's output", "pipe"))?;
        drop(streams);
        let (status, usage) = self.wait_with_usage()?;
        Ok(Output {
            status,
            stdout: out,
            stderr: err,
            usage,
        })
    }

    /// Resize the terminal (the command gets SIGWINCH).
    pub fn resize_pty(&self, size: WindowSize) -> Result<(), SandboxError> {
        let Some(pty) = &self.pty else {
            return Err(SandboxError::InvalidSpec {
                what: "process.tty",
                reason: "the sandbox has no terminal (or its master was taken)".to_owned(),
            });
        };
        let ws = libc::winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ takes a pointer to winsize.
        if unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(SandboxError::Syscall {
                call: "ioctl(TIOCSWINSZ)",
                source: Errno::last(),
            });
        }
        Ok(())
    }

    /// Remove cgroups, created mountpoints and the scratch dir. The
    /// processes must be gone.
    fn cleanup(&mut self) -> Result<(), SandboxError> {
        if let Some(fd) = self.rootfs_mount.take() {
            close_in_background(fd);
        }
        let mut result = Ok(());
        if let Some(cg) = self.cgroup.take() {
            result = cg.remove();
        }
        if let Some((root, created)) = self.created.take() {
            mountpoints::remove_created(&root, &created);
        }
        if let Some(state) = self.state.take() {
            let r = state.remove();
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Drop the last reference to a rootfs mount off the caller's path.
///
/// forge keeps the rootfs mount descriptor until the sandbox has ended,
/// so that when the sandbox's mount namespace goes away the overlay's
/// superblock survives it, detached and invisible. Releasing it syncs the
/// upper dir's filesystem (overlayfs `sync_fs`), which can take
/// milliseconds; a helper thread does that while forge goes on. If forge
/// exits first, the kernel releases it with the process.
fn close_in_background(fd: OwnedFd) {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::OnceLock;
    static CLOSER: OnceLock<Option<Sender<OwnedFd>>> = OnceLock::new();
    let tx = CLOSER.get_or_init(|| {
        let (tx, rx) = channel::<OwnedFd>();
        std::thread::Builder::new()
            .name("forge-umount".to_owned())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = tx {
        // A send error returns the descriptor, dropped here, inline.
        let _ = tx.send(fd);
    }
}

/// Read every stream to EOF, interleaved with poll(2) so that neither pipe
/// can fill up and block the command while the other is being read.
fn read_all(streams: &mut [(File, &mut Vec<u8>)]) -> io::Result<()> {
    let mut open: Vec<bool> = vec![true; streams.len()];
    let mut buf = vec![0u8; 64 * 1024];
    while open.iter().any(|o| *o) {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .zip(&open)
            .map(|((f, _), o)| libc::pollfd {
                fd: if *o { f.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 || !open[i] {
                continue;
            }
            let (file, sink) = &mut streams[i];
            match file.read(&mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) => sink.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.intermediate.is_some() {
            // Closing the lifeline makes the intermediate kill pid 1; the
            // kernel then kills the rest of the namespace.
            drop(self.lifeline.take());
            self.reap();
        }
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cwd_dirs_are_the_prefixes_as_written() {
        let dirs = super::cwd_dirs(b"/a//b/./../c/");
        assert_eq!(dirs, [&b"/a"[..], b"/a//b", b"/a//b/./../c"]);
        assert!(super::cwd_dirs(b"/").is_empty());
    }
}
