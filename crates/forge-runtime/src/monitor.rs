//! Running a container: the process that holds its [`Sandbox`].
//!
//! The sandbox dies with the process holding it (its lifeline pipe), so a
//! detached container needs a process of its own that outlives the forge
//! command: the *monitor*, the forge binary re-executed by
//! [`Runtime::start`] through a [`Launcher`] (`forge container-monitor
//! <id>`). It forks once more and starts a new session ([`detach`]), so it
//! is nobody's child and has no terminal; it binds the host ports (a port
//! in use fails the start, before anything runs), spawns the sandbox,
//! records the pids in `state.json`, reports "started" (or the error)
//! through a pipe to the starting forge, forwards the ports, writes the
//! logs, and when the command exits records the exit code — and removes
//! the container for `--rm`.
//!
//! An attached `forge run` is its own monitor ([`Runtime::run_attached`]):
//! the same steps in the forge process, with the container's streams on
//! forge's own (and in the log, unless `--rm`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio as ProcStdio};

use forge_sandbox::{
    bind_host_port, ExitStatus, Limits, MountSpec, Network, PortForwarder, PortMapping,
    ProcessSpec, RootFs, RootFsView, Sandbox, SandboxSpec, Stdio, WindowSize,
};

use crate::config::{ContainerConfig, MountConfig, NetworkMode, PortConfig};
use crate::error::{io_err, Result, RuntimeError};
use crate::logs::LogWriter;
use crate::runtime::Runtime;
use crate::state::{ProcessId, Status};

/// How to re-execute forge as a container's monitor: `program args… <id>`.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// Become a daemon: fork (the parent exits at once, so the starting forge
/// reaps it and the monitor is re-parented to init) and start a new
/// session. Call first thing in the monitor process, while it has a
/// single thread.
pub fn detach() -> io::Result<()> {
    // SAFETY: called while single-threaded; the parent only _exits.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: plain system call.
            unsafe { libc::setsid() };
            Ok(())
        }
        // SAFETY: _exit skips destructors that belong to the child now.
        _ => unsafe { libc::_exit(0) },
    }
}

/// The outcome line a monitor writes to the starting forge.
fn report_line(result: &Result<()>) -> String {
    match result {
        Ok(()) => "ok\n".to_owned(),
        Err(e) => format!(
            "error {} {}\n",
            e.exit_code(),
            e.to_string().replace('\n', " ")
        ),
    }
}

/// Everything the sandbox needs, with the host ports already bound.
struct Prepared {
    spec: SandboxSpec,
    mappings: Vec<PortMapping>,
    bound: Vec<PortConfig>,
}

