//! What to run and how: [`SandboxSpec`] and the types it is made of.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use crate::capabilities::CapSet;

/// The root filesystem the process sees as `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootFs {
    /// An overlay of `lowerdirs` (top-most first). With `upperdir` and
    /// `workdir` the root is writable and every change lands in `upperdir`;
    /// without them it is a read-only view. Mounted with docker overlay2's
    /// options that keep the upper dir a self-contained diff: `index=off`,
    /// `redirect_dir=off`, `metacopy=off`, `xino=off`.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upperdir: Option<PathBuf>,
        workdir: Option<PathBuf>,
    },
    /// A directory bind-mounted as the root. Mountpoints the sandbox needs
    /// and the directory lacks are created in it and removed after the run
    /// (when still empty).
    Bind { path: PathBuf, readonly: bool },
}

/// How the process's standard stream is connected.
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// The caller's own descriptor (0, 1 or 2).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe whose other end the [`Sandbox`](crate::Sandbox) handle gives out.
    Piped,
    /// This descriptor (a file, a socket, a pipe end).
    Fd(Arc<OwnedFd>),
}

/// A terminal size, for [`ProcessSpec::tty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// The command and the credentials it runs with.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// `args[0]` is looked up in the `PATH` of `env` (docker's default
    /// `PATH` when `env` has none) unless it contains a `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, passed as they are.
    pub env: Vec<String>,
    /// Absolute path inside the rootfs; it must exist.
    pub cwd: PathBuf,
    /// Numeric ids: name resolution is the caller's job (see [`crate::users`]).
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// Run on a new pseudo-terminal of the sandbox's own `/dev/pts`; its
    /// master end is handed out by [`Sandbox::take_pty`](crate::Sandbox::take_pty).
    /// When set, stdin/stdout/stderr are all the terminal.
    pub tty: Option<WindowSize>,
    /// `PR_SET_NO_NEW_PRIVS` before `execve`: setuid bits and file capabilities
    /// give nothing. On by default; docker's containers and BuildKit's RUN
    /// steps leave it off (the OCI spec's `noNewPrivileges`, default false).
    pub no_new_privileges: bool,
}

impl ProcessSpec {
    /// `args` as root in `/`, with docker's default `PATH`, umask 022.
    pub fn new<I, S>(args: I) -> ProcessSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProcessSpec {
            args: args.into_iter().map(Into::into).collect(),
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: PathBuf::from("/"),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            umask: 0o022,
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            tty: None,
            no_new_privileges: true,
        }
    }
}

/// Docker's default `PATH` for containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (docker's `--network host`, BuildKit's default for RUN).
    #[default]
    Host,
    /// A new network namespace with only `lo`, brought up.
    None,
}

/// An extra mount inside the rootfs. Targets are created when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// Bind mount of a host file or directory (recursive).
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A fresh tmpfs, `nosuid,nodev`.
    Tmpfs {
        target: PathBuf,
        /// Bytes; the kernel's default (half of RAM) when `None`.
        size: Option<u64>,
        mode: u32,
    },
}

impl MountSpec {
    pub fn target(&self) -> &std::path::Path {
        match self {
            MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target,
        }
    }
}

/// Where `/etc/resolv.conf` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResolvConf {
    /// The host's `/etc/resolv.conf`. In a new network namespace its
    /// loopback nameservers cannot be reached and are removed, and when none
    /// is left docker's fallback (8.8.8.8, 8.8.4.4) is used. With the host's
    /// network the file is kept as it is (BuildKit does the same), so a local
    /// resolver such as systemd-resolved's 127.0.0.53 keeps working.
    #[default]
    Host,
    /// Exactly these contents.
    Contents(String),
}

/// A resource limit (`setrlimit(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RlimitResource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl RlimitResource {
    /// Docker's `--ulimit` name (`nofile`, `nproc`, …).
    pub fn from_docker_name(name: &str) -> Option<RlimitResource> {
        use RlimitResource::*;
        Some(match name {
            "as" => As,
            "core" => Core,
            "cpu" => Cpu,
            "data" => Data,
            "fsize" => Fsize,
            "locks" => Locks,
            "memlock" => Memlock,
            "msgqueue" => Msgqueue,
            "nice" => Nice,
            "nofile" => Nofile,
            "nproc" => Nproc,
            "rss" => Rss,
            "rtprio" => Rtprio,
            "rttime" => Rttime,
            "sigpending" => Sigpending,
            "stack" => Stack,
            _ => return None,
        })
    }

    /// `RLIMIT_…` name, for messages.
    pub fn name(self) -> &'static str {
        use RlimitResource::*;
        match self {
            As => "RLIMIT_AS",
            Core => "RLIMIT_CORE",
            Cpu => "RLIMIT_CPU",
            Data => "RLIMIT_DATA",
            Fsize => "RLIMIT_FSIZE",
            Locks => "RLIMIT_LOCKS",
            Memlock => "RLIMIT_MEMLOCK",
            Msgqueue => "RLIMIT_MSGQUEUE",
            Nice => "RLIMIT_NICE",
            Nofile => "RLIMIT_NOFILE",
            Nproc => "RLIMIT_NPROC",
            Rss => "RLIMIT_RSS",
            Rtprio => "RLIMIT_RTPRIO",
            Rttime => "RLIMIT_RTTIME",
            Sigpending => "RLIMIT_SIGPENDING",
            Stack => "RLIMIT_STACK",
        }
    }

    pub(crate) fn raw(self) -> libc::__rlimit_resource_t {
        use RlimitResource::*;
        match self {
            As => libc::RLIMIT_AS,
            Core => libc::RLIMIT_CORE,
            Cpu => libc::RLIMIT_CPU,
            Data => libc::RLIMIT_DATA,
            Fsize => libc::RLIMIT_FSIZE,
            Locks => libc::RLIMIT_LOCKS,
            Memlock => libc::RLIMIT_MEMLOCK,
            Msgqueue => libc::RLIMIT_MSGQUEUE,
            Nice => libc::RLIMIT_NICE,
            Nofile => libc::RLIMIT_NOFILE,
            Nproc => libc::RLIMIT_NPROC,
            Rss => libc::RLIMIT_RSS,
            Rtprio => libc::RLIMIT_RTPRIO,
            Rttime => libc::RLIMIT_RTTIME,
            Sigpending => libc::RLIMIT_SIGPENDING,
            Stack => libc::RLIMIT_STACK,
        }
    }
}

