//! `forge run` in the foreground: output and exit codes as docker's, the image config
//! deciding the process, images straight from OCI layouts and archives, read-only
//! roots, memory and pids limits, isolation, volumes, and a real terminal with `-it`.

#[path = "support/build.rs"]
mod build_support;
#[path = "run_support/mod.rs"]
mod run_support;
mod support;

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use build_support::build_ok;
use run_support::*;
use serde_json::json;
use support::{forge, ok, run};

#[test]
fn built_image_runs_with_its_config_and_exit_code() {
    let (tmp, root) = store_with_busybox("run-basic");
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nENV GREETING=hello\nWORKDIR /app\n\
         RUN echo 'echo \"$GREETING from $(pwd) as $(id -u) args:$*\"; exit 7' > /app/run.sh\n\
         USER 1000\nENTRYPOINT [\"sh\", \"/app/run.sh\"]\nCMD [\"default\"]\n",
    )
    .expect("write");
    build_ok(&root, &["-t", "app:1.0", ctx.to_str().expect("utf-8")]);

    let (out, _) = expect_code(&root, &["run", "--rm", "app:1.0"], 7);
    assert_eq!(out, "hello from /app as 1000 args:default\n");
    // CMD replaced, Env and WorkingDir and User overridden.
    let (out, _) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "-u",
            "0",
            "app:1.0",
            "x",
            "y",
        ],
        7,
    );
    assert_eq!(out, "hi from /tmp as 0 args:x y\n");
    // --entrypoint drops the image's CMD too.
    let (out, _) = expect_code(
        &root,
        &["run", "--rm", "--entrypoint", "echo", "app:1.0", "plain"],
        0,
    );
    assert_eq!(out, "plain\n");
    // docker's exit codes for a command that cannot run.
    let (_, err) = expect_code(&root, &["run", "--rm", "busybox", "no-such-command"], 127);
    assert!(err.contains("no-such-command"), "{err}");
    expect_code(&root, &["run", "--rm", "busybox", "/etc/passwd"], 126);
    let (_, err) = expect_code(
        &root,
        &["run", "--rm", "--pull", "never", "no-such-image:1"],
        125,
    );
    assert!(err.contains("No such image"), "{err}");
    // A usage error is forge's own failure, 125 as docker's CLI; help is not an error.
    let (_, err) = expect_code(&root, &["run", "--bogus", "busybox"], 125);
    assert!(err.contains("--bogus"), "{err}");
    let (out, _) = expect_code(&root, &["run", "--help"], 0);
    assert!(out.contains("--pull"), "{out}");
    // A signal's death is 128 + the signal.
    expect_code(
        &root,
        &["run", "--rm", "busybox", "sh", "-c", "kill -9 $$"],
        137,
    );
    // --rm left nothing behind.
    assert!(ps_json(&root).is_empty(), "{:?}", ps_json(&root));
}