impl Runtime {
    fn prepare(&self, cfg: &ContainerConfig) -> Result<Prepared> {
        let paths = self.paths(&cfg.id);
        let lowerdirs = self.image_lowerdirs(cfg)?;
        if lowerdirs.is_empty() {
            return Err(RuntimeError::Image {
                image: cfg.image.clone(),
                reason: "the image has no layers".to_owned(),
            });
        }
        // --read-only keeps the writable overlay for what the sandbox itself makes
        // (a missing working directory, mountpoints) and remounts the root
        // read-only before the command starts, as docker's daemon does.
        let rootfs = RootFs::Overlay {
            lowerdirs,
            upperdir: Some(paths.upper()),
            workdir: Some(paths.work()),
        };
        let mut process = ProcessSpec::new(cfg.args());
        // docker's default: setuid programs work in containers.
        process.no_new_privileges = false;
        process.env = cfg.env.clone();
        process.cwd = PathBuf::from(&cfg.working_dir);
        // Root too is looked up: its HOME and groups come from the image's files.
        let user = if cfg.user.is_empty() { "0" } else { &cfg.user };
        let view = RootFsView::open(&rootfs)?;
        let u = view.resolve_user(user).map_err(|e| RuntimeError::User {
            user: user.to_string(),
            reason: e.to_string(),
        })?;
        drop(view);
        crate::runtime::apply_user(&mut process, u);
        let mut spec = SandboxSpec::new(rootfs, process);
        spec.readonly_rootfs = cfg.read_only;
        // A --rm container's writable layer is deleted when it exits: syncing it on
        // the way out would only wait for the disk. Any other keeps docker's
        // durability (its fsyncs reach the disk; it survives a host crash).
        spec.volatile_upper = cfg.auto_remove;
        // docker makes a missing volume, bind or tmpfs target in the
        // container's own layer: `diff` shows it, `commit` keeps it.
        spec.mountpoints_in_upper = true;
        spec.hostname = cfg.hostname.clone();
        spec.network = match cfg.network {
            NetworkMode::Host => Network::Host,
            NetworkMode::Private | NetworkMode::None => Network::None,
        };
        for m in &cfg.mounts {
            spec.mounts.push(match m {
                MountConfig::Bind {
                    source,
                    target,
                    readonly,
                } => MountSpec::Bind {
                    source: source.into(),
                    target: target.into(),
                    readonly: *readonly,
                },
                MountConfig::Volume {
                    name,
                    target,
                    readonly,
                    ..
                } => MountSpec::Bind {
                    source: self.volumes().get(name)?.mountpoint,
                    target: target.into(),
                    readonly: *readonly,
                },
                MountConfig::Tmpfs { target, size, mode } => MountSpec::Tmpfs {
                    target: target.into(),
                    size: *size,
                    mode: *mode,
                },
            });
        }
        spec.limits = Limits {
            memory: cfg.memory,
            cpus: cfg.cpus,
            pids: cfg.pids_limit.filter(|p| *p > 0).map(|p| p as u64),
            // pause/unpause
            freezer: true,
            ..Limits::default()
        };
        spec.state_dir = paths.run_dir();
        spec.id = Some(cfg.id.clone());

        let mut mappings = Vec::new();
        let mut bound = Vec::new();
        for p in &cfg.ports {
            let listener = bind_host_port(std::net::SocketAddr::new(p.host_ip, p.host_port))?;
            let local = listener
                .local_addr()
                .map_err(io_err("reading the bound address of", "listener"))?;
            bound.push(PortConfig {
                host_ip: p.host_ip,
                host_port: local.port(),
                container_port: p.container_port,
            });
            mappings.push(PortMapping {
                listener,
                container_port: p.container_port,
            });
        }
        Ok(Prepared {
            spec,
            mappings,
            bound,
        })
    }

    /// Spawn the sandbox of `id` and record it as running.
    fn launch(
        &self,
        cfg: &ContainerConfig,
        mut prepared: Prepared,
    ) -> Result<(Sandbox, Option<PortForwarder>)> {
        self.update_state(&cfg.id, |st| {
            if st.status.is_live() && st.monitor.is_some_and(|m| m.alive()) {
                return Err(RuntimeError::State {
                    id: cfg.id.clone(),
                    state: st.status.name(),
                    action: "already started",
                });
            }
            Ok(())
        })?;
        let spawned = Sandbox::spawn(&prepared.spec);
        let sb = match spawned {
            Ok(sb) => sb,
            Err(e) => {
                let err = RuntimeError::from(e);
                let code = err.exit_code();
                let msg = err.to_string();
                let _ = self.update_state(&cfg.id, |st| {
                    st.exit_code = code;
                    st.error = msg;
                    st.pid = None;
                    st.monitor = None;
                    Ok(())
                });
                return Err(err);
            }
        };
        let pid = sb.pid().and_then(ProcessId::of);
        let cgroups = sb.cgroup_paths();
        let bound = std::mem::take(&mut prepared.bound);
        self.update_state(&cfg.id, |st| {
            if !st.started_at.is_empty() {
                st.restart_count += 1;
            }
            st.status = Status::Running;
            st.monitor = Some(ProcessId::current());
            st.pid = pid;
            st.cgroups = cgroups;
            st.ports = bound;
            st.exit_code = 0;
            st.oom_killed = false;
            st.error.clear();
            st.started_at = forge_store::import::now_rfc3339();
            st.finished_at.clear();
            Ok(())
        })?;
        let forwarder = match (&pid, prepared.mappings.is_empty()) {
            (Some(p), false) => Some(PortForwarder::start(
                p.pid,
                std::mem::take(&mut prepared.mappings),
            )?),
            _ => None,
        };
        Ok((sb, forwarder))
    }

