//! What a long-lived sandbox (a container) needs from other code: a process
//! joined to it (`exec_in`), the freezer, cgroup figures read from its paths,
//! and TCP forwarded into its own network namespace.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use forge_sandbox::{
    bind_host_port, exec_in, freeze, usage_of, ExitStatus, Network, PortForwarder, PortMapping,
    ProcessSpec, Sandbox, SandboxError, Stdio,
};

fn spawn_sleeper(s: &Scratch, network: Network) -> Sandbox {
    let mut spec = s.spec(&["sh", "-c", "echo inside > /marker; exec sleep 100"]);
    spec.network = network;
    spec.hostname = "joined".to_owned();
    spec.limits.freezer = true;
    spec.process.stdout = Stdio::Null;
    spec.process.stderr = Stdio::Null;
    let sb = Sandbox::spawn(&spec).expect("spawn");
    // The marker is written right after start.
    std::thread::sleep(Duration::from_millis(100));
    sb
}

fn joined_output(sb: &Sandbox, args: &[&str]) -> (ExitStatus, String) {
    let mut p = ProcessSpec::new(args.iter().copied());
    p.stdin = Stdio::Null;
    p.stdout = Stdio::Piped;
    p.stderr = Stdio::Null;
    let mut j = exec_in(sb.pid().expect("pid"), &sb.cgroup_paths(), &p).expect("exec_in");
    let mut out = String::new();
    j.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    (j.wait().expect("wait"), out)
}

#[test]
fn exec_joins_namespaces_and_cgroups() {
    let s = Scratch::new();
    let sb = spawn_sleeper(&s, Network::None);
    let (st, out) = joined_output(&sb, &["sh", "-c", "cat /marker; hostname; echo $$"]);
    assert_eq!(st, ExitStatus::Exited(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "inside", "the sandbox's root: {out}");
    assert_eq!(lines[1], "joined", "its uts namespace: {out}");
    let pid: u32 = lines[2].parse().expect("pid");
    assert!(pid > 1 && pid < 100, "its pid namespace: {out}");
    let (_, cg) = joined_output(&sb, &["cat", "/proc/self/cgroup"]);
    assert!(
        cg.lines().any(|l| l.ends_with(":/")),
        "its cgroup namespace: {cg}"
    );
    let (st, _) = joined_output(&sb, &["sh", "-c", "exit 4"]);
    assert_eq!(st, ExitStatus::Exited(4));
    let p = ProcessSpec::new(["no-such-command"]);
    let err = exec_in(sb.pid().expect("pid"), &sb.cgroup_paths(), &p).expect_err("not found");
    assert!(matches!(err, SandboxError::CommandNotFound { .. }), "{err}");
    sb.kill(libc::SIGKILL).expect("kill");
    sb.wait().expect("wait");
}

#[test]
fn freezer_and_usage_from_paths() {
    let s = Scratch::new();
    let sb = spawn_sleeper(&s, Network::None);
    let paths = sb.cgroup_paths();
    let usage = usage_of(&paths);
    assert!(usage.pids_current.unwrap_or(0) >= 2, "{usage:?}");
    freeze(&paths, true).expect("freeze");
    // A frozen sandbox does not run what it is sent: SIGTERM waits.
    sb.kill(libc::SIGTERM).expect("signal");
    std::thread::sleep(Duration::from_millis(200));
    let pid = sb.pid().expect("pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    freeze(&paths, false).expect("thaw");
    assert_eq!(
        sb.wait().expect("wait"),
        ExitStatus::Signaled(libc::SIGTERM)
    );
}

#[test]
fn ports_forward_into_the_namespace() {
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "echo served | nc -l -p 80 >/dev/null"]);
    spec.network = Network::None;
    spec.process.stdout = Stdio::Null;
    spec.process.stderr = Stdio::Null;
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let listener =
        bind_host_port(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind host port");
    let port = listener.local_addr().expect("addr").port();
    // The same host port cannot be bound twice: a clear error.
    let err = bind_host_port(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).expect_err("in use");
    assert!(matches!(err, SandboxError::Bind { .. }), "{err}");
    let fwd = PortForwarder::start(
        sb.pid().expect("pid"),
        vec![PortMapping {
            listener,
            container_port: 80,
        }],
    )
    .expect("forwarder");
    let mut got = String::new();
    for _ in 0..100 {
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        c.write_all(b"hi\n").expect("write");
        got.clear();
        let _ = c.read_to_string(&mut got);
        if !got.is_empty() {
            break;
        }
        // nc may not listen yet: the forwarder closes the connection then.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got, "served\n");
    fwd.stop();
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("host port released");
    // nc exits once it has served; the sandbox may be over already.
    let _ = sb.kill(libc::SIGKILL);
    sb.wait().expect("wait");
}