#[test]
fn images_straight_from_layouts_and_archives() {
    let (tmp, root) = store_with_busybox("run-archives");
    let oci_tar = tmp.path().join("bb.oci.tar");
    let docker_tar = tmp.path().join("bb.docker.tar");
    for (fmt, path) in [("oci-archive", &oci_tar), ("docker-archive", &docker_tar)] {
        ok(
            &root,
            &[
                "save",
                "--format",
                fmt,
                "-o",
                path.to_str().expect("p"),
                "busybox",
            ],
        );
    }
    let layout = tmp.path().join("layout");
    fs::create_dir_all(&layout).expect("mkdir");
    support::sh(
        Command::new("tar")
            .arg("-xf")
            .arg(&oci_tar)
            .arg("-C")
            .arg(&layout),
    );

    let other = tmp.path().join("other-store");
    for image in [
        format!("oci:{}", layout.display()),
        format!("oci:{}:latest", layout.display()),
        format!("oci-archive:{}", oci_tar.display()),
        format!("docker-archive:{}", docker_tar.display()),
    ] {
        let (out, _) = expect_code(&other, &["run", "--rm", &image, "echo", "from-archive"], 0);
        assert_eq!(out, "from-archive\n", "{image}");
    }
    // Read in without being tagged.
    let images = ok(&other, &["images"]);
    assert!(!images.contains("busybox"), "{images}");
    let (_, err) = expect_code(
        &other,
        &[
            "run",
            "--rm",
            &format!("oci:{}:nope", layout.display()),
            "true",
        ],
        125,
    );
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn read_only_limits_and_isolation() {
    let (_tmp, root) = store_with_busybox("run-limits");
    let (_, err) = expect_code(
        &root,
        &["run", "--rm", "--read-only", "busybox", "touch", "/x"],
        1,
    );
    assert!(err.contains("Read-only file system"), "{err}");
    // A tmpfs stays writable on a read-only root.
    expect_code(
        &root,
        &[
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "busybox",
            "touch",
            "/scratch/x",
        ],
        0,
    );
    // A missing working directory is made first, even on a read-only root, as
    // docker's daemon does; `..` is walked by the kernel, as runc's MkdirAll.
    let (out, _) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "--read-only",
            "-w",
            "/new/dir",
            "busybox",
            "sh",
            "-c",
            "pwd; touch here",
        ],
        1,
    );
    assert_eq!(out, "/new/dir\n");
    let (out, _) = expect_code(
        &root,
        &["run", "--rm", "-w", "/bin/../made", "busybox", "pwd"],
        0,
    );
    assert_eq!(out, "/made\n");

    // 64 MB of memory in a 16 MB container: the OOM killer ends it.
    let r = run(
        &root,
        &[
            "run",
            "--name",
            "hog",
            "--memory",
            "16m",
            "busybox",
            "sh",
            "-c",
            "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(r.code, Some(137), "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("survived"));
    assert_eq!(inspect_field(&root, "hog", "{{.State.OOMKilled}}"), "true");
    ok(&root, &["rm", "hog"]);

    // Five tasks at most: the sixth fork fails.
    let r = run(
        &root,
        &[
            "run",
            "--rm",
            "--pids-limit",
            "5",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done",
        ],
    );
    assert_eq!(r.code, Some(2), "sh's status when fork fails: {}", r.stderr);
    assert!(r.stderr.contains("can't fork"), "{}", r.stderr);
    // Without the limit the same loop works.
    expect_code(
        &root,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 0.1 & done; wait",
        ],
        0,
    );

    // Its own hostname and only its own processes.
    let (out, _) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "-h",
            "boxy",
            "busybox",
            "sh",
            "-c",
            "hostname; ps -o pid,comm | tail -n +2",
        ],
        0,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "boxy");
    let pids: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert!(
        pids.len() <= 4 && pids.contains(&"1"),
        "processes seen: {out}"
    );
    // The default hostname is the short container id.
    let id_host = ok(&root, &["run", "--name", "named", "busybox", "hostname"]);
    let id = container_id(&root, "named");
    assert_eq!(id_host.trim(), &id[..12]);
    ok(&root, &["rm", "named"]);
}

