//! The on-disk scratch directories used where the kernel (before 6.15)
//! cannot take overlay layers and bind sources from a detached tmpfs:
//! forced here, the main scenarios must behave the same.

mod common;

use std::fs;

use common::*;
use forge_sandbox::{MountSpec, Sandbox};

fn disk() {
    forge_sandbox::force_disk_scratch();
}

#[test]
fn etc_files_and_mountpoints_without_tmpfs() {
    disk();
    let s = Scratch::new();
    let lower = s.dir.path().join("bare");
    fs::create_dir_all(lower.join("bin")).expect("mkdir");
    fs::copy(
        busybox_rootfs().join("bin/busybox"),
        lower.join("bin/busybox"),
    )
    .expect("copy");
    std::os::unix::fs::symlink("busybox", lower.join("bin/sh")).expect("symlink");
    let data = s.dir.path().join("data");
    fs::create_dir(&data).expect("mkdir");
    let mut spec = s.spec_on(
        vec![lower],
        &[
            "sh",
            "-c",
            "read h < /etc/hostname; echo $h; echo x > /mnt/data/f",
        ],
    );
    spec.hostname = "disky".into();
    spec.mounts = vec![MountSpec::Bind {
        source: data.clone(),
        target: "/mnt/data".into(),
        readonly: false,
    }];
    let mut sb = Sandbox::spawn(&spec).expect("spawn");
    // While it runs, its scratch dir is on disk next to its lock.
    let names: Vec<String> = fs::read_dir(s.state())
        .expect("state")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".d")), "{names:?}");
    let out = {
        let mut o = String::new();
        std::io::Read::read_to_string(&mut sb.take_stdout().expect("stdout"), &mut o)
            .expect("read");
        o
    };
    assert!(sb.wait().expect("wait").success());
    assert_eq!(out, "disky\n");
    assert_eq!(fs::read_to_string(data.join("f")).expect("f"), "x\n");
    assert_eq!(fs::read_dir(s.upper()).expect("upper").count(), 0);
    assert_eq!(fs::read_dir(s.state()).expect("state").count(), 0);
}
