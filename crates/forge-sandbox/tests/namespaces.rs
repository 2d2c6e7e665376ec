//! Namespaces: pid, uts, ipc, mount, network.

mod common;

use common::*;
use forge_sandbox::Network;

#[test]
fn command_is_pid_2_and_sees_only_the_sandbox() {
    // $$ is the shell's pid; /proc lists only the sandbox's processes:
    // pid 1 (ours) and the shell (2). The glob is expanded by the shell
    // itself, so no other process exists meanwhile.
    let out = sh("echo $$; echo /proc/[0-9]*");
    assert_eq!(out, "2\n/proc/1 /proc/2\n");
}

#[test]
fn ps_shows_our_pid1_and_the_command() {
    // `sh -c` with one command execs it: ps itself is pid 2.
    let out = sh("ps -o pid,comm");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [vec!["1", "forge-init"], vec!["2", "ps"]], "{out}");
}

#[test]
fn hostname_is_the_given_one() {
    let s = Scratch::new();
    let mut spec = s.spec(&[
        "sh",
        "-c",
        "hostname; cat /etc/hostname; cat /proc/sys/kernel/hostname",
    ]);
    spec.hostname = "buildbox".to_owned();
    assert_eq!(stdout(&spec), "buildbox\nbuildbox\nbuildbox\n");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("host hostname")
            .trim(),
        "buildbox"
    );
}

#[test]
fn ipc_uts_mnt_pid_cgroup_namespaces_differ_from_the_host() {
    let out = sh("for n in ipc uts mnt pid cgroup net; do readlink /proc/self/ns/$n; done");
    let inside: Vec<&str> = out.lines().collect();
    for (i, n) in ["ipc", "uts", "mnt", "pid", "cgroup"].iter().enumerate() {
        let host = std::fs::read_link(format!("/proc/self/ns/{n}")).expect("host ns");
        assert_ne!(
            inside[i],
            host.to_string_lossy(),
            "{n} namespace is the host's"
        );
    }
    // Network: the host's by default.
    let host_net = std::fs::read_link("/proc/self/ns/net").expect("host net ns");
    assert_eq!(inside[5], host_net.to_string_lossy());
}

#[test]
fn mounts_made_inside_are_invisible_on_the_host() {
    let s = Scratch::new();
    let spec = s.spec(&["sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs forge-inside-marker /tmp/m && grep -c forge-inside-marker /proc/self/mountinfo"]);
    let mut sb = forge_sandbox::Sandbox::spawn(&spec).expect("spawn");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut sb.take_stdout().expect("stdout"), &mut out).expect("read");
    // The command has printed, so its mount exists now: the host must not see it.
    let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!host.contains("forge-inside-marker"));
    assert!(!host.contains(&s.state().to_string_lossy().into_owned()));
    let status = sb.wait().expect("wait");
    // CAP_SYS_ADMIN is not in docker's set: the mount must fail inside too.
    assert!(
        !status.success(),
        "mount inside the sandbox succeeded: {out}"
    );
}

#[test]
fn network_none_has_only_lo_and_it_is_up() {
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok"]);
    spec.network = Network::None;
    let out = stdout(&spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    // operstate of lo is "unknown" even when up; the IFF_UP bit says it.
    let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).expect("flags");
    assert_eq!(flags & 1, 1, "lo is not up: {out}");
    assert_eq!(lines[3], "ping-ok", "{out}");
}
