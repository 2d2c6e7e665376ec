//! The root filesystem: overlays (many layers, read-only), bind roots,
//! mountpoints kept out of the upper dir, extra mounts.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use forge_sandbox::{MountSpec, ProcessSpec, RootFs, Sandbox, SandboxSpec, Stdio};

/// Everything below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            out.push(
                p.strip_prefix(base)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned(),
            );
            if e.file_type().expect("type").is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A layer with only busybox: no /proc, /dev, /sys, /etc.
fn bare_layer(s: &Scratch) -> PathBuf {
    let l = s.dir.path().join("bare");
    fs::create_dir_all(l.join("bin")).expect("mkdir");
    fs::copy(busybox_rootfs().join("bin/busybox"), l.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "true", "cat", "ls", "stat", "touch", "echo", "mkdir", "grep",
    ] {
        std::os::unix::fs::symlink("busybox", l.join("bin").join(applet)).expect("symlink");
    }
    l
}

#[test]
fn sandbox_mountpoints_never_reach_the_upper_dir() {
    let s = Scratch::new();
    let lower = bare_layer(&s);
    let data = s.dir.path().join("data");
    fs::create_dir(&data).expect("mkdir");
    let mut spec = s.spec_on(vec![lower.clone()], &["true"]);
    spec.mounts = vec![
        MountSpec::Bind {
            source: data.clone(),
            target: "/mnt/data".into(),
            readonly: false,
        },
        MountSpec::Tmpfs {
            target: "/var/cache/x".into(),
            size: Some(1 << 20),
            mode: 0o755,
        },
    ];
    assert!(stdout(&spec).is_empty());
    assert_eq!(
        tree(&s.upper()),
        Vec::<String>::new(),
        "upper dir not empty"
    );
    assert_eq!(
        tree(&lower),
        [
            "bin",
            "bin/busybox",
            "bin/cat",
            "bin/echo",
            "bin/grep",
            "bin/ls",
            "bin/mkdir",
            "bin/sh",
            "bin/stat",
            "bin/touch",
            "bin/true"
        ]
    );
    assert_eq!(
        fs::read_dir(s.state()).expect("state").count(),
        0,
        "state dir left behind"
    );
}

#[test]
fn writes_next_to_added_mountpoints_copy_up_normally() {
    let s = Scratch::new();
    let lower = bare_layer(&s);
    let spec = s.spec_on(
        vec![lower],
        &[
            "sh",
            "-c",
            "echo hi > /etc/motd && ls /etc | tr '\\n' ' ' && stat -c %a /etc",
        ],
    );
    let out = stdout(&spec);
    // /etc exists only because of our mountpoint layer; a file written in it
    // lands in the upper dir with its directory, and nothing of ours does.
    assert_eq!(out, "hostname hosts motd resolv.conf 755\n");
    assert_eq!(tree(&s.upper()), ["etc", "etc/motd"]);
    assert_eq!(
        fs::read_to_string(s.upper().join("etc/motd")).expect("motd"),
        "hi\n"
    );
}

#[test]
fn a_missing_cwd_is_made_in_the_upper_dir_through_symlinks() {
    let s = Scratch::new();
    let lower = bare_layer(&s);
    fs::create_dir(lower.join("real")).expect("mkdir");
    std::os::unix::fs::symlink("/real", lower.join("lnk")).expect("symlink");
    let mut spec = s.spec_on(vec![lower], &["sh", "-c", "pwd && stat -c '%a %u' ."]);
    spec.process.cwd = "/lnk/a/b".into();
    spec.process.uid = 65534;
    // As runc's MkdirAll after pivot_root: inside the root, as root, 0755.
    assert_eq!(stdout(&spec), "/real/a/b\n755 0\n");
    assert_eq!(tree(&s.upper()), ["real", "real/a", "real/a/b"]);
    assert!(fs::symlink_metadata(s.upper().join("lnk")).is_err());
}

