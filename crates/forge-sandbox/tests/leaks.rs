//! Nothing outlives a sandbox, even when forge is SIGKILLed mid-run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use forge_sandbox::{cleanup_stale, ProcessSpec, RootFs, Sandbox, SandboxSpec};

const HELPER_ENV: &str = "FORGE_SANDBOX_SIGKILL_HELPER";

/// Not a test of its own: the body of the process that the SIGKILL test
/// starts (this test binary again) and kills. Without the variable it
/// does nothing.
#[test]
fn sigkill_helper() {
    let Ok(dir) = std::env::var(HELPER_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    if std::env::var_os("FORGE_SANDBOX_HELPER_DISK").is_some() {
        forge_sandbox::force_disk_scratch();
    }
    let mut process = ProcessSpec::new(["sleep", "100"]);
    process.stdout = forge_sandbox::Stdio::Null;
    let mut spec = SandboxSpec::new(
        RootFs::Overlay {
            lowerdirs: vec![busybox_rootfs()],
            upperdir: Some(dir.join("upper")),
            workdir: Some(dir.join("work")),
        },
        process,
    );
    spec.state_dir = dir.join("state");
    spec.cgroup_parent = "forge-test".to_owned();
    spec.limits.memory = Some(128 << 20);
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let pid = sb.pid().expect("pid");
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("ns");
    println!("SANDBOX {} {} {}", pid, ns.display(), sb.id());
    let _ = sb.wait();
    panic!("the sandbox ended before this process was killed");
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "cpuacct", ""]
        .iter()
        .map(|c| {
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join("forge-test")
                .join(id)
        })
        .collect()
}

#[test]
fn sigkill_of_forge_leaves_no_process_mount_or_cgroup() {
    sigkill_of_forge(false);
}

/// The same with the scratch files on disk (kernels before 6.15).
#[test]
fn sigkill_of_forge_with_disk_scratch() {
    sigkill_of_forge(true);
}

fn sigkill_of_forge(disk: bool) {
    let s = Scratch::new();
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    if disk {
        cmd.env("FORGE_SANDBOX_HELPER_DISK", "1");
    }
    let mut child = cmd
        .args([
            "--exact",
            "sigkill_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start helper");
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    // The harness may print "test sigkill_helper ... " on the same line.
    while !line.contains("SANDBOX ") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "helper exited early"
        );
    }
    let line = &line[line.find("SANDBOX ").expect("marker")..];
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (pid1, ns, id) = (fields[1], fields[2].to_owned(), fields[3].to_owned());
    assert!(Path::new(&format!("/proc/{pid1}")).exists());
    let pids = pids_in_namespace(&ns);
    assert_eq!(pids.len(), 2, "pid 1 and sleep: {pids:?}");
    assert!(cgroup_dirs(&id).iter().any(|d| d.exists()));

    child.kill().expect("SIGKILL the helper");
    child.wait().expect("reap the helper");

    // The sandbox dies with it, promptly.
    assert!(
        wait_until(Duration::from_secs(5), || pids_in_namespace(&ns).is_empty()),
        "sandbox processes survived: {:?}",
        pids_in_namespace(&ns)
    );
    for pid in &pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
    // No mount of it anywhere on the host.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&*s.dir.path().to_string_lossy()),
        "{mountinfo}"
    );
    assert!(
        !mountinfo.contains(&*busybox_rootfs().to_string_lossy()),
        "{mountinfo}"
    );

    // The cgroups and the state dir are what is left; cleanup_stale removes them.
    assert!(s.state().join(format!("{id}.lock")).exists());
    assert_eq!(s.state().join(format!("{id}.d")).exists(), disk);
    let report = cleanup_stale(&s.state()).expect("cleanup");
    assert_eq!(report.removed, std::slice::from_ref(&id));
    assert!(report.busy_cgroups.is_empty());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} survived cleanup", d.display());
    }
    assert_eq!(std::fs::read_dir(s.state()).expect("state").count(), 0);
}

#[test]
fn cleanup_stale_leaves_running_sandboxes_alone() {
    let s = Scratch::new();
    let sb = Sandbox::spawn(&s.spec(&["sleep", "100"])).expect("spawn");
    let report = cleanup_stale(&s.state()).expect("cleanup");
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(s.state().join(format!("{}.lock", sb.id())).exists());
    sb.kill(libc::SIGKILL).expect("kill");
    sb.wait().expect("wait");
    assert_eq!(std::fs::read_dir(s.state()).expect("state").count(), 0);
}

#[test]
fn failed_setup_leaves_nothing() {
    let s = Scratch::new();
    let mut spec = s.spec(&["true"]);
    spec.id = Some(format!("fail-{}", std::process::id()));
    // A missing cwd would be made; one under a file cannot be.
    spec.process.cwd = "/etc/passwd/sub".into();
    let err = Sandbox::spawn(&spec).expect_err("chdir must fail");
    assert!(err.to_string().contains("chdir(/etc/passwd/sub)"), "{err}");
    assert_eq!(std::fs::read_dir(s.state()).expect("state").count(), 0);
    for d in cgroup_dirs(spec.id.as_deref().expect("id")) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let mut spec = s.spec(&["true"]);
    spec.mounts = vec![forge_sandbox::MountSpec::Bind {
        source: s.dir.path().join("missing"),
        target: "/x".into(),
        readonly: false,
    }];
    assert!(Sandbox::spawn(&spec).is_err());
    assert_eq!(std::fs::read_dir(s.state()).expect("state").count(), 0);
}
