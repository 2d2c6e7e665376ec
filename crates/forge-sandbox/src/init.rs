//! The sandbox's three processes, all forked from forge with everything
//! they need prepared beforehand in a [`Plan`].
//!
//! ```text
//! forge ──fork──▶ intermediate ──fork──▶ pid 1 (init) ──fork──▶ command (pid 2)
//!                 unshare(ns)            mounts, pivot_root     rlimits, caps, uid
//!                 joins init to cgroups  reaps, forwards        execve
//!                 kills init if forge    signals, reports
//!                 goes away              the exit status
//! ```
//!
//! These run between `fork()` and `execve()`/`_exit()` of a copy of a
//! multi-threaded program, where only the forking thread exists and any
//! lock another thread held stays locked forever. So: no `std::env`, no
//! stdout/stderr, no `Mutex`, no panics (a panic would print). glibc's
//! `fork()` resets malloc's locks, so allocation is possible, but the
//! per-step work below is system calls on prepared data; failures travel
//! to forge as a (step, errno) pair (see [`crate::report`]).

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use crate::report::{self, step, Msg, Step};
use crate::rootfs::{self, RootfsPlan};
use crate::spec::WindowSize;
use crate::sys;

/// What the command process does before `execve`.
pub(crate) struct ExecPlan {
    /// Descriptors to become 0, 1, 2 (`None`: keep forge's own).
    pub stdio: [Option<RawFd>; 3],
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    pub no_new_privileges: bool,
    pub caps: u64,
    pub last_cap: u8,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub cwd: CString,
    /// `cwd` and each of its ancestors as written, made (0755, root's) in the
    /// new root when missing, symlinks followed inside it, as runc does.
    pub cwd_dirs: Vec<CString>,
    pub umask: libc::mode_t,
    /// Paths to try in order (the `PATH` search, done in advance).
    pub candidates: Vec<CString>,
    /// NULL-terminated pointer arrays into `_args` and `_env`.
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub _args: Vec<CString>,
    pub _env: Vec<CString>,
}

impl ExecPlan {
    pub fn set_args(&mut self, args: Vec<CString>, env: Vec<CString>) {
        self._args = args;
        self._env = env;
        self.argv = self._args.iter().map(|a| a.as_ptr()).collect();
        self.argv.push(std::ptr::null());
        self.envp = self._env.iter().map(|a| a.as_ptr()).collect();
        self.envp.push(std::ptr::null());
    }
}

/// Everything the three processes need, prepared by forge before forking.
pub(crate) struct Plan {
    /// Descriptors ≥ 3 the intermediate keeps; it closes every other one,
    /// including whatever other threads of forge had open at fork time.
    pub keep_fds: Vec<RawFd>,
    pub unshare: CloneFlags,
    /// Read end of a pipe only forge holds the write end of: EOF means
    /// forge (or its handle) is gone, and the sandbox must die.
    pub lifeline: RawFd,
    pub report: RawFd,
    /// Opened `cgroup.procs` files, one per hierarchy.
    pub cgroup_procs: Vec<RawFd>,
    /// Pipe intermediate → pid 1: one byte once pid 1 is in its cgroups.
    pub go: [RawFd; 2],
    pub rootfs: RootfsPlan,
    /// The private tmpfs holding the bind sources, closed once mounted.
    pub scratch_fd: Option<RawFd>,
    pub hostname: Vec<u8>,
    pub loopback: bool,
    pub tty: Option<WindowSize>,
    pub exec: ExecPlan,
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong
    // to forge's copy of the program.
    unsafe { libc::_exit(code) }
}

fn close(fd: RawFd) {
    // SAFETY: closing a descriptor this process owns and does not use again.
    unsafe { libc::close(fd) };
}

fn fail(report: RawFd, step: Step, e: Errno) -> ! {
    let _ = report::send(report, &Msg::failed(step, e), None);
    exit(1)
}

/// Close every descriptor ≥ 3 not in `keep` (sorted).
fn close_other_fds(keep: &[RawFd]) {
    let mut first: libc::c_uint = 3;
    for &fd in keep {
        if fd < 3 {
            continue;
        }
        let fd = fd as libc::c_uint;
        if fd > first {
            let _ = sys::close_range(first, fd - 1);
        }
        first = fd + 1;
    }
    let _ = sys::close_range(first, libc::c_uint::MAX);
}

fn sigset_all() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