/// `soft`/`hard` of one resource; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

/// cgroup limits and rlimits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes (`memory.max` / `memory.limit_in_bytes`).
    pub memory: Option<u64>,
    /// Memory plus swap in bytes, docker's `--memory-swap`. With a memory
    /// limit and no value here the sandbox gets no swap, so that an
    /// out-of-memory step fails promptly instead of thrashing.
    pub memory_swap: Option<u64>,
    /// CPU quota in CPUs (`1.5` = 150 ms per 100 ms period).
    pub cpus: Option<f64>,
    /// Maximum number of tasks (processes and threads) in the sandbox.
    pub pids: Option<u64>,
    /// Put the sandbox in a cgroup v1 freezer hierarchy too, so that
    /// [`freeze`](crate::freeze) can pause it (a v2 cgroup can always be
    /// frozen). Off by default: every extra v1 hierarchy is one more cgroup
    /// attach on each start, which a build step does not need.
    pub freezer: bool,
    /// Set in the command before `execve`. A hard limit above the caller's
    /// own is refused with [`SandboxError::RlimitAboveHard`](crate::SandboxError::RlimitAboveHard),
    /// never clamped.
    pub rlimits: Vec<Rlimit>,
}

/// runc's default masked paths: files get `/dev/null` mounted over them,
/// directories an empty read-only tmpfs.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything [`run`](crate::run) and [`Sandbox::spawn`](crate::Sandbox::spawn) need.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub rootfs: RootFs,
    pub process: ProcessSpec,
    pub hostname: String,
    pub network: Network,
    /// Mounted in order of target depth (shallowest first; stable), after
    /// `/proc`, `/dev` and `/sys` and together with the generated `/etc` files.
    pub mounts: Vec<MountSpec>,
    /// Extra `/etc/hosts` entries, after the generated localhost lines.
    pub hosts: Vec<(String, IpAddr)>,
    pub resolv_conf: ResolvConf,
    pub limits: Limits,
    /// `None`: docker's default set.
    pub capabilities: Option<CapSet>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    /// Scratch space: the generated `/etc` files, the root mountpoint and a
    /// lock per sandbox, under `<state_dir>/<id>/`. Removed after the run;
    /// [`cleanup_stale`](crate::cleanup_stale) removes what a killed forge left.
    pub state_dir: PathBuf,
    /// Sandboxes go in cgroup `<cgroup_parent>/<id>` of every hierarchy used.
    pub cgroup_parent: String,
    /// `false`: no cgroup of its own (the sandbox stays in the caller's), so no
    /// limits, usage figures or freezing; its processes are still contained by the
    /// pid namespace, which the kernel empties when pid 1 dies. A build step without
    /// limits needs no more, and skips the cgroup attach, which on cgroup v1 waits
    /// for an RCU grace period (~10 ms) per start.
    pub use_cgroup: bool,
    /// Mount an overlay's upper dir `volatile`: overlayfs then never syncs it, not
    /// even for the process's own `fsync`, and after a host crash the upper dir is
    /// to be thrown away. For callers that sync and discard it themselves (a build
    /// step, whose commit calls syncfs before the snapshot is renamed into place);
    /// off by default, so that a container's writes are as durable as docker's.
    pub volatile_upper: bool,
    /// Create the missing mountpoints of [`Self::mounts`] in the overlay's upper
    /// dir, as docker does for a container (they show in `docker diff` and go
    /// into `docker commit`), instead of on a layer of their own that leaves the
    /// upper dir untouched (BuildKit's rule for build steps, the default).
    pub mountpoints_in_upper: bool,
    /// A unique name; generated when `None`. `[A-Za-z0-9_.-]`, at most 64 bytes.
    pub id: Option<String>,
    /// The root is remounted read-only once set up (OCI's `root.readonly`, docker's
    /// `--read-only`): the writable overlay still receives a missing working
    /// directory and the mountpoints, the process writes nothing.
    pub readonly_rootfs: bool,
}

impl SandboxSpec {
    /// runc's defaults around `process`: hostname `sandbox`, host network,
    /// docker's capabilities, runc's masked and read-only paths, state under
    /// `/run/forge/sandbox`, cgroups under `forge/`.
    pub fn new(rootfs: RootFs, process: ProcessSpec) -> SandboxSpec {
        SandboxSpec {
            rootfs,
            process,
            hostname: "sandbox".to_owned(),
            network: Network::Host,
            mounts: Vec::new(),
            hosts: Vec::new(),
            resolv_conf: ResolvConf::Host,
            limits: Limits::default(),
            capabilities: None,
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            state_dir: PathBuf::from("/run/forge/sandbox"),
            cgroup_parent: "forge".to_owned(),
            use_cgroup: true,
            volatile_upper: false,
            mountpoints_in_upper: false,
            id: None,
            readonly_rootfs: false,
        }
    }
}
