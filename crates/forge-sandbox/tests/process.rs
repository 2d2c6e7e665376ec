//! The command's life: exec errors, exit statuses, signals, reaping, tty, rlimits.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use forge_sandbox::{ExitStatus, Rlimit, RlimitResource, Sandbox, SandboxError, WindowSize};

#[test]
fn exit_codes_and_signals_are_reported() {
    let s = Scratch::new();
    assert_eq!(
        output(&s.spec(&["sh", "-c", "exit 3"])).status,
        ExitStatus::Exited(3)
    );
    let s = Scratch::new();
    assert_eq!(
        output(&s.spec(&["sh", "-c", "kill -TERM $$"])).status,
        ExitStatus::Signaled(15)
    );
    let s = Scratch::new();
    assert_eq!(output(&s.spec(&["true"])).status, ExitStatus::Exited(0));
}

#[test]
fn missing_binary_is_not_found() {
    let s = Scratch::new();
    let err = Sandbox::spawn(&s.spec(&["no-such-command", "x"])).expect_err("must fail");
    assert!(
        matches!(&err, SandboxError::CommandNotFound { command } if command == "no-such-command"),
        "{err}"
    );
    assert_eq!(err.exit_code(), Some(127));
    let s = Scratch::new();
    let err = Sandbox::spawn(&s.spec(&["/bin/nope"])).expect_err("must fail");
    assert!(matches!(err, SandboxError::CommandNotFound { .. }), "{err}");
}

#[test]
fn non_executable_file_cannot_execute() {
    let s = Scratch::new();
    let err = Sandbox::spawn(&s.spec(&["/etc/passwd"])).expect_err("must fail");
    assert!(
        matches!(&err, SandboxError::CommandNotExecutable { command, source } if command == "/etc/passwd" && *source == nix::errno::Errno::EACCES),
        "{err}"
    );
    assert_eq!(err.exit_code(), Some(126));
    let s = Scratch::new();
    let err = Sandbox::spawn(&s.spec(&["/etc"])).expect_err("must fail");
    assert_eq!(err.exit_code(), Some(126), "{err}");
    // Nothing is left of either attempt.
    assert_eq!(std::fs::read_dir(s.state()).expect("state").count(), 0);
}

#[test]
fn background_children_are_killed_when_the_command_exits() {
    let s = Scratch::new();
    // sh starts a sleeper, prints its pid and waits for stdin to close.
    let mut spec = s.spec(&["sh", "-c", "sleep 1000 & echo $!; read x || true"]);
    spec.process.stdin = forge_sandbox::Stdio::Piped;
    let started = Instant::now();
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    let stdin = sb.take_stdin().expect("stdin");
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", sb.pid().expect("pid")))
        .expect("pid ns")
        .to_string_lossy()
        .into_owned();
    let mut first_line = String::new();
    let mut stdout = sb.take_stdout().expect("stdout");
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).expect("read") == 1 && byte[0] != b'\n' {
        first_line.push(byte[0] as char);
    }
    // pid 1, sh and the sleeper run now, on the host, in the sandbox's pid namespace.
    let host_pids = pids_in_namespace(&ns);
    assert_eq!(host_pids.len(), 3, "{host_pids:?}");
    drop(stdin);
    let status = sb.wait().expect("wait");
    assert_eq!(status, ExitStatus::Exited(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(first_line.trim().parse::<u32>().is_ok(), "{first_line}");
    // wait() returns after the whole namespace is gone.
    for pid in host_pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }
    assert!(pids_in_namespace(&ns).is_empty());
}

#[test]
fn zombies_are_reaped_by_pid_1() {
    // The orphaned grandchildren exit while sh still runs; pid 1 reaps them.
    let out = sh("(sleep 0.1 &) ; (true &); sleep 0.5; ps -o stat,comm | grep -c '^Z' || true");
    assert_eq!(out.trim(), "0", "{out}");
}

#[test]
fn signals_are_forwarded_to_the_command() {
    let s = Scratch::new();
    let spec = s.spec(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    let mut stdout = sb.take_stdout().expect("stdout");
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).expect("ready");
    assert_eq!(&buf, b"ready\n");
    sb.kill(libc::SIGTERM).expect("kill");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read");
    assert_eq!(rest, "got-term\n");
    assert_eq!(sb.wait().expect("wait"), ExitStatus::Exited(7));
}

#[test]
fn sigkill_kills_the_whole_sandbox() {
    let s = Scratch::new();
    let spec = s.spec(&["sh", "-c", "trap '' TERM; sleep 1000"]);
    let sb = Sandbox::spawn(&spec).expect("spawn");
    sb.kill(libc::SIGKILL).expect("kill");
    assert_eq!(sb.wait().expect("wait"), ExitStatus::Signaled(9));
}

#[test]
fn dropping_the_handle_kills_the_sandbox() {
    let s = Scratch::new();
    let spec = s.spec(&["sleep", "1000"]);
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let pid = sb.pid().expect("pid");
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .expect("ns")
        .to_string_lossy()
        .into_owned();
    drop(sb);
    assert!(pids_in_namespace(&ns).is_empty());
    assert_eq!(std::fs::read_dir(s.state()).expect("state").count(), 0);
}

#[test]
fn tty_is_a_terminal_of_the_sandbox() {
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "tty; stty size; ls -l /dev/console | cut -c1"]);
    spec.process.tty = Some(WindowSize {
        rows: 33,
        cols: 101,
    });
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    let mut pty = sb.take_pty().expect("pty");
    let mut out = Vec::new();
    // EIO at the end: the slave side closed.
    let mut buf = [0u8; 4096];
    loop {
        match pty.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(sb.wait().expect("wait"), ExitStatus::Exited(0));
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    assert_eq!(out, "/dev/pts/0\n33 101\nc\n");
}

#[test]
fn tty_input_reaches_the_command() {
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "read line; echo got:$line"]);
    spec.process.tty = Some(WindowSize { rows: 24, cols: 80 });
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    let mut pty = sb.take_pty().expect("pty");
    pty.write_all(b"hello\n").expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pty.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(sb.wait().expect("wait"), ExitStatus::Exited(0));
    assert!(String::from_utf8_lossy(&out).contains("got:hello"));
}

#[test]
fn rlimits_are_applied() {
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"]);
    spec.limits.rlimits = vec![
        Rlimit {
            resource: RlimitResource::Nofile,
            soft: 1234,
            hard: 4321,
        },
        Rlimit {
            resource: RlimitResource::Core,
            soft: 0,
            hard: 0,
        },
    ];
    assert_eq!(stdout(&spec), "1234\n4321\n0\n");
}

#[test]
fn rlimit_above_the_hard_limit_is_refused() {
    let mut host = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills host.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut host) },
        0
    );
    if host.rlim_max == libc::RLIM_INFINITY {
        return; // nothing is above an unlimited hard limit
    }
    let s = Scratch::new();
    let mut spec = s.spec(&["true"]);
    spec.limits.rlimits = vec![Rlimit {
        resource: RlimitResource::Nofile,
        soft: 1024,
        hard: host.rlim_max + 1,
    }];
    let err = Sandbox::spawn(&spec).expect_err("must be refused");
    match &err {
        SandboxError::RlimitAboveHard {
            resource,
            requested,
            hard,
        } => {
            assert_eq!(*resource, "RLIMIT_NOFILE");
            assert_eq!(*requested, host.rlim_max + 1);
            assert_eq!(*hard, host.rlim_max);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
}
