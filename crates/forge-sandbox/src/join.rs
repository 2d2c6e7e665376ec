//! [`exec_in`]: run another process inside a running sandbox, as
//! `docker exec` / `nsenter` do.
//!
//! ```text
//! forge ──fork──▶ joiner ──fork──▶ command
//!                 joins cgroups,    (in the sandbox's pid namespace)
//!                 setns ×6,         rlimits, caps, uid, execve
//!                 opens the pty     (the same code as the sandbox's command)
//!                 waits, mirrors
//!                 the exit status
//! ```
//!
//! The namespace descriptors and `cgroup.procs` files are opened before
//! forking, from `/proc/<pid 1>/ns/*`. setns(2) into a mount namespace
//! needs a process that shares its filesystem attributes with no other
//! thread, and a new pid namespace only applies to children: hence the
//! joiner, single-threaded after fork, and its own fork. The mount
//! namespace is joined last, as nsenter(1) does, which also resets root
//! and working directory to the sandbox's (pivoted) root.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;

use crate::capabilities::CapSet;
use crate::error::{io_err, SandboxError};
use crate::init::{self, ExecPlan};
use crate::report::{self, step, Msg, Step};
use crate::sandbox::{exec_candidates, exec_plan, pipe, socketpair, stdio_fds, ExitStatus};
use crate::spec::{ProcessSpec, WindowSize};
use crate::sys;

/// The namespaces joined, in order (mount last).
const NAMESPACES: [(&str, libc::c_int); 6] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
];

/// A process started by [`exec_in`].
#[derive(Debug)]
pub struct Joined {
    joiner: Option<libc::pid_t>,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    pty: Option<File>,
}

/// Start `process` in the namespaces and cgroups of the running sandbox
/// whose pid 1 is `pid` (host pid) and whose cgroup directories are
/// `cgroups`. Returns once the command runs (`execve` succeeded) or failed
/// to start ([`SandboxError::CommandNotFound`] and
/// [`SandboxError::CommandNotExecutable`] as for a sandbox).
pub fn exec_in(
    pid: u32,
    cgroups: &[PathBuf],
    process: &ProcessSpec,
) -> Result<Joined, SandboxError> {
    if process.args.is_empty() || process.args[0].is_empty() {
        return Err(SandboxError::InvalidSpec {
            what: "process.args",
            reason: "no command".to_owned(),
        });
    }
    let mut ns_fds: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let f = File::open(&path).map_err(io_err("opening the namespace", &path))?;
        ns_fds.push((OwnedFd::from(f), flag));
    }
    let mut procs: Vec<OwnedFd> = Vec::new();
    for dir in cgroups {
        let p = dir.join("cgroup.procs");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|source| SandboxError::Cgroup {
                path: p.clone(),
                source,
            })?;
        procs.push(OwnedFd::from(f));
    }
    let tty = process.tty;
    let (stdin_child, stdin_parent) = match tty {
        Some(_) => (None, None),
        None => stdio_fds(&process.stdin, true)?,
    };
    let (stdout_child, stdout_parent) = match tty {
        Some(_) => (None, None),
        None => stdio_fds(&process.stdout, false)?,
    };
    let (stderr_child, stderr_parent) = match tty {
        Some(_) => (None, None),
        None => stdio_fds(&process.stderr, false)?,
    };
    let candidates = exec_candidates(&process.args[0], &process.env);
    let exec = exec_plan(
        process,
        [
            stdin_child.as_ref().map(AsRawFd::as_raw_fd),
            stdout_child.as_ref().map(AsRawFd::as_raw_fd),
            stderr_child.as_ref().map(AsRawFd::as_raw_fd),
        ],
        Vec::new(),
        CapSet::docker_default(),
        &candidates,
    )?;
    let (exec_r, exec_w) = pipe()?;
    let (pty_parent, pty_child) = socketpair()?;
    let ns: Vec<(RawFd, libc::c_int)> = ns_fds.iter().map(|(f, n)| (f.as_raw_fd(), *n)).collect();
    let procs_raw: Vec<RawFd> = procs.iter().map(AsRawFd::as_raw_fd).collect();

    // SAFETY: the child runs only `joiner`, which does system calls on the
    // data prepared above and never returns.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(SandboxError::Syscall {
            call: "fork",
            source: Errno::last(),
        });
    }
    if child == 0 {
        drop(exec_r);
        joiner(
            &ns,
            &procs_raw,
            &exec,
            exec_w.as_raw_fd(),
            pty_child.as_raw_fd(),
            tty,
        );
    }
    drop((exec_w, pty_child, ns_fds, procs));
    drop((stdin_child, stdout_child, stderr_child));
    let mut joined = Joined {
        joiner: Some(child),
        stdin: stdin_parent,
        stdout: stdout_parent,
        stderr: stderr_parent,
        pty: None,
    };
    if tty.is_some() {
        if let Ok(Some((_, Some(fd)))) = report::recv(pty_parent.as_raw_fd()) {
            joined.pty = Some(File::from(fd));
        }
    }
    let mut buf = [0u8; 8];
    let n = sys::read_full(exec_r.as_raw_fd(), &mut buf).unwrap_or(0);
    if n == 8 {
        let s = Step(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]));
        let e = Errno::from_raw(i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]));
        let _ = joined.reap();
        return Err(describe(s, e, process, &candidates));
    }
    Ok(joined)
}