#[test]
fn the_upper_dir_is_volatile_only_when_asked() {
    // A container's writes stay as durable as docker's; a build step, whose commit
    // syncs, may skip overlayfs's syncing.
    let root_mount = |volatile: bool| {
        let s = Scratch::new();
        let lower = bare_layer(&s);
        let mut spec = s.spec_on(vec![lower], &["cat", "/proc/self/mounts"]);
        spec.volatile_upper = volatile;
        stdout(&spec)
            .lines()
            .find(|l| l.split(' ').nth(1) == Some("/"))
            .expect("the root mount")
            .to_owned()
    };
    let durable = root_mount(false);
    assert!(!durable.contains("volatile"), "{durable}");
    let volatile = root_mount(true);
    assert!(volatile.contains("volatile"), "{volatile}");
}

#[test]
fn the_mountpoint_layer_keeps_existing_directories_attributes() {
    let s = Scratch::new();
    let lower = bare_layer(&s);
    fs::create_dir(lower.join("etc")).expect("mkdir etc");
    fs::set_permissions(lower.join("etc"), fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::chown(lower.join("etc"), Some(12), Some(34)).expect("chown");
    let mtime = libc::timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    };
    let c = std::ffi::CString::new(lower.join("etc").as_os_str().as_encoded_bytes()).expect("cstr");
    // SAFETY: valid path and times.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [mtime, mtime].as_ptr(), 0) },
        0
    );
    let spec = s.spec_on(vec![lower], &["stat", "-c", "%a %u %g %Y", "/etc", "/"]);
    let out = stdout(&spec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "750 12 34 1000000");
    let bare_root = fs::metadata(s.dir.path().join("bare")).expect("stat");
    assert_eq!(
        lines[1],
        format!(
            "{:o} {} {} {}",
            bare_root.mode() & 0o7777,
            bare_root.uid(),
            bare_root.gid(),
            bare_root.mtime()
        )
    );
    assert!(tree(&s.upper()).is_empty());
}