/// The intermediate process: forked from forge, never returns.
pub(crate) fn intermediate(plan: &Plan) -> ! {
    close_other_fds(&plan.keep_fds);
    // SAFETY: prctl with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"forge-sandbox".as_ptr(), 0, 0, 0) };
    // Block every signal before pid 1 is forked, so it inherits the mask:
    // pid 1 of a namespace drops signals it has no handler for, but keeps
    // blocked ones pending for its sigwaitinfo loop (kernel sig_ignored()).
    let all = sigset_all();
    // SAFETY: valid set; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };

    // New namespaces for the children: the pid namespace applies to the
    // next fork only, which makes pid 1 (runc's nsexec does the same dance).
    if let Err(e) = nix::sched::unshare(plan.unshare) {
        fail(plan.report, Step::new(step::UNSHARE, 0), e);
    }
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let self_pidfd = match sys::pidfd_open(me) {
        Ok(fd) => fd,
        Err(e) => fail(plan.report, Step::new(step::FORK_INIT, 0), e),
    };
    // SAFETY: this process is single-threaded: fork is as safe as it gets.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(plan.report, Step::new(step::FORK_INIT, 0), Errno::last());
    }
    if pid == 0 {
        init(plan, self_pidfd.as_raw_fd());
    }
    // What pid 1 needs and the intermediate does not.
    drop(self_pidfd);
    close(plan.go[0]);
    close(plan.rootfs.rootfs_fd);
    if let Some(fd) = plan.scratch_fd {
        close(fd);
    }
    for fd in plan.exec.stdio.iter().flatten() {
        close(*fd);
    }

    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // SAFETY: pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            fail(plan.report, Step::new(step::FORK_INIT, 0), e);
        }
    };
    let hello = Msg {
        kind: report::MSG_INIT_PID,
        value: pid,
        ..Msg::default()
    };
    let _ = report::send(plan.report, &hello, Some(pidfd.as_raw_fd()));

    // Put pid 1 into its cgroups before it can fork the command, so every
    // process of the sandbox is limited and accounted from the start.
    let mut digits = [0u8; 20];
    let pid_text = sys::format_u64(pid as u64, &mut digits);
    for (i, &fd) in plan.cgroup_procs.iter().enumerate() {
        if let Err(e) = sys::write_all(fd, pid_text) {
            // SAFETY: pid is our unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            fail(plan.report, Step::new(step::JOIN_CGROUP, i), e);
        }
        close(fd);
    }
    let _ = sys::write_all(plan.go[1], b"g");
    close(plan.go[1]);

    // Wait for pid 1 to exit, or for forge to go away (lifeline EOF), in
    // which case pid 1 is killed and the kernel kills its whole namespace.
    let mut fds = [
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: plan.lifeline,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: fds is a valid array of two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 {
            // SAFETY: pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            fds[1].fd = -1;
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    let mut status = 0;
    // SAFETY: pid is our child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
    if libc::WIFEXITED(status) {
        exit(libc::WEXITSTATUS(status));
    }
    exit(128 + libc::WTERMSIG(status))
}

/// Pid 1 of the sandbox.
fn init(plan: &Plan, parent_pidfd: RawFd) -> ! {
    let report = plan.report;
    // SAFETY: prctl with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"forge-init".as_ptr(), 0, 0, 0) };
    // Die with the intermediate (and so with forge). The flag is set after
    // fork, so check the parent did not already go in between: its pidfd
    // polls readable once it has exited.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut pfd = libc::pollfd {
        fd: parent_pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
        fail(report, Step::new(step::PARENT_ALIVE, 0), Errno::ESRCH);
    }
    close(parent_pidfd);
    close(plan.go[1]);
    close(plan.lifeline);
    for &fd in &plan.cgroup_procs {
        close(fd);
    }
    // Device nodes and mountpoints get exactly the modes asked for.
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };

    let root = match rootfs::setup(&plan.rootfs) {
        Ok(fd) => fd,
        Err((s, e)) => fail(report, s, e),
    };
    drop(root);
    // The bind sources are mounted: the scratch tmpfs (which holds every
    // sandbox's files) has no business staying open in pid 1.
    if let Some(fd) = plan.scratch_fd {
        close(fd);
    }
    if let Err(e) = crate::namespaces::set_hostname(&plan.hostname) {
        fail(report, Step::new(step::HOSTNAME, 0), e);
    }
    if plan.loopback {
        if let Err(e) = crate::namespaces::loopback_up() {
            fail(report, Step::new(step::LOOPBACK, 0), e);
        }
    }
    if let Err((s, e)) = rootfs::pivot_root(&plan.rootfs.rootdir) {
        fail(report, s, e);
    }
    for dir in &plan.exec.cwd_dirs {
        // Errors are left to the command's chdir, which names the directory.
        // SAFETY: a NUL-terminated path; mkdir only creates.
        unsafe { libc::mkdir(dir.as_ptr(), 0o755) };
    }
    if let Err((s, e)) = rootfs::finish(&plan.rootfs) {
        fail(report, s, e);
    }
    let pty_slave = match plan.tty {
        Some(size) => match open_pty(report, size) {
            Ok(fd) => Some(fd),
            Err(e) => fail(report, Step::new(step::PTY, 0), e),
        },
        None => None,
    };

    // Wait until the intermediate has moved us into our cgroups. EOF
    // instead of the byte: it failed (and reported) or died.
    let mut byte = [0u8; 1];
    match sys::read_full(plan.go[0], &mut byte) {
        Ok(1) => {}
        Ok(_) => exit(1),
        Err(e) => fail(report, Step::new(step::WAIT_CGROUP, 0), e),
    }
    close(plan.go[0]);
    // Now that our cgroup is final, make it the root of a new cgroup
    // namespace, so /proc/self/cgroup shows "/" inside.
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP) {
        fail(report, Step::new(step::UNSHARE_CGROUP, 0), e);
    }

    let mut pipe = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        fail(report, Step::new(step::FORK_COMMAND, 0), Errno::last());
    }
    // SAFETY: single-threaded process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        fail(report, Step::new(step::FORK_COMMAND, 0), Errno::last());
    }
    if child == 0 {
        close(pipe[0]);
        command(&plan.exec, pipe[1], pty_slave);
    }
    close(pipe[1]);
    for fd in plan.exec.stdio.iter().flatten() {
        close(*fd);
    }
    if let Some(fd) = pty_slave {
        close(fd);
    }

    // The exec pipe is close-on-exec: EOF means execve succeeded, eight
    // bytes are the (step, errno) of what failed before or in it.
    let mut buf = [0u8; 8];
    let n = sys::read_full(pipe[0], &mut buf).unwrap_or(0);
    close(pipe[0]);
    if n == 8 {
        let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        // SAFETY: child is ours and has exited or is about to.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
        fail(report, Step(step), Errno::from_raw(errno));
    }
    let _ = report::send(
        report,
        &Msg {
            kind: report::MSG_STARTED,
            ..Msg::default()
        },
        None,
    );

    let status = reap_and_forward(child);
    let msg = if libc::WIFEXITED(status) {
        Msg {
            kind: report::MSG_EXITED,
            value: libc::WEXITSTATUS(status),
            ..Msg::default()
        }
    } else {
        Msg {
            kind: report::MSG_SIGNALED,
            value: libc::WTERMSIG(status),
            ..Msg::default()
        }
    };
    let _ = report::send(report, &msg, None);
    // Pid 1 exiting makes the kernel SIGKILL every process left in the
    // namespace (zap_pid_ns_processes) and wait for them: once our parent
    // sees us gone, nothing of the sandbox runs any more.
    exit(0)
}

