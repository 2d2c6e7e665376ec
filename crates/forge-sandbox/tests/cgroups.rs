//! cgroup limits and accounting (v1 on this VM, v2 where the machine has it).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use forge_sandbox::{ExitStatus, MountSpec, Sandbox};

/// The cgroup directories a sandbox with this id has, for the controllers we use.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok();
    if v2 {
        vec![PathBuf::from(format!("/sys/fs/cgroup/forge-test/{id}"))]
    } else {
        ["memory", "pids", "cpu", "cpuacct"]
            .iter()
            .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/forge-test/{id}")))
            .filter(|p| {
                p.parent()
                    .is_some_and(|parent| parent.parent().is_some_and(|m| m.exists()))
            })
            .collect()
    }
}

#[test]
fn memory_hog_is_out_of_memory() {
    let s = Scratch::new();
    // awk doubles a string until the 64 MiB limit stops it.
    let mut spec = s.spec(&["awk", "BEGIN { s = \"xxxxxxxx\"; while (1) s = s s }"]);
    spec.limits.memory = Some(64 << 20);
    let started = Instant::now();
    let (status, usage) = Sandbox::spawn(&spec)
        .expect("spawn")
        .wait_with_usage()
        .expect("wait");
    assert_eq!(status, ExitStatus::OutOfMemory);
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(usage.memory_peak.unwrap_or(0) <= 64 << 20, "{usage:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn memory_under_the_limit_is_fine() {
    let s = Scratch::new();
    let mut spec = s.spec(&[
        "sh",
        "-c",
        "x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo ${#x}",
    ]);
    spec.limits.memory = Some(64 << 20);
    let out = output(&spec);
    assert_eq!(out.status, ExitStatus::Exited(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000000\n");
    assert_eq!(out.usage.oom_kills, 0);
    assert!(
        out.usage.memory_peak.unwrap_or(0) > 1_000_000,
        "{:?}",
        out.usage
    );
}

#[test]
fn fork_bomb_is_bounded_by_the_pids_limit() {
    let s = Scratch::new();
    // The test tells the main shell when to end, through a bound directory, once it has
    // seen the bomb fill the limit: no race with a busy machine's scheduler.
    let signal = s.dir.path().join("signal");
    std::fs::create_dir(&signal).expect("signal dir");
    let mut spec = s.spec(&[
        "sh",
        "-c",
        // The bomb is forked first, while pids are free; it forks sleepers until
        // fork fails, and they stay, so the limit is held until the end (a classic
        // `bomb | bomb &` can die out between two looks on a busy machine). The main
        // shell then runs only builtins, so it outlives the bomb and ends the step;
        // pid 1 kills the sleepers.
        "(while :; do sleep 1000 & done) 2>/dev/null & \
         while [ ! -e /signal/go ]; do :; done; echo done",
    ]);
    spec.mounts.push(MountSpec::Bind {
        source: signal.clone(),
        target: "/signal".into(),
        readonly: true,
    });
    spec.limits.pids = Some(32);
    spec.id = Some(format!("bomb-{}", std::process::id()));
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    let stdout = sb.take_stdout().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s).map(|_| s)
    });
    let mut max = 0;
    let started = Instant::now();
    while max < 16 && started.elapsed() < Duration::from_secs(60) {
        max = max.max(sb.usage().pids_current.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    // A while longer at the limit: it must hold.
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(300) {
        max = max.max(sb.usage().pids_current.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(signal.join("go"), "").expect("signal");
    let out = reader.join().expect("reader").expect("read");
    let status = sb.wait().expect("wait");
    assert!(max <= 32, "pids.current reached {max}");
    assert!(max >= 16, "the bomb never got going: {max}");
    assert_eq!(out, "done\n");
    assert_eq!(status, ExitStatus::Exited(0));
    for d in cgroup_dirs(spec.id.as_deref().expect("id")) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn cpu_quota_limits_cpu_time() {
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "while :; do :; done"]);
    spec.limits.cpus = Some(0.25);
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let wall = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let cpu = sb.usage().cpu.expect("cpu accounted");
    let wall = wall.elapsed();
    sb.kill(libc::SIGKILL).expect("kill");
    sb.wait().expect("wait");
    // 0.25 CPU over ~1 s: well under half a second (unlimited would be ~1 s).
    assert!(cpu < wall.mul_f64(0.4), "used {cpu:?} in {wall:?}");
    assert!(cpu > Duration::from_millis(20), "used {cpu:?}");
}

#[test]
fn cgroups_exist_during_the_run_and_are_removed_after() {
    let s = Scratch::new();
    let id = format!("life-{}", std::process::id());
    let mut spec = s.spec(&["cat", "/proc/self/cgroup"]);
    spec.id = Some(id.clone());
    spec.limits.memory = Some(256 << 20);
    spec.limits.pids = Some(100);
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    let dirs = cgroup_dirs(&id);
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert!(d.exists(), "{} missing", d.display());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut sb.take_stdout().expect("stdout"), &mut text).expect("read");
    let (status, usage) = sb.wait_with_usage().expect("wait");
    assert!(status.success());
    // A cgroup namespace rooted at the sandbox's cgroup.
    for line in text.lines() {
        assert!(line.ends_with(":/"), "{text}");
    }
    assert!(usage.cpu.is_some_and(|c| c > Duration::ZERO), "{usage:?}");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn without_a_cgroup_the_pid_namespace_still_holds_everything() {
    let s = Scratch::new();
    // A background sleeper the command leaves behind: pid 1 ends it, no cgroup needed.
    let mut spec = s.spec(&["sh", "-c", "sleep 4321 & echo ran"]);
    spec.use_cgroup = false;
    spec.id = Some(format!("nocg-{}", std::process::id()));
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let dirs = cgroup_dirs(spec.id.as_deref().expect("id"));
    assert!(
        dirs.iter().all(|d| !d.exists()),
        "a cgroup was made: {dirs:?}"
    );
    let out = sb.wait_with_output().expect("wait");
    assert_eq!(out.status, ExitStatus::Exited(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    // Any process still running `sleep 4321` (read from /proc: no procps needed).
    let leftover: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x004321\x00")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftover.is_empty(),
        "the sleeper outlived the sandbox: pids {leftover:?}"
    );
    // Limits need a cgroup: refused, not silently ignored.
    let mut spec = s.spec(&["true"]);
    spec.use_cgroup = false;
    spec.limits.pids = Some(10);
    let err = Sandbox::spawn(&spec).expect_err("limits without a cgroup");
    assert!(err.to_string().contains("use_cgroup"), "{err}");
}