#[test]
fn volumes_outlive_containers() {
    let (tmp, root) = store_with_busybox("run-volumes");
    ok(
        &root,
        &[
            "run",
            "--name",
            "writer",
            "-v",
            "data:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    );
    // inspect lists the mount in docker's MountPoint shape; Source holds the data.
    let mounts: serde_json::Value =
        serde_json::from_str(&inspect_field(&root, "writer", "{{json .Mounts}}"))
            .expect("mounts json");
    let m = &mounts[0];
    assert_eq!(
        (
            &m["Type"],
            &m["Name"],
            &m["Destination"],
            &m["RW"],
            &m["Driver"]
        ),
        (
            &json!("volume"),
            &json!("data"),
            &json!("/data"),
            &json!(true),
            &json!("local")
        ),
        "{mounts}"
    );
    let source = PathBuf::from(m["Source"].as_str().expect("Source"));
    assert_eq!(fs::read_to_string(source.join("f")).expect("f"), "kept\n");
    ok(&root, &["rm", "writer"]);
    let out = ok(
        &root,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/f",
        ],
    );
    assert_eq!(out, "kept\n");
    assert!(ok(&root, &["volume", "ls", "-q"])
        .lines()
        .any(|l| l == "data"));
    let (_, err) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            "busybox",
            "touch",
            "/data/g",
        ],
        1,
    );
    assert!(err.contains("Read-only"), "{err}");

    // A new named volume starts with the image's content at its mount point.
    let out = ok(
        &root,
        &[
            "run",
            "--rm",
            "-v",
            "etc:/etc",
            "busybox",
            "cat",
            "/etc/passwd",
        ],
    );
    assert!(out.contains("root:"), "{out}");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&root, &["volume", "inspect", "etc"])).expect("json");
    let mp = inspect[0]["Mountpoint"]
        .as_str()
        .expect("mountpoint")
        .to_owned();
    assert!(std::path::Path::new(&mp).join("passwd").exists());

    // Bind mounts of host directories.
    let host = tmp.path().join("host");
    fs::create_dir_all(&host).expect("mkdir");
    let spec = format!("{}:/host", host.display());
    ok(
        &root,
        &[
            "run",
            "--rm",
            "-v",
            &spec,
            "busybox",
            "sh",
            "-c",
            "echo from-ctr > /host/out",
        ],
    );
    assert_eq!(
        fs::read_to_string(host.join("out")).expect("read"),
        "from-ctr\n"
    );

    // Image VOLUMEs become anonymous volumes, removed by rm -v.
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN mkdir /v && echo seeded > /v/s\nVOLUME /v\n",
    )
    .expect("write");
    build_ok(&root, &["-t", "withvol:1", ctx.to_str().expect("utf-8")]);
    let before = ok(&root, &["volume", "ls", "-q"]).lines().count();
    let out = ok(
        &root,
        &["run", "--name", "anon", "withvol:1", "cat", "/v/s"],
    );
    assert_eq!(out, "seeded\n");
    assert_eq!(
        ok(&root, &["volume", "ls", "-q"]).lines().count(),
        before + 1
    );
    let (_, err) = expect_code(&root, &["volume", "rm", "data"], 0);
    assert!(err.is_empty());
    ok(&root, &["rm", "-v", "anon"]);
    assert_eq!(
        ok(&root, &["volume", "ls", "-q"]).lines().count(),
        before - 1
    );
    ok(&root, &["volume", "rm", "etc"]);
    assert!(ok(&root, &["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn interactive_tty_is_a_pty() {
    let (_tmp, root) = store_with_busybox("run-tty");
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .expect("openpty");
    let slave: OwnedFd = pty.slave;
    let mut child = forge(&root)
        .args([
            "run",
            "--rm",
            "-it",
            "busybox",
            "sh",
            "-c",
            "tty; stty size",
        ])
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn forge");
    let status = child.wait().expect("wait");
    // Everything the container wrote is in the master's buffer by now.
    let mut master = fs::File::from(pty.master);
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .expect("nonblocking");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(status.success(), "{out}");
    assert!(out.contains("/dev/pts/"), "tty output: {out:?}");
    assert!(out.contains("33 101"), "window size: {out:?}");
}

#[test]
fn remaining_flags_reach_the_container() {
    let (tmp, root) = store_with_busybox("run-flags");
    let env_file = tmp.path().join("env");
    fs::write(&env_file, "# a comment\nFROM_FILE=yes\nOVERRIDDEN=file\n").expect("write");
    let out = ok(
        &root,
        &[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().expect("utf-8"),
            "-e",
            "OVERRIDDEN=flag",
            "busybox",
            "sh",
            "-c",
            "echo $FROM_FILE $OVERRIDDEN",
        ],
    );
    assert_eq!(out, "yes flag\n");

    // --cpus: the CFS quota; --label: in ps and inspect; --stop-signal and
    // --stop-timeout: what stop sends and how long it waits.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "flags",
            "--cpus",
            "0.5",
            "--label",
            "team=forge",
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 3' USR1; while true; do sleep 0.1; done",
        ],
    );
    let id = container_id(&root, "flags");
    let (_, err) = expect_code(
        &root,
        &["run", "-d", "--name", "flags", "busybox", "true"],
        125,
    );
    assert!(err.contains("is already in use"), "{err}");
    let quota = cgroup_dirs(&id)
        .into_iter()
        .find_map(|d| {
            fs::read_to_string(d.join("cpu.cfs_quota_us"))
                .ok()
                .or_else(|| fs::read_to_string(d.join("cpu.max")).ok())
        })
        .expect("a cpu cgroup");
    assert!(quota.starts_with("50000"), "{quota}");
    assert_eq!(
        inspect_field(&root, "flags", "{{.HostConfig.NanoCpus}}"),
        "500000000"
    );
    assert_eq!(ps_entry(&root, "flags")["Labels"], "team=forge");
    assert_eq!(
        inspect_field(&root, "flags", "{{.Config.StopSignal}}"),
        "SIGUSR1"
    );
    ok(&root, &["stop", "flags"]);
    assert!(ok(&root, &["logs", "flags"]).contains("got-usr1"));
    assert_eq!(inspect_field(&root, "flags", "{{.State.ExitCode}}"), "3");
    // A container that ignores its stop signal is killed after --stop-timeout.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "stubborn",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; while true; do sleep 0.1; done",
        ],
    );
    let t = std::time::Instant::now();
    ok(&root, &["stop", "stubborn"]);
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        inspect_field(&root, "stubborn", "{{.State.ExitCode}}"),
        "137"
    );
    ok(&root, &["rm", "flags", "stubborn"]);
    // Bad flags are forge's errors (125), before anything is created.
    expect_code(
        &root,
        &["run", "--rm", "-p", "80/udp", "busybox", "true"],
        125,
    );
    expect_code(
        &root,
        &["run", "--rm", "--memory", "lots", "busybox", "true"],
        125,
    );
    expect_code(
        &root,
        &["run", "--rm", "--network", "bridge0", "busybox", "true"],
        125,
    );
    expect_code(
        &root,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "8080:80",
            "busybox",
            "true",
        ],
        125,
    );
    assert!(ps_json(&root).is_empty());
}