/// Pid 1's loop: every signal is blocked; wait for one, reap on SIGCHLD
/// (orphans are re-parented to us), forward anything else to the command,
/// until the command itself has exited. Returns its wait status.
fn reap_and_forward(child: libc::pid_t) -> libc::c_int {
    let all = sigset_all();
    loop {
        // SAFETY: valid set; siginfo not needed.
        let sig = unsafe { libc::sigwaitinfo(&all, std::ptr::null_mut()) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: reaping any child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    return status;
                }
            }
        } else {
            // SAFETY: child is our unreaped child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// A new terminal on the devpts of this process's `/dev/ptmx`, at `size`:
/// (master, slave), both close-on-exec. Async-signal-safe.
pub(crate) fn new_pty(size: WindowSize) -> Result<(RawFd, RawFd), Errno> {
    // SAFETY: NUL-terminated path.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(Errno::last());
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    if unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(Errno::last());
    }
    // TIOCGPTPEER opens the slave from the master, with no path lookup that
    // something in the sandbox could race.
    // SAFETY: TIOCGPTPEER takes open flags and returns a descriptor.
    let slave = unsafe {
        libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Errno::last());
    }
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ takes a pointer to winsize.
    if unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(Errno::last());
    }
    Ok((master, slave))
}

/// Open a pseudo-terminal in the sandbox's own devpts, make its slave the
/// console, and send the master to forge. Returns the slave.
fn open_pty(report: RawFd, size: WindowSize) -> Result<RawFd, Errno> {
    let (master, slave) = new_pty(size)?;
    // runc binds the terminal over /dev/console.
    // SAFETY: NUL-terminated path.
    let console = unsafe {
        libc::open(
            c"/dev/console".as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        )
    };
    if console < 0 {
        return Err(Errno::last());
    }
    close(console);
    let mut buf = [0u8; 40];
    let src = sys::proc_fd_path(slave, &mut buf);
    // SAFETY: NUL-terminated paths.
    if unsafe {
        libc::mount(
            src.as_ptr(),
            c"/dev/console".as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    } < 0
    {
        return Err(Errno::last());
    }
    let msg = Msg {
        kind: report::MSG_PTY,
        ..Msg::default()
    };
    report::send(report, &msg, Some(master))?;
    close(master);
    Ok(slave)
}

/// Report a failed step to pid 1 through the exec pipe and exit.
fn exec_fail(pipe: RawFd, step: Step, e: Errno) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.0.to_ne_bytes());
    buf[4..].copy_from_slice(&(e as i32).to_ne_bytes());
    let _ = sys::write_all(pipe, &buf);
    exit(127)
}

