//! What the command can and cannot reach: files, /proc, /sys, capabilities, ids.

mod common;

use std::fs;

use common::*;
use forge_sandbox::users;

#[test]
fn host_paths_outside_the_rootfs_are_unreachable() {
    let s = Scratch::new();
    let marker = s.dir.path().join("host-only-marker");
    fs::write(&marker, "secret").expect("write marker");
    let script = format!(
        "cat {m} 2>/dev/null && echo reachable; cd /../../..; pwd; ls / | tr '\\n' ' '; \
         ls /proc/1/root/ >/dev/null 2>&1 && echo root-of-1-readable; true",
        m = marker.display()
    );
    let out = stdout(&s.spec(&["sh", "-c", &script]));
    assert!(!out.contains("reachable"), "{out}");
    assert!(!out.contains("secret"), "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/"));
    // The busybox rootfs, with the sandbox's mountpoints: nothing of the host's /.
    assert_eq!(
        lines.next().map(str::trim),
        Some("bin dev etc proc root sys tmp"),
        "{out}"
    );
    // pid 1 is ours and privileged: the command may not look through it.
    assert!(!out.contains("root-of-1-readable"), "{out}");
}

#[test]
fn proc_kcore_and_friends_are_masked() {
    // Masked files read as /dev/null; masked directories are empty
    // read-only tmpfs. (This VM's kernel has no /proc/kcore: then it must
    // not appear either.)
    let out = sh(
        "for f in /proc/kcore /proc/keys /proc/timer_list; do \
           if [ -e $f ]; then echo $f $(wc -c < $f) $(stat -c '%t:%T' $f); else echo $f absent; fi; \
         done; \
         ls -A /sys/firmware /proc/acpi | grep -v : | grep -c . ; \
         grep -E ' /(sys/firmware|proc/acpi) ' /proc/self/mountinfo | awk '{print $5, $6, $9}'",
    );
    let lines: Vec<&str> = out.lines().collect();
    let kcore_on_host = std::path::Path::new("/proc/kcore").exists();
    if kcore_on_host {
        assert_eq!(lines[0], "/proc/kcore 0 1:3", "{out}");
    } else {
        assert_eq!(lines[0], "/proc/kcore absent", "{out}");
    }
    assert_eq!(lines[1], "/proc/keys 0 1:3", "{out}");
    assert_eq!(lines[2], "/proc/timer_list 0 1:3", "{out}");
    assert_eq!(lines[3].trim(), "0", "{out}");
    assert!(out.contains("/sys/firmware ro,"), "{out}");
    assert!(out.contains("/proc/acpi ro,"), "{out}");
}

#[test]
fn proc_sys_and_sys_are_read_only() {
    let out = sh(
        "echo evil > /proc/sys/kernel/hostname 2>/dev/null && echo wrote-hostname; \
         echo 1 > /proc/sysrq-trigger 2>/dev/null && echo wrote-sysrq; \
         echo 0 > /sys/kernel/mm/ksm/run 2>/dev/null && echo wrote-sys; \
         mkdir /sys/fs/x 2>/dev/null && echo mkdir-sys; \
         grep -E ' /(sys|proc/sys) ' /proc/self/mountinfo | awk '{print $5, $6}'; \
         hostname",
    );
    for bad in ["wrote-hostname", "wrote-sysrq", "wrote-sys", "mkdir-sys"] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    for line in out
        .lines()
        .filter(|l| l.starts_with("/sys") || l.starts_with("/proc/sys"))
    {
        assert!(
            line.split(' ').nth(1).unwrap_or("").starts_with("ro"),
            "{line}"
        );
    }
    assert!(out.lines().any(|l| l.starts_with("/proc/sys ")), "{out}");
    assert_eq!(out.lines().last(), Some("sandbox"));
}