fn describe(s: Step, e: Errno, p: &ProcessSpec, candidates: &[String]) -> SandboxError {
    let step = match s.kind() {
        step::EXEC => {
            return if e == Errno::ENOENT || e == Errno::ENOTDIR {
                SandboxError::CommandNotFound {
                    command: p.args[0].clone(),
                }
            } else {
                SandboxError::CommandNotExecutable {
                    command: candidates
                        .get(s.index())
                        .cloned()
                        .unwrap_or_else(|| p.args[0].clone()),
                    source: e,
                }
            };
        }
        step::UNSHARE => format!(
            "setns({} namespace)",
            NAMESPACES.get(s.index()).map_or("?", |(n, _)| n)
        ),
        step::JOIN_CGROUP => "joining the sandbox's cgroups".to_owned(),
        step::PTY => "allocating the terminal".to_owned(),
        step::FORK_COMMAND => "forking the command".to_owned(),
        step::SETUID => format!("setuid({})", p.uid),
        step::SETGID => format!("setgid({})", p.gid),
        step::CHDIR => format!("chdir({})", p.cwd.display()),
        other => format!("step {other}"),
    };
    SandboxError::Setup { step, source: e }
}

fn fail(pipe: RawFd, s: Step, e: Errno) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&s.0.to_ne_bytes());
    buf[4..].copy_from_slice(&(e as i32).to_ne_bytes());
    let _ = sys::write_all(pipe, &buf);
    // SAFETY: _exit skips forge's atexit handlers.
    unsafe { libc::_exit(125) }
}

/// The joiner process: forked from forge, never returns.
fn joiner(
    ns: &[(RawFd, libc::c_int)],
    procs: &[RawFd],
    exec: &ExecPlan,
    exec_w: RawFd,
    pty_sock: RawFd,
    tty: Option<WindowSize>,
) -> ! {
    // Into the cgroups first, while /proc and cgroupfs paths are still
    // the host's (the descriptors are open anyway).
    let mut digits = [0u8; 20];
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let text = sys::format_u64(me as u64, &mut digits);
    for &fd in procs {
        if let Err(e) = sys::write_all(fd, text) {
            fail(exec_w, Step::new(step::JOIN_CGROUP, 0), e);
        }
    }
    for (i, &(fd, flag)) in ns.iter().enumerate() {
        // SAFETY: setns on a namespace descriptor we opened.
        if unsafe { libc::setns(fd, flag) } < 0 {
            fail(exec_w, Step::new(step::UNSHARE, i), Errno::last());
        }
    }
    let slave = match tty {
        Some(size) => match open_pty(pty_sock, size) {
            Ok(fd) => Some(fd),
            Err(e) => fail(exec_w, Step::new(step::PTY, 0), e),
        },
        None => None,
    };
    // SAFETY: this process is single-threaded.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail(exec_w, Step::new(step::FORK_COMMAND, 0), Errno::last());
    }
    if child == 0 {
        init::command(exec, exec_w, slave);
    }
    // SAFETY: descriptors of this process it no longer needs; the command
    // has its own copies.
    unsafe {
        libc::close(exec_w);
        if let Some(fd) = slave {
            libc::close(fd);
        }
        for fd in exec.stdio.iter().flatten() {
            libc::close(*fd);
        }
    }
    let mut status = 0;
    // SAFETY: child is ours.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: as above.
    unsafe { libc::_exit(code) }
}

/// A terminal on the sandbox's own devpts (the joiner is in its mount
/// namespace by now): the master goes to forge, the slave is returned.
fn open_pty(sock: RawFd, size: WindowSize) -> Result<RawFd, Errno> {
    let (master, slave) = init::new_pty(size)?;
    let msg = Msg {
        kind: report::MSG_PTY,
        ..Msg::default()
    };
    report::send(sock, &msg, Some(master))?;
    // SAFETY: our descriptor, sent.
    unsafe { libc::close(master) };
    Ok(slave)
}

impl Joined {
    pub fn take_stdin(&mut self) -> Option<File> {
        self.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<File> {
        self.stderr.take()
    }

    /// The terminal's master end, when [`ProcessSpec::tty`] was set.
    pub fn take_pty(&mut self) -> Option<File> {
        self.pty.take()
    }

    fn reap(&mut self) -> Option<libc::c_int> {
        let pid = self.joiner.take()?;
        let mut status = 0;
        // SAFETY: pid is our unreaped child.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
        Some(status)
    }

    /// Wait for the command to exit.
    pub fn wait(mut self) -> Result<ExitStatus, SandboxError> {
        drop(self.stdin.take());
        let status = self.reap().ok_or(SandboxError::InitDied {
            detail: "the exec'd process was already reaped".to_owned(),
        })?;
        Ok(if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            if code > 128 {
                ExitStatus::Signaled(code - 128)
            } else {
                ExitStatus::Exited(code)
            }
        } else {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        })
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        // The command keeps running (as a `docker exec` whose client went
        // away); only the joiner is reaped, once it exits.
        if let Some(pid) = self.joiner.take() {
            std::thread::spawn(move || {
                let mut status = 0;
                // SAFETY: pid is our unreaped child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            });
        }
    }
}