fn check(r: libc::c_int) -> Result<(), Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The command process: set up the process attributes, then execve.
/// The order follows runc's `finalizeNamespace`: rlimits and
/// no_new_privs while still privileged, bounding set, then the ids
/// (keeping capabilities across setuid), then the final capability sets.
pub(crate) fn command(plan: &ExecPlan, pipe: RawFd, pty: Option<RawFd>) -> ! {
    let s = |kind| Step::new(kind, 0);
    // SAFETY (whole block): system calls on prepared, live data.
    unsafe {
        // The mask and ignored signals survive execve; handlers do not.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        // A session of its own: no terminal of forge's to receive signals from.
        if libc::setsid() < 0 {
            exec_fail(pipe, s(step::SETSID), Errno::last());
        }
        let stdio = match pty {
            Some(fd) => {
                if libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                    exec_fail(pipe, s(step::SETSID), Errno::last());
                }
                [Some(fd); 3]
            }
            None => plan.stdio,
        };
        for (target, src) in stdio.iter().enumerate() {
            if let Some(src) = *src {
                // Sources are all ≥ 3 (forge made sure), so dup2 cannot
                // clobber a source still to be duplicated; dup2 clears
                // close-on-exec on the copy.
                if libc::dup2(src, target as RawFd) < 0 {
                    exec_fail(pipe, Step::new(step::STDIO, target), Errno::last());
                }
            }
        }
        for (i, (resource, limit)) in plan.rlimits.iter().enumerate() {
            if libc::setrlimit(*resource, limit) < 0 {
                exec_fail(pipe, Step::new(step::RLIMIT, i), Errno::last());
            }
        }
        // Nothing the command executes can gain privileges (setuid bits,
        // file capabilities), unless the spec asks for docker's default.
        if plan.no_new_privileges {
            if let Err(e) = check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
                exec_fail(pipe, s(step::NO_NEW_PRIVS), e);
            }
        }
        if let Err((cap, e)) =
            crate::capabilities::drop_bounding(crate::CapSet::from_bits(plan.caps), plan.last_cap)
        {
            exec_fail(pipe, Step::new(step::BOUNDING_SET, cap as usize), e);
        }
        if plan.uid != 0 {
            // Keep the permitted set across setuid so capset below can
            // still set it; execve then clears it for a non-root user.
            if let Err(e) = check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0)) {
                exec_fail(pipe, s(step::KEEPCAPS), e);
            }
        }
        if let Err(e) = check(libc::setgroups(plan.groups.len(), plan.groups.as_ptr())) {
            exec_fail(pipe, s(step::SETGROUPS), e);
        }
        if let Err(e) = check(libc::setresgid(plan.gid, plan.gid, plan.gid)) {
            exec_fail(pipe, s(step::SETGID), e);
        }
        if let Err(e) = check(libc::setresuid(plan.uid, plan.uid, plan.uid)) {
            exec_fail(pipe, s(step::SETUID), e);
        }
        if let Err(e) = sys::capset(plan.caps, plan.caps, 0) {
            exec_fail(pipe, s(step::CAPSET), e);
        }
        if let Err(e) = check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )) {
            exec_fail(pipe, s(step::AMBIENT), e);
        }
        if let Err(e) = check(libc::chdir(plan.cwd.as_ptr())) {
            exec_fail(pipe, s(step::CHDIR), e);
        }
        libc::umask(plan.umask);

        // execvp's rules: ENOENT/ENOTDIR try the next directory, EACCES is
        // remembered but the search goes on, anything else stops it.
        let mut err = Errno::ENOENT;
        let mut at = 0;
        for (i, path) in plan.candidates.iter().enumerate() {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            let e = Errno::last();
            match e {
                Errno::ENOENT | Errno::ENOTDIR => {}
                Errno::EACCES => {
                    err = e;
                    at = i;
                }
                _ => {
                    err = e;
                    at = i;
                    break;
                }
            }
        }
        exec_fail(pipe, Step::new(step::EXEC, at), err)
    }
}
