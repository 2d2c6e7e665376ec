//! [`SandboxError`]: every way starting, running or cleaning up a sandbox
//! can fail, each with the path or system call it concerns.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec asks for something impossible; `what` names the field.
    #[error("invalid sandbox spec: {what}: {reason}")]
    InvalidSpec { what: &'static str, reason: String },

    /// A file operation on the host side (state dir, generated files, …).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// A system call made by forge itself (not by the sandbox's processes).
    #[error("{call}: {source}")]
    Syscall { call: &'static str, source: Errno },

    /// Mounting the overlay rootfs failed at `step`.
    #[error("mounting the overlay rootfs ({layers} lower dirs): {step}: {source}")]
    Overlay {
        step: String,
        layers: usize,
        source: Errno,
    },

    /// The kernel lacks `lowerdir+` (Linux < 6.8) and the option string is too long.
    #[error(
        "overlay of {layers} lower dirs needs {bytes} bytes of mount options, over the \
         {limit}-byte limit of mount(2); Linux 6.8 or later mounts any number of layers"
    )]
    TooManyLayers {
        layers: usize,
        bytes: usize,
        limit: usize,
    },

    /// A mountpoint could not be resolved or created in the rootfs.
    #[error("mountpoint {}: {source}", path.display())]
    Mountpoint { path: PathBuf, source: io::Error },

    /// A cgroup file could not be created, written or removed.
    #[error("cgroup {}: {source}", path.display())]
    Cgroup { path: PathBuf, source: io::Error },

    /// A limit was asked for but no cgroup hierarchy offers its controller.
    #[error("cannot limit {limit}: no mounted cgroup hierarchy has the {controller} controller")]
    MissingController {
        limit: &'static str,
        controller: &'static str,
    },

    /// An rlimit's hard value is above the caller's own hard limit, and
    /// raising a hard limit needs CAP_SYS_RESOURCE, which forge lacks.
    #[error(
        "{resource}: requested hard limit {requested} is above the current hard limit {hard} \
         (raising it needs CAP_SYS_RESOURCE)"
    )]
    RlimitAboveHard {
        resource: &'static str,
        requested: u64,
        hard: u64,
    },

    /// A step inside the sandbox failed before the command started.
    #[error("sandbox setup: {step}: {source}")]
    Setup { step: String, source: Errno },

    /// The command was not found (docker/shells exit 127).
    #[error("{command}: command not found")]
    CommandNotFound { command: String },

    /// The command exists but cannot be executed (docker/shells exit 126):
    /// permission denied, not an executable format, a directory, …
    #[error("{command}: cannot execute: {source}")]
    CommandNotExecutable { command: String, source: Errno },

    /// The sandbox's processes vanished without reporting; `detail` says what forge saw.
    #[error("sandbox init died without reporting: {detail}")]
    InitDied { detail: String },

    /// A host port for forwarding cannot be bound (in use, or not an
    /// address of this host).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    /// The signal cannot be delivered to the sandbox.
    #[error("signal {signal}: {source}")]
    Signal { signal: i32, source: Errno },
}

impl SandboxError {
    /// The exit code docker and POSIX shells use for this error, when it is
    /// one they define: 127 for a command not found, 126 for one that
    /// cannot be executed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            SandboxError::CommandNotFound { .. } => Some(127),
            SandboxError::CommandNotExecutable { .. } => Some(126),
            _ => None,
        }
    }
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> SandboxError {
    let path = path.into();
    move |source| SandboxError::Io { op, path, source }
}
