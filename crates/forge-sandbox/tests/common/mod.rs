//! Shared test helpers: a cached busybox rootfs and sandboxes on fresh
//! overlays of it.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_sandbox::{Output, ProcessSpec, RootFs, Sandbox, SandboxSpec, Stdio};

/// The busybox rootfs built by testdata/busybox-rootfs.sh, once per target dir.
pub fn busybox_rootfs() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forge-sandbox");
    fs::create_dir_all(&base).expect("create cache dir");
    let dest = base.join("busybox-rootfs");
    // Test binaries run in parallel processes: build under a lock.
    let lock = File::create(base.join("busybox-rootfs.lock")).expect("lock file");
    // SAFETY: flock on our own descriptor.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if !dest.join("bin/busybox").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/busybox-rootfs.sh");
        let st = Command::new("sh")
            .arg(&script)
            .arg(&dest)
            .status()
            .expect("run busybox-rootfs.sh");
        assert!(st.success(), "busybox-rootfs.sh failed");
    }
    dest
}

/// A scratch area per test: upper/work dirs and a state dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        // On the same filesystem as the rootfs, as a store would be.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forge-sandbox");
        fs::create_dir_all(&base).expect("create scratch base");
        let dir = tempfile::Builder::new()
            .prefix("t-")
            .tempdir_in(&base)
            .expect("tempdir");
        for d in ["upper", "work", "state"] {
            fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Scratch { dir }
    }

    pub fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `args` on a writable overlay of the busybox rootfs, output piped.
    pub fn spec(&self, args: &[&str]) -> SandboxSpec {
        self.spec_on(vec![busybox_rootfs()], args)
    }

    pub fn spec_on(&self, lowerdirs: Vec<PathBuf>, args: &[&str]) -> SandboxSpec {
        let mut process = ProcessSpec::new(args.iter().copied());
        process.stdin = Stdio::Null;
        process.stdout = Stdio::Piped;
        process.stderr = Stdio::Piped;
        let mut spec = SandboxSpec::new(
            RootFs::Overlay {
                lowerdirs,
                upperdir: Some(self.upper()),
                workdir: Some(self.dir.path().join("work")),
            },
            process,
        );
        spec.state_dir = self.state();
        spec.cgroup_parent = "forge-test".to_owned();
        spec
    }
}

/// Run and collect output; panics on a setup error.
pub fn output(spec: &SandboxSpec) -> Output {
    Sandbox::spawn(spec)
        .expect("spawn")
        .wait_with_output()
        .expect("wait")
}

pub fn stdout(spec: &SandboxSpec) -> String {
    let out = output(spec);
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// `sh -c script` on a fresh overlay; returns stdout, asserting success.
pub fn sh(script: &str) -> String {
    let s = Scratch::new();
    stdout(&s.spec(&["sh", "-c", script]))
}

/// Every host pid whose pid namespace is `ns` (as `readlink /proc/PID/ns/pid`).
pub fn pids_in_namespace(ns: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid"))
            .map(|l| l.to_string_lossy() == ns)
            .unwrap_or(false)
        {
            pids.push(pid);
        }
    }
    pids
}
