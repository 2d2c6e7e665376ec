//! Run one process isolated like a container, on the mounts it is handed.
//!
//! forge-sandbox knows nothing of images, layers or Dockerfiles. A
//! [`SandboxSpec`] names a [`RootFs`] (an overlay of directories, or a bind),
//! the [`ProcessSpec`] to run and the sandbox around it (hostname,
//! [`Network`], extra [`MountSpec`]s, `/etc/hosts` entries, [`Limits`],
//! [`CapSet`], masked and read-only paths). [`run`] runs it to completion;
//! [`Sandbox::spawn`] starts it and returns a handle to signal it, read its
//! pipes or terminal, read its [`Usage`] and [`wait`](Sandbox::wait) for its
//! [`ExitStatus`]. [`users`] resolves `USER` strings against a rootfs
//! (read through a [`RootFsView`]), and [`cleanup_stale`] removes what a
//! killed forge left behind.
//!
//! For long-lived sandboxes (containers), from any process: [`exec_in`]
//! runs another process in a running sandbox's namespaces and cgroups,
//! [`freeze`] pauses it (cgroup freezer), [`usage_of`] reads its cgroup
//! figures, and a [`PortForwarder`] forwards host TCP ports into its
//! network namespace.
//!
//! The semantics are runc's default spec with a pid 1 of our own:
//! new mount, pid, uts, ipc and cgroup namespaces (and network, on
//! request), docker's default capabilities, `no_new_privs`, runc's masked
//! and read-only paths, cgroup v1 or v2 limits.
//!
//! # Order of operations
//!
//! In forge (any thread; nothing below touches process-wide state):
//! validate the spec, refuse rlimits above the hard limit, take the lock
//! `<state_dir>/<id>.lock`, write the generated `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname` into a scratch directory (on a
//! tmpfs private to the process and mounted detached; see module `state`),
//! resolve the mount targets in a read-only view of the rootfs and put the
//! missing ones on a layer of their own (module `rootfs::mountpoints`),
//! mount the rootfs *detached* (`fsopen`/`fsmount` with one `lowerdir+` per
//! layer, or `open_tree` for a bind; module `overlay`), create the cgroups
//! and write the limits, prepare every string, pointer array and
//! descriptor the children need, then `fork()`.
//!
//! In the intermediate process (module `init`): close every descriptor not
//! needed, block all signals, `unshare(NEWNS|NEWUTS|NEWIPC|NEWPID[|NEWNET])`,
//! fork pid 1, send its pidfd to forge, write its pid into every
//! `cgroup.procs`, tell it to go on, then wait for it, killing it if
//! forge's lifeline pipe reaches EOF.
//!
//! In pid 1: `PR_SET_PDEATHSIG`, `mount --make-rprivate /`, attach the
//! rootfs, mount `/proc`, `/dev` (+ nodes, `pts`, `shm`, `mqueue`, links),
//! `/sys`, the `/etc` files and the caller's mounts (module `rootfs`),
//! `sethostname`, bring `lo` up in a new netns, `pivot_root`, masked and
//! read-only paths, the terminal if any, wait for the cgroups, unshare the
//! cgroup namespace, fork the command, report its start, then reap
//! zombies and forward signals until it exits, report its status and exit
//! — which makes the kernel kill whatever is left in the namespace.
//!
//! In the command: default signal dispositions and mask, `setsid`,
//! stdio, rlimits, `PR_SET_NO_NEW_PRIVS`, bounding set, `PR_SET_KEEPCAPS`,
//! `setgroups`/`setresgid`/`setresuid`, `capset`, ambient set cleared,
//! `chdir`, umask, `execve` along `PATH`. A failure anywhere goes back as
//! (step, errno) and becomes a [`SandboxError`] naming the step and path;
//! a command not found or not executable becomes
//! [`SandboxError::CommandNotFound`] / [`SandboxError::CommandNotExecutable`]
//! (exit codes 127 / 126).
//!
//! # Leaks
//!
//! Mounts exist only detached or in the sandbox's mount namespace and die
//! with it. (forge keeps its own reference to the rootfs mount until the
//! run is over and drops it on a helper thread: releasing an overlay with
//! an upper dir syncs the upper filesystem, which need not delay the
//! caller; the detached superblock is in no mount table meanwhile.)
//!
//! Processes die with forge: pid 1 has `PR_SET_PDEATHSIG(SIGKILL)` towards
//! the intermediate, which kills pid 1 when forge's lifeline pipe closes
//! (forge exited, was killed, or dropped the [`Sandbox`]); the kernel then
//! kills the rest of the pid namespace. The lifeline is a pipe rather than
//! a death signal on the intermediate because `PR_SET_PDEATHSIG` fires when
//! the forking *thread* exits, and a handle may outlive the thread that
//! spawned it.
//!
//! Cgroups, the lock file and scratch files are removed after the run,
//! and by [`cleanup_stale`] when forge was killed before it could.
//!
//! # Requirements
//!
//! Root (no user namespace yet), Linux ≥ 5.12 (`openat2`, `close_range`,
//! pidfds, the new mount API); ≥ 6.8 for overlays of more layers than fit
//! in one page of mount options (`lowerdir+`); ≥ 6.15 for the private
//! tmpfs scratch (older kernels get an on-disk scratch dir).

pub mod capabilities;
mod cgroups;
mod error;
mod etc;
mod forward;
mod init;
mod join;
mod namespaces;
mod overlay;
mod report;
mod rootfs;
mod sandbox;
mod spec;
mod state;
mod sys;
pub mod users;
mod view;

pub use capabilities::{CapSet, Capability};
pub use cgroups::control::{freeze, usage_of};
pub use cgroups::Usage;
pub use error::SandboxError;
pub use forward::{bind_host_port, PortForwarder, PortMapping};
pub use join::{exec_in, Joined};
pub use sandbox::{run, ExitStatus, Output, Sandbox};
pub use spec::{
    Limits, MountSpec, Network, ProcessSpec, ResolvConf, Rlimit, RlimitResource, RootFs,
    SandboxSpec, Stdio, WindowSize, DEFAULT_MASKED_PATHS, DEFAULT_PATH, DEFAULT_READONLY_PATHS,
};
#[doc(hidden)]
pub use state::force_disk_scratch;
pub use state::{cleanup_stale, Cleanup};
pub use view::RootFsView;