#[test]
fn symlinked_mount_targets_stay_inside_the_rootfs() {
    let s = Scratch::new();
    let lower = bare_layer(&s);
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    // An image symlink pointing at the host's path of a directory outside.
    std::os::unix::fs::symlink(&outside, lower.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("../../../..", lower.join("up")).expect("symlink");
    let mut spec = s.spec_on(vec![lower], &["sh", "-c", "ls -d /escape/x /up/y"]);
    spec.mounts = vec![
        MountSpec::Tmpfs {
            target: "/escape/x".into(),
            size: None,
            mode: 0o755,
        },
        MountSpec::Tmpfs {
            target: "/up/y".into(),
            size: None,
            mode: 0o755,
        },
    ];
    let out = stdout(&spec);
    assert_eq!(out, "/escape/x\n/up/y\n");
    assert_eq!(
        fs::read_dir(&outside).expect("outside").count(),
        0,
        "created outside the rootfs"
    );
    assert!(!s.dir.path().join("y").exists());
}

#[test]
fn two_hundred_layers_mount() {
    let s = Scratch::new();
    let layers_dir = s.dir.path().join("layers");
    let mut lowers = Vec::new();
    for i in 0..200 {
        let l = layers_dir.join(format!("{i:03}"));
        fs::create_dir_all(l.join("layers")).expect("mkdir");
        fs::write(l.join(format!("layers/{i}")), format!("layer {i}\n")).expect("write");
        fs::write(l.join("layers/top"), format!("{i}\n")).expect("write");
        lowers.push(l);
    }
    // Top-most first: layer 199 on top, busybox at the bottom.
    lowers.reverse();
    lowers.push(busybox_rootfs());
    assert_eq!(lowers.len(), 201);
    let spec = s.spec_on(
        lowers,
        &[
            "sh",
            "-c",
            "cat /layers/0 /layers/199 /layers/top; ls /layers | wc -l",
        ],
    );
    assert_eq!(stdout(&spec), "layer 0\nlayer 199\n199\n201\n");
}

#[test]
fn a_single_lower_dir_without_upper_is_a_read_only_view() {
    let s = Scratch::new();
    let mut process = ProcessSpec::new(["sh", "-c", "cat /etc/group | head -1; touch /x 2>/dev/null && echo wrote; echo ok > /tmp/y 2>/dev/null && echo wrote-tmp; echo done"]);
    process.stdout = Stdio::Piped;
    process.stderr = Stdio::Piped;
    let mut spec = SandboxSpec::new(
        RootFs::Overlay {
            lowerdirs: vec![busybox_rootfs()],
            upperdir: None,
            workdir: None,
        },
        process,
    );
    spec.state_dir = s.state();
    spec.cgroup_parent = "forge-test".into();
    assert_eq!(stdout(&spec), "root:x:0:\ndone\n");
}

#[test]
fn bind_rootfs_gets_its_created_mountpoints_removed() {
    let s = Scratch::new();
    let root = bare_layer(&s);
    let before = tree(&root);
    let mut process = ProcessSpec::new([
        "sh",
        "-c",
        "echo hi > /tmp-file; cat /etc/hostname; ls /proc/self >/dev/null && echo proc",
    ]);
    process.stdout = Stdio::Piped;
    process.stderr = Stdio::Piped;
    let mut spec = SandboxSpec::new(
        RootFs::Bind {
            path: root.clone(),
            readonly: false,
        },
        process,
    );
    spec.state_dir = s.state();
    spec.cgroup_parent = "forge-test".into();
    spec.hostname = "bound".into();
    assert_eq!(stdout(&spec), "bound\nproc\n");
    let mut expected = before.clone();
    expected.push("tmp-file".into());
    expected.sort();
    assert_eq!(tree(&root), expected);

    // Read-only: nothing can be written, not even by root.
    let mut process = ProcessSpec::new([
        "sh",
        "-c",
        "touch /new 2>/dev/null && echo wrote; echo done",
    ]);
    process.stdout = Stdio::Piped;
    let mut spec = SandboxSpec::new(
        RootFs::Bind {
            path: root.clone(),
            readonly: true,
        },
        process,
    );
    spec.state_dir = s.state();
    spec.cgroup_parent = "forge-test".into();
    assert_eq!(stdout(&spec), "done\n");
    assert_eq!(tree(&root), expected);
}

#[test]
fn bind_and_tmpfs_mounts() {
    let s = Scratch::new();
    let rw = s.dir.path().join("rw");
    let ro = s.dir.path().join("ro");
    fs::create_dir(&rw).expect("mkdir");
    fs::create_dir(&ro).expect("mkdir");
    fs::write(ro.join("file"), "read me\n").expect("write");
    let single = s.dir.path().join("single.txt");
    fs::write(&single, "one file\n").expect("write");
    let mut spec = s.spec(&[
        "sh",
        "-c",
        "echo written > /work/out; cat /src/file; touch /src/new 2>/dev/null && echo wrote-ro; \
         cat /etc/single.txt; stat -c '%a' /scratch; grep ' /scratch ' /proc/self/mountinfo | grep -o 'size=[0-9]*k'; \
         ls /scratch/inner",
    ]);
    spec.mounts = vec![
        MountSpec::Tmpfs {
            target: "/scratch".into(),
            size: Some(4 << 20),
            mode: 0o1777,
        },
        MountSpec::Bind {
            source: rw.clone(),
            target: "/work".into(),
            readonly: false,
        },
        MountSpec::Bind {
            source: ro.clone(),
            target: "/src".into(),
            readonly: true,
        },
        MountSpec::Bind {
            source: single,
            target: "/etc/single.txt".into(),
            readonly: true,
        },
        MountSpec::Bind {
            source: ro.clone(),
            target: "/scratch/inner".into(),
            readonly: true,
        },
    ];
    let out = stdout(&spec);
    assert_eq!(out, "read me\none file\n1777\nsize=4096k\nfile\n");
    assert_eq!(
        fs::read_to_string(rw.join("out")).expect("out"),
        "written\n"
    );
    assert!(!ro.join("new").exists());
    assert!(tree(&s.upper()).is_empty(), "{:?}", tree(&s.upper()));
}

#[test]
fn nothing_is_mounted_on_the_host_while_it_runs() {
    let s = Scratch::new();
    let spec = s.spec(&["sleep", "1000"]);
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let host = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!host.contains(&*s.dir.path().to_string_lossy()), "{host}");
    assert!(
        !host.contains(&*busybox_rootfs().to_string_lossy()),
        "the overlay is visible on the host: {host}"
    );
    sb.kill(libc::SIGKILL).expect("kill");
    sb.wait().expect("wait");
}
