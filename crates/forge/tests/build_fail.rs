//! A failing RUN: `forge build` exits non-zero naming the Dockerfile line, the exit code
//! and the step's last output; no sandbox process, mount or cgroup of it remains; the next
//! build, with the step fixed, takes the steps before it from the cache. Alone in its test
//! binary so that no other test's sandboxes are about while it looks for leftovers.

#[path = "support/build.rs"]
mod build_support;
mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use build_support::*;
use support::*;

/// Every `forge/<id>` cgroup in every mounted hierarchy (v1 controllers and v2).
fn forge_cgroups() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_path_buf()];
    for h in list(base) {
        roots.push(base.join(h));
    }
    for r in roots {
        for id in list(&r.join("forge")) {
            if r.join("forge").join(&id).is_dir() {
                out.insert(format!("{}/forge/{id}", r.display()));
            }
        }
    }
    out
}

/// `forge-init` processes whose mounts come from the store at `root`.
fn sandbox_processes(root: &Path) -> Vec<String> {
    let store = root.display().to_string();
    let mut out = Vec::new();
    for pid in list(Path::new("/proc")) {
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "forge-init" {
            continue;
        }
        let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // A forge-init of another store (another test run) is not ours; one whose
        // mountinfo cannot be read is counted, to be safe.
        if mounts.is_empty() || mounts.contains(&store) {
            out.push(format!(
                "{pid} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    out
}

/// The tests of this file look at system-wide state: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_failing_run_reports_its_line_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "RUN needs the sandbox, which needs root"
    );
    let tmp = scratch("build-fail");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(&ctx).expect("mkdir");
    let dockerfile = "FROM busybox\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN echo before; echo to-stderr >&2; exit 3\nRUN echo after > /after\n";
    fs::write(ctx.join("Dockerfile"), dockerfile).expect("write");
    fs::write(ctx.join("a.txt"), "a\n").expect("write");
    let c = ctx.to_str().expect("utf-8");
    let cgroups_before = forge_cgroups();

    let r = build(&root, &["-t", "fail:1", c], &[]);
    assert!(!r.ok, "the build fails:\n{}", r.stderr);
    assert_eq!(r.code, Some(1), "docker's exit status: {}", r.stderr);
    assert!(r.stderr.contains("exit code: 3"), "{}", r.stderr);
    assert!(
        r.stderr.contains("echo before; echo to-stderr >&2; exit 3"),
        "the command: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("Dockerfile:4"),
        "the Dockerfile line: {}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains(">>>") && l.contains("exit 3")),
        "the failing line shown: {}",
        r.stderr
    );
    // The step's output, in the progress and in the error's tail.
    let tail = r
        .stderr
        .split("------")
        .nth(1)
        .unwrap_or_else(|| panic!("an output tail between ------ lines: {}", r.stderr));
    assert!(
        tail.contains("before") && tail.contains("to-stderr"),
        "{}",
        r.stderr
    );
    assert!(
        !steps(&r.stderr)
            .iter()
            .any(|s| s.name.ends_with("RUN echo after > /after")),
        "nothing after the failing step starts: {}",
        r.stderr
    );
    assert!(
        !run(&root, &["images", "-q", "fail:1"])
            .stdout
            .contains("sha256"),
        "no image was named"
    );

    // Nothing of the sandbox remains: process, mount, cgroup.
    let procs = sandbox_processes(&root);
    assert!(procs.is_empty(), "sandbox processes remain: {procs:?}");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let store = root.display().to_string();
    let mounts: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&store)).collect();
    assert!(mounts.is_empty(), "mounts remain: {mounts:#?}");
    let init_mounts = fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    assert!(
        !init_mounts.contains(&store),
        "mounts remain in the initial namespace"
    );
    let leaked: Vec<String> = forge_cgroups()
        .difference(&cgroups_before)
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "cgroups remain: {leaked:?}");
    let tmp_left = list(&root.join("tmp"));
    assert!(
        tmp_left.is_empty(),
        "the store's tmp/ is clean: {tmp_left:?}"
    );

    // Fixed: the steps before the failing one come from the cache.
    fs::write(
        ctx.join("Dockerfile"),
        dockerfile.replace("exit 3", "exit 0"),
    )
    .expect("write");
    let r = build_ok(&root, &["-t", "fail:1", c]);
    let cached: Vec<String> = cached(&r.stderr);
    let ran: Vec<String> = ran(&r.stderr);
    assert!(
        cached.len() == 2
            && cached[0].ends_with("RUN echo first > /first")
            && cached[1].ends_with("COPY a.txt /a.txt"),
        "cached: {cached:?}\n{}",
        r.stderr
    );
    assert_eq!(ran.len(), 2, "{}", r.stderr);
    let rootfs = unpack(&root, "fail:1", &tmp.path().join("u")).expect("unpack");
    assert_eq!(
        fs::read_to_string(rootfs.join("after")).expect("after"),
        "after\n"
    );
    assert!(sandbox_processes(&root).is_empty());
}

#[test]
fn a_killed_build_leaves_no_process_mount_or_cgroup() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "RUN needs the sandbox, which needs root"
    );
    let tmp = scratch("build-killed");
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    import_busybox_image(&root);
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo started; sleep 60\n",
    )
    .expect("write");
    let cgroups_before = forge_cgroups();
    let mut child = forge(&root)
        .args(["build", "--progress=plain", "-t", "killed:1"])
        .arg(&ctx)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn forge");
    // Wait until the RUN is running (its output is in the progress).
    {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.ends_with(" started"));
        assert!(started, "the RUN started");
        std::thread::spawn(move || lines.for_each(drop));
    }
    assert!(
        !sandbox_processes(&root).is_empty(),
        "the sandbox is running"
    );
    child.kill().expect("SIGKILL forge");
    child.wait().expect("wait");
    // The sandbox dies with forge (its lifeline closes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !sandbox_processes(&root).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let procs = sandbox_processes(&root);
    assert!(
        procs.is_empty(),
        "sandbox processes outlived forge: {procs:?}"
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let store = root.display().to_string();
    assert!(
        !mountinfo.lines().any(|l| l.contains(&store)),
        "mounts outlived forge"
    );
    // The next build in the store removes what the killed one could not (steps make
    // no cgroup of their own; none may appear either).
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo next\n").expect("write");
    build_ok(&root, &["-t", "next:1", ctx.to_str().expect("utf-8")]);
    let leaked: Vec<String> = forge_cgroups()
        .difference(&cgroups_before)
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "cgroups remain: {leaked:?}");
}