    /// Record how the container ended; remove it for `--rm`.
    fn finish(
        &self,
        cfg: &ContainerConfig,
        status: Result<ExitStatus, forge_sandbox::SandboxError>,
    ) -> Result<i32> {
        let (code, oom, error) = match &status {
            Ok(s) => (s.code(), *s == ExitStatus::OutOfMemory, String::new()),
            Err(e) => (137, false, e.to_string()),
        };
        // --rm: nobody will read the final state (unless the removal fails).
        if cfg.auto_remove {
            self.tell_waiters(&cfg.id, code);
        }
        if cfg.auto_remove && self.remove_stopped(&cfg.id, true).is_ok() {
            return Ok(code);
        }
        self.update_state(&cfg.id, |st| {
            st.status = Status::Exited;
            st.exit_code = code;
            st.oom_killed = oom;
            st.error = error;
            st.pid = None;
            st.monitor = None;
            st.finished_at = forge_store::import::now_rfc3339();
            Ok(())
        })?;
        Ok(code)
    }

    /// Start a created or stopped container detached: launch its monitor
    /// and wait for its report.
    pub fn start(&self, id: &str, launcher: &Launcher) -> Result<()> {
        let st = self.state(id)?;
        if st.status.is_live() {
            return Ok(());
        }
        let mut child = Command::new(&launcher.program)
            .args(&launcher.args)
            .arg(id)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::piped())
            .stderr(ProcStdio::null())
            .spawn()
            .map_err(|source| RuntimeError::Monitor {
                id: id.to_owned(),
                source,
            })?;
        let mut line = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut line);
        }
        let _ = child.wait();
        match line.trim_end().split_once(' ') {
            None if line.trim_end() == "ok" => Ok(()),
            Some(("error", rest)) => {
                let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
                Err(RuntimeError::Start {
                    id: id.to_owned(),
                    reason: msg.to_owned(),
                    code: code.parse().unwrap_or(125),
                })
            }
            _ => Err(RuntimeError::Start {
                id: id.to_owned(),
                reason: format!(
                    "the monitor exited without reporting{}",
                    self.state(id)
                        .map(|s| if s.error.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", s.error)
                        })
                        .unwrap_or_default()
                ),
                code: 125,
            }),
        }
    }

    /// The monitor of a detached container (in the re-executed forge,
    /// after [`detach`]): `report` is where the starting forge reads the
    /// outcome. Returns the process exit status.
    pub fn monitor(&self, id: &str) -> i32 {
        // The report pipe is fd 1: move it aside (close-on-exec, ≥ 3) and put
        // /dev/null on 1, so no process of the sandbox inherits the pipe and
        // the starting forge sees EOF as soon as the report is written.
        let report = match stdout_aside() {
            Ok(f) => f,
            Err(_) => return 125,
        };
        let mut report = report;
        let cfg = match self.config(id) {
            Ok(c) => c,
            Err(e) => {
                let _ = report.write_all(report_line(&Err(e)).as_bytes());
                return 125;
            }
        };
        let started = (|| -> Result<_> {
            let mut prepared = self.prepare(&cfg)?;
            let log = LogWriter::open(&self.paths(id).log())?;
            if cfg.tty {
                prepared.spec.process.tty = Some(WindowSize { rows: 24, cols: 80 });
            }
            prepared.spec.process.stdin = Stdio::Null;
            prepared.spec.process.stdout = Stdio::Piped;
            prepared.spec.process.stderr = Stdio::Piped;
            let (mut sb, fwd) = self.launch(&cfg, prepared)?;
            let mut pumps = Vec::new();
            if let Some(pty) = sb.take_pty() {
                let log = log.clone();
                pumps.push(std::thread::spawn(move || log.pump("stdout", pty, None)));
            }
            for (stream, f) in [("stdout", sb.take_stdout()), ("stderr", sb.take_stderr())] {
                if let Some(f) = f {
                    let log = log.clone();
                    pumps.push(std::thread::spawn(move || log.pump(stream, f, None)));
                }
            }
            Ok((sb, fwd, pumps))
        })();
        let (sb, fwd, pumps) = match started {
            Ok(x) => {
                let _ = report.write_all(report_line(&Ok(())).as_bytes());
                drop(report);
                x
            }
            Err(e) => {
                let code = e.exit_code();
                let _ = report.write_all(report_line(&Err(e)).as_bytes());
                return code;
            }
        };
        let status = sb.wait();
        drop(fwd);
        for p in pumps {
            let _ = p.join();
        }
        match self.finish(&cfg, status) {
            Ok(_) => 0,
            Err(_) => 125,
        }
    }

    /// `forge run` without `-d`: this process is the monitor; the
    /// container's streams are forge's. Returns the container's exit code.
    pub fn run_attached(&self, id: &str) -> Result<i32> {
        let cfg = self.config(id)?;
        let mut prepared = self.prepare(&cfg)?;
        let stdin_tty = nix::unistd::isatty(io::stdin().as_fd()).unwrap_or(false);
        let log = if cfg.auto_remove {
            None
        } else {
            Some(LogWriter::open(&self.paths(id).log())?)
        };
        if cfg.tty {
            prepared.spec.process.tty =
                Some(terminal_size().unwrap_or(WindowSize { rows: 24, cols: 80 }));
        } else {
            prepared.spec.process.stdin = if cfg.open_stdin {
                Stdio::Inherit
            } else {
                Stdio::Null
            };
            if log.is_some() {
                prepared.spec.process.stdout = Stdio::Piped;
                prepared.spec.process.stderr = Stdio::Piped;
            }
        }
        // docker's --sig-proxy: blocked here, before any thread of ours
        // exists, so they go to the proxy thread only.
        let proxied = proxied_signals();
        let _ = proxied.thread_block();
        let (mut sb, fwd) = self.launch(&cfg, prepared)?;
        let pty = sb.take_pty();
        // A resized terminal resizes the container's (which sends it SIGWINCH).
        let resize = pty.as_ref().and_then(|p| p.try_clone().ok());
        if let Some(pid) = sb.pid().and_then(ProcessId::of) {
            std::thread::spawn(move || {
                while let Ok(sig) = proxied.wait() {
                    if sig == nix::sys::signal::Signal::SIGWINCH {
                        if let (Some(master), Some(size)) = (&resize, terminal_size()) {
                            set_window_size(master, size);
                        }
                        continue;
                    }
                    let _ = crate::runtime::send_signal(&pid, sig as i32);
                }
            });
        }
        let mut pumps = Vec::new();
        let mut raw = None;
        if let Some(pty) = pty {
            if stdin_tty {
                raw = RawMode::enter();
            }
            if cfg.open_stdin {
                if let Ok(mut to_pty) = pty.try_clone() {
                    // Not joined: it blocks on forge's stdin until forge exits.
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        let mut stdin = io::stdin().lock();
                        loop {
                            match stdin.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to_pty.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    });
                }
            }
            let log = log.clone().unwrap_or(LogWriter::discard());
            pumps.push(std::thread::spawn(move || {
                log.pump("stdout", pty, Some(Box::new(io::stdout())))
            }));
        }
        if let Some(log) = &log {
            if let Some(f) = sb.take_stdout() {
                let log = log.clone();
                pumps.push(std::thread::spawn(move || {
                    log.pump("stdout", f, Some(Box::new(io::stdout())))
                }));
            }
            if let Some(f) = sb.take_stderr() {
                let log = log.clone();
                pumps.push(std::thread::spawn(move || {
                    log.pump("stderr", f, Some(Box::new(io::stderr())))
                }));
            }
        }
        let status = sb.wait();
        drop(fwd);
        for p in pumps {
            let _ = p.join();
        }
        drop(raw);
        self.finish(&cfg, status)
    }
}

/// The signals an attached forge passes on to its container (SIGWINCH
/// becomes a resize of its terminal).
fn proxied_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(sig);
    }
    set
}

/// Duplicate fd 1 to a close-on-exec descriptor ≥ 3 and put /dev/null on 1.
fn stdout_aside() -> io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let report = unsafe { File::from_raw_fd(fd) };
    let null = File::options().read(true).write(true).open("/dev/null")?;
    // SAFETY: dup2 onto our own stdout.
    if unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(report)
}

/// The size of forge's terminal (stdin's), if it has one.
pub fn terminal_size() -> Option<WindowSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Set the size of the terminal whose master is `master`.
fn set_window_size(master: &File, size: WindowSize) {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// forge's terminal in raw mode while attached to a container's pty, so
/// keys (Ctrl-C included) go to the container; restored on drop.
pub struct RawMode {
    saved: nix::sys::termios::Termios,
    fd: OwnedFd,
}

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
        let saved = tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved, fd })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(&self.fd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}