#[test]
fn terminal_resizes_reach_the_container() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};

    let (_tmp, root) = store_with_busybox("run-winch");
    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(33, 101)), None).expect("openpty");
    let slave: OwnedFd = pty.slave;
    let mut cmd = forge(&root);
    cmd.args([
        "run",
        "--rm",
        "-it",
        "busybox",
        "sh",
        "-c",
        "trap 'stty size; exit 0' WINCH; stty size; while true; do sleep 0.05; done",
    ])
    .stdin(Stdio::from(slave.try_clone().expect("dup")))
    .stdout(Stdio::from(slave.try_clone().expect("dup")))
    .stderr(Stdio::from(slave.try_clone().expect("dup")));
    // SAFETY: setsid and ioctl are async-signal-safe; the terminal becomes
    // forge's controlling terminal, as an interactive shell's would be.
    unsafe {
        cmd.pre_exec(|| {
            if nix::libc::setsid() < 0 || nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn forge");
    drop(slave);
    let seen = Arc::new(Mutex::new(String::new()));
    let mut master = fs::File::from(pty.master);
    let resize_fd = master.try_clone().expect("dup master");
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let text = || seen.lock().expect("lock").clone();
    wait_until(10, "the first size", || text().contains("33 101"));
    // The user's terminal grows: the kernel tells forge (SIGWINCH), forge the container.
    // SAFETY: TIOCSWINSZ reads a winsize.
    let r =
        unsafe { nix::libc::ioctl(resize_fd.as_raw_fd(), nix::libc::TIOCSWINSZ, &size(40, 120)) };
    assert_eq!(r, 0);
    wait_until(10, "the new size", || text().contains("40 120"));
    let status = child.wait().expect("wait");
    assert!(status.success(), "{}", text());
}

#[test]
fn images_that_containers_use_are_kept_by_rmi_and_prune() {
    let (tmp, root) = store_with_busybox("run-image-in-use");
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo v1 > /v\n").expect("write");
    build_ok(&root, &["-t", "used:1", ctx.to_str().expect("utf-8")]);
    ok(&root, &["create", "--name", "user1", "used:1", "cat", "/v"]);
    let id = ok(&root, &["images", "-q", "used:1"]).trim().to_string();

    // docker's conflict on the last name of an image a container uses.
    let r = run(&root, &["rmi", "used:1"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains(
            "conflict: unable to remove repository reference \"used:1\" (must force) - container"
        ),
        "{}",
        r.stderr
    );
    let r = run(&root, &["rmi", &id]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("image is being used by stopped container"),
        "{}",
        r.stderr
    );

    // Pruning everything leaves it; a forced rmi only untags it.
    ok(&root, &["image", "prune", "-a", "-f"]);
    assert_eq!(ok(&root, &["images", "-q", "used:1"]).trim(), id);
    let out = ok(&root, &["rmi", "-f", "used:1"]);
    assert!(out.contains("Untagged: used:1"), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    ok(&root, &["image", "prune", "-a", "-f"]);
    assert!(
        ok(&root, &["images", "-a", "-q"]).contains(&id),
        "the unnamed image stays while its container exists"
    );
    // The container still starts and sees its image's files.
    let out = ok(&root, &["start", "-a", "user1"]);
    assert_eq!(out, "v1\n");

    // Once the container is gone, prune removes the image.
    ok(&root, &["rm", "user1"]);
    ok(&root, &["image", "prune", "-a", "-f"]);
    assert!(!ok(&root, &["images", "-a", "-q"]).contains(&id));
}

#[test]
fn containers_leave_no_new_privs_off_as_docker() {
    let (_tmp, root) = store_with_busybox("run-nnp");
    let (out, _) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "busybox",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ],
        0,
    );
    assert_eq!(out, "NoNewPrivs:\t0\n");
    let id = ok(&root, &["run", "-d", "busybox", "sleep", "30"]);
    let id = id.trim();
    let out = ok(
        &root,
        &["exec", id, "grep", "NoNewPrivs", "/proc/self/status"],
    );
    assert_eq!(out, "NoNewPrivs:\t0\n");
    ok(&root, &["rm", "-f", id]);
}

/// What docker 20.10's `docker run` shows on the same busybox image (checked side by
/// side): HOME from passwd, the primary group among the supplementary ones, and a /dev
/// without runc's optional `core` link.
#[test]
fn identity_and_dev_as_docker_run_shows_them() {
    let (_tmp, root) = store_with_busybox("run-identity");
    let (out, _) = expect_code(
        &root,
        &["run", "--rm", "busybox", "sh", "-c", "echo $HOME; id"],
        0,
    );
    assert_eq!(out, "/root\nuid=0(root) gid=0(root) groups=0(root)\n");
    let (out, _) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "-u",
            "nobody",
            "busybox",
            "sh",
            "-c",
            "echo $HOME; id",
        ],
        0,
    );
    assert_eq!(
        out,
        "/nonexistent\nuid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n"
    );
    let (out, _) = expect_code(
        &root,
        &[
            "run",
            "--rm",
            "-u",
            "1000:1000",
            "-e",
            "HOME=/h",
            "busybox",
            "sh",
            "-c",
            "echo $HOME; id",
        ],
        0,
    );
    assert_eq!(out, "/h\nuid=1000 gid=1000 groups=1000\n");
    let (out, _) = expect_code(&root, &["run", "--rm", "busybox", "ls", "/dev"], 0);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [
            "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
            "stdout", "tty", "urandom", "zero"
        ]
    );
}

/// A kept container's writes are as durable as docker's (its root overlay is not
/// `volatile`, so its own fsyncs reach the disk); a `--rm` one, deleted on exit, skips
/// syncing a layer nobody keeps.
#[test]
fn only_removed_containers_have_a_volatile_root() {
    let (_tmp, root) = store_with_busybox("run-durable");
    let script = "grep ' / ' /proc/self/mounts | grep -c volatile; true";
    let (kept, _) = expect_code(
        &root,
        &["run", "--name", "kept", "busybox", "sh", "-c", script],
        0,
    );
    assert_eq!(kept, "0\n");
    let (removed, _) = expect_code(&root, &["run", "--rm", "busybox", "sh", "-c", script], 0);
    assert_eq!(removed, "1\n");
    // The kept one starts again on its durable upper dir.
    let (again, _) = expect_code(&root, &["start", "-a", "kept"], 0);
    assert_eq!(again, "0\n");
}
