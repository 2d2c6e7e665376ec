//! Fifty detached containers started and then removed with `rm -f`, concurrently in
//! batches: every command succeeds, and nothing is left — no monitor or container
//! process, no cgroup directory, no mount, no host port, no state directory.

#[path = "support/build.rs"]
mod build_support;
#[path = "run_support/mod.rs"]
mod run_support;
mod support;

use std::net::TcpListener;
use std::path::Path;

use run_support::*;
use support::{list, ok, run};

const CONTAINERS: usize = 50;
const BATCH: usize = 10;

/// Runs `f(i)` for every i in 0..n, `BATCH` at a time on threads.
fn in_batches<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(BATCH) {
        let batch: Vec<T> = std::thread::scope(|s| {
            let handles: Vec<_> = (start..(start + BATCH).min(n))
                .map(|i| {
                    let f = &f;
                    s.spawn(move || f(i))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        out.extend(batch);
    }
    out
}

#[test]
fn fifty_containers_start_and_go_without_leaks() {
    let (_tmp, root) = store_with_busybox("run-many");
    let root_text = root.to_string_lossy().into_owned();
    let mounts_before = mounts_under(&root).len();

    let ids: Vec<String> = in_batches(CONTAINERS, |i| {
        let name = format!("many{i}");
        let r = run(
            &root,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "-p",
                "127.0.0.1::80",
                "busybox",
                "sh",
                "-c",
                "echo up; exec sleep 1000",
            ],
        );
        assert!(r.ok, "run {name}: {:?}\n{}", r.code, r.stderr);
        r.stdout.trim().to_owned()
    });
    let running = ok(&root, &["ps", "-q", "--no-trunc"]);
    let mut listed: Vec<&str> = running.lines().collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let entries = ps_json(&root);
    let mut host_ports: Vec<u16> = Vec::new();
    for e in &entries {
        assert_eq!(e["State"], "running", "{e}");
        let ports = e["Ports"].as_str().expect("ports");
        let port = ports
            .split("->")
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("host port in {ports}"));
        host_ports.push(port);
    }
    host_ports.sort_unstable();
    host_ports.dedup();
    assert_eq!(host_ports.len(), CONTAINERS, "distinct host ports");
    for id in &ids {
        assert!(
            !cgroup_dirs(id).is_empty(),
            "{id} has cgroups while running"
        );
    }
    assert_eq!(monitors(&root).len(), CONTAINERS);

    in_batches(CONTAINERS, |i| {
        let name = format!("many{i}");
        let r = run(&root, &["rm", "-f", &name]);
        assert!(r.ok, "rm -f {name}: {}", r.stderr);
        assert_eq!(r.stdout.trim(), name);
    });

    assert!(ok(&root, &["ps", "-a", "-q"]).trim().is_empty());
    assert!(processes_mentioning(&format!("{root_text} container-monitor")).is_empty());
    for id in &ids {
        assert!(cgroup_dirs(id).is_empty(), "{id}: {:?}", cgroup_dirs(id));
    }
    assert_eq!(
        mounts_under(&root).len(),
        mounts_before,
        "{:?}",
        mounts_under(&root)
    );
    for port in host_ports {
        TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} still taken: {e}"));
    }
    let left: Vec<String> = list(&root.join("containers"))
        .into_iter()
        .filter(|n| n != ".names")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(list(&root.join("containers/.names")).is_empty());
    // Every container's sleep is gone too: no process has the store's upper dirs as cwd.
    for pid in processes_mentioning("sleep 1000") {
        let cwd = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
        assert!(!cwd.starts_with(Path::new(&root_text)), "pid {pid} left");
    }
}