fn status_fields(out: &str, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .unwrap_or_else(|| panic!("{k} missing in {out}"))
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn root_gets_dockers_capabilities_and_no_new_privs() {
    let out = sh("cat /proc/self/status");
    let f = status_fields(
        &out,
        &[
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Uid",
            "Gid",
        ],
    );
    assert_eq!(f[0], "0000000000000000");
    assert_eq!(f[1], "00000000a80425fb");
    assert_eq!(f[2], "00000000a80425fb");
    assert_eq!(f[3], "00000000a80425fb");
    assert_eq!(f[4], "0000000000000000");
    assert_eq!(f[5], "1");
    assert_eq!(f[6], "0\t0\t0\t0");
    assert_eq!(f[7], "0\t0\t0\t0");
}

#[test]
fn capabilities_can_be_chosen() {
    let s = Scratch::new();
    let mut spec = s.spec(&["cat", "/proc/self/status"]);
    let mut caps = forge_sandbox::CapSet::EMPTY;
    caps.insert(forge_sandbox::Capability::CHOWN);
    caps.insert(forge_sandbox::Capability::NET_ADMIN);
    spec.capabilities = Some(caps);
    let out = stdout(&spec);
    let f = status_fields(&out, &["CapEff", "CapBnd"]);
    assert_eq!(f, ["0000000000001001", "0000000000001001"]);
}

#[test]
fn nobody_with_supplementary_groups() {
    let s = Scratch::new();
    let mut spec = s.spec(&["cat", "/proc/self/status"]);
    spec.process.uid = 65534;
    spec.process.gid = 65534;
    spec.process.additional_gids = vec![1, 2, 65534];
    let out = stdout(&spec);
    let f = status_fields(
        &out,
        &[
            "Uid",
            "Gid",
            "Groups",
            "CapEff",
            "CapPrm",
            "CapBnd",
            "NoNewPrivs",
        ],
    );
    assert_eq!(f[0], "65534\t65534\t65534\t65534");
    assert_eq!(f[1], "65534\t65534\t65534\t65534");
    assert_eq!(f[2], "1 2 65534");
    // docker run -u: no effective or permitted capabilities, bounding kept.
    assert_eq!(f[3], "0000000000000000");
    assert_eq!(f[4], "0000000000000000");
    assert_eq!(f[5], "00000000a80425fb");
    assert_eq!(f[6], "1");
}

#[test]
fn numeric_ids_without_passwd_entries_work() {
    let s = Scratch::new();
    let mut spec = s.spec(&[
        "sh",
        "-c",
        "id; touch /tmp/f; stat -c '%u:%g' /tmp/f; touch /etc/x 2>/dev/null || echo denied",
    ]);
    spec.process.uid = 1000;
    spec.process.gid = 1000;
    let out = stdout(&spec);
    // No supplementary groups unless asked (moby's GetExecUser gives none for "1000:1000").
    assert_eq!(out, "uid=1000 gid=1000\n1000:1000\ndenied\n");
}

#[test]
fn users_resolve_against_the_rootfs() {
    let root = fs::File::open(busybox_rootfs()).expect("open rootfs");
    let u = users::resolve_user_in(std::os::fd::AsFd::as_fd(&root), "nobody").expect("nobody");
    assert_eq!((u.uid, u.gid), (65534, 65534));
    assert_eq!(u.home, std::path::PathBuf::from("/nonexistent"));
    let u = users::resolve_user_in(std::os::fd::AsFd::as_fd(&root), "1000:1000").expect("numeric");
    assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 1000, 0));
    assert!(users::resolve_user_in(std::os::fd::AsFd::as_fd(&root), "alice").is_err());
}

#[test]
fn users_resolve_through_an_overlay_view() {
    // A layer on top adds a user and a group listing it.
    let s = Scratch::new();
    let top = s.dir.path().join("top");
    fs::create_dir_all(top.join("etc")).expect("mkdir");
    fs::write(
        top.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1001:1001::/home/builder:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(
        top.join("etc/group"),
        "root:x:0:\nbuilder:x:1001:\nwheel:x:10:builder\n",
    )
    .expect("group");
    let rootfs = forge_sandbox::RootFs::Overlay {
        lowerdirs: vec![top, busybox_rootfs()],
        upperdir: Some(s.upper()),
        workdir: Some(s.dir.path().join("work")),
    };
    let view = forge_sandbox::RootFsView::open(&rootfs).expect("view");
    let u = view.resolve_user("builder").expect("builder");
    assert_eq!(
        (u.uid, u.gid, u.additional_gids.clone()),
        (1001, 1001, vec![10])
    );
    assert!(
        view.resolve_user("nobody").is_err(),
        "the top layer's passwd hides the lower one"
    );
    // Detached: invisible on the host.
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!info.contains(&*s.dir.path().to_string_lossy()));
}

#[test]
fn generated_etc_files() {
    let s = Scratch::new();
    let mut spec = s.spec(&[
        "sh",
        "-c",
        "cat /etc/hosts; echo --; cat /etc/hostname; echo --; grep -c nameserver /etc/resolv.conf",
    ]);
    spec.hostname = "h1".to_owned();
    spec.hosts = vec![("registry.local".to_owned(), "10.1.2.3".parse().expect("ip"))];
    let out = stdout(&spec);
    assert!(out.starts_with("127.0.0.1\tlocalhost h1\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.2.3\tregistry.local\n--\nh1\n--\n"), "{out}");
    assert_ne!(out.lines().last(), Some("0"), "{out}");
}

#[test]
fn cwd_env_umask_and_stdin() {
    use std::io::Write;
    let s = Scratch::new();
    let mut spec = s.spec(&["sh", "-c", "pwd; echo $FOO; umask; cat"]);
    spec.process.cwd = "/tmp".into();
    spec.process.env.push("FOO=bar baz".to_owned());
    spec.process.umask = 0o027;
    spec.process.stdin = forge_sandbox::Stdio::Piped;
    let mut sb = forge_sandbox::Sandbox::spawn(&spec).expect("spawn");
    let mut stdin = sb.take_stdin().expect("stdin");
    stdin.write_all(b"from stdin\n").expect("write");
    drop(stdin);
    let out = sb.wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/tmp\nbar baz\n0027\nfrom stdin\n"
    );
    assert!(out.status.success());
}
