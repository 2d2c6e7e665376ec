//! `forge cp` as docker's: both directions, running and stopped containers,
//! docker's destination rules, tar streams, owners, and paths that try to
//! leave the container's root.

#[path = "support/build.rs"]
mod build_support;
#[path = "run_support/mod.rs"]
mod run_support;
mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use run_support::*;
use support::{forge, ok, run};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn cp_out_follows_dockers_destination_rules() {
    let (tmp, root) = store_with_busybox("cp-out");
    let setup = "mkdir -p /d/sub && echo one > /d/f1 && echo two > /d/sub/f2 && \
                 chown 7:8 /d/f1 && ln -s /etc/passwd /pw && ln -s /etc /d/etc";
    ok(
        &root,
        &["run", "--name", "src", "busybox", "sh", "-c", setup],
    );
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).expect("out");

    // A file to a new name, and into an existing directory under its own name.
    ok(&root, &["cp", "src:/d/f1", s(&out.join("renamed"))]);
    assert_eq!(fs::read_to_string(out.join("renamed")).expect("f"), "one\n");
    ok(&root, &["cp", "src:/d/f1", s(&out)]);
    let m = fs::metadata(out.join("f1")).expect("f1");
    assert_eq!((m.uid(), m.gid()), (0, 0), "owned by the user copying");
    ok(&root, &["cp", "-a", "src:/d/f1", s(&out.join("kept"))]);
    let m = fs::metadata(out.join("kept")).expect("kept");
    assert_eq!((m.uid(), m.gid()), (7, 8), "-a keeps the source's owner");

    // A directory into an existing one lands under its name; to a new path it
    // becomes that path; `dir/.` copies its contents.
    ok(&root, &["cp", "src:/d", s(&out)]);
    assert_eq!(
        fs::read_to_string(out.join("d/sub/f2")).expect("f2"),
        "two\n"
    );
    assert_eq!(
        fs::read_link(out.join("d/etc")).expect("link"),
        Path::new("/etc"),
        "links are copied as links"
    );
    ok(&root, &["cp", "src:/d", s(&out.join("newdir"))]);
    assert!(out.join("newdir/sub/f2").is_file());
    fs::create_dir_all(out.join("contents")).expect("dir");
    ok(&root, &["cp", "src:/d/.", s(&out.join("contents"))]);
    assert!(out.join("contents/f1").is_file() && !out.join("contents/d").exists());

    // A symlink source is the link itself, unless -L.
    ok(&root, &["cp", "src:/pw", s(&out.join("pwlink"))]);
    assert_eq!(
        fs::read_link(out.join("pwlink")).expect("link"),
        Path::new("/etc/passwd")
    );
    ok(&root, &["cp", "-L", "src:/pw", s(&out.join("pwfile"))]);
    let pw = fs::read_to_string(out.join("pwfile")).expect("pwfile");
    assert!(
        pw.starts_with("root:x:0:0:"),
        "the container's passwd: {pw}"
    );

    // `-` writes a tar with the source under its name.
    let tar = run(&root, &["cp", "src:/d", "-"]);
    assert!(tar.ok, "{}", tar.stderr);
    let listed = tmp.path().join("d.tar");
    fs::write(&listed, tar.stdout.as_bytes()).expect("tar");
    let names = support::sh(Command::new("tar").arg("-tf").arg(&listed));
    let names: Vec<&str> = names.lines().collect();
    for n in ["d/", "d/f1", "d/sub/", "d/sub/f2", "d/etc"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }

    // Refusals, docker's wording, status 1.
    let (_, err) = expect_code(&root, &["cp", "src:/nope", s(&out)], 1);
    assert!(err.contains("No such container:path: src:/nope"), "{err}");
    let (_, err) = expect_code(&root, &["cp", "src:/d", s(&out.join("renamed"))], 1);
    assert!(err.contains("cannot copy a directory to a file"), "{err}");
    let (_, err) = expect_code(&root, &["cp", "src:/d/f1", s(&out.join("no/such"))], 1);
    assert!(err.contains("no such directory"), "{err}");
    let (_, err) = expect_code(&root, &["cp", "src:/d/f1", "src:/x"], 1);
    assert!(err.contains("not supported"), "{err}");
    expect_code(&root, &["cp", "nobody:/x", s(&out)], 1);
}

#[test]
fn cp_in_reaches_stopped_and_running_containers_and_stays_inside() {
    let (tmp, root) = store_with_busybox("cp-in");
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("tree/in")).expect("tree");
    fs::write(host.join("file"), "from-host\n").expect("file");
    fs::write(host.join("tree/in/x"), "deep\n").expect("x");
    std::os::unix::fs::chown(host.join("tree/in/x"), Some(5), Some(6)).expect("chown");

    // Stopped: the writes land in its upper dir and survive a start.
    ok(
        &root,
        &[
            "create",
            "--name",
            "box",
            "-v",
            "boxvol:/vol",
            "busybox",
            "sleep",
            "300",
        ],
    );
    ok(&root, &["cp", s(&host.join("file")), "box:/file"]);
    ok(&root, &["cp", s(&host.join("tree")), "box:/"]);
    ok(&root, &["cp", "-a", s(&host.join("tree")), "box:/archived"]);
    ok(&root, &["cp", s(&host.join("file")), "box:/vol/in-volume"]);
    ok(&root, &["start", "box"]);
    let seen = ok(
        &root,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "cat /file /tree/in/x /vol/in-volume; stat -c '%u:%g' /tree/in/x /archived/in/x",
        ],
    );
    assert_eq!(seen, "from-host\ndeep\nfrom-host\n0:0\n5:6\n");

    // Running: visible at once; a tar on stdin is extracted into a directory.
    fs::write(host.join("later"), "later\n").expect("later");
    ok(&root, &["cp", s(&host.join("later")), "box:/tmp/"]);
    assert_eq!(ok(&root, &["exec", "box", "cat", "/tmp/later"]), "later\n");
    let tar = support::sh(
        Command::new("tar")
            .arg("-C")
            .arg(&host)
            .arg("-cf")
            .arg(tmp.path().join("in.tar"))
            .arg("file"),
    );
    assert!(tar.is_empty());
    let mut child = forge(&root)
        .args(["cp", "-", "box:/root"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&fs::read(tmp.path().join("in.tar")).expect("tar"))
        .expect("write");
    assert!(child.wait().expect("wait").success());
    assert_eq!(
        ok(&root, &["exec", "box", "cat", "/root/file"]),
        "from-host\n"
    );

    // Links and `..` resolve inside the container's root, never the host's.
    ok(
        &root,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "ln -s /etc /etclink && ln -s ../../../.. /up",
        ],
    );
    let marker = format!("forge-cp-escape-{}", std::process::id());
    fs::write(host.join(&marker), "x").expect("marker");
    let src = host.join(&marker);
    ok(&root, &["cp", s(&src), "box:/etclink/"]);
    ok(
        &root,
        &["cp", s(&src), &format!("box:/../../../../tmp/{marker}")],
    );
    ok(&root, &["cp", s(&src), &format!("box:/up/{marker}")]);
    for p in [
        format!("/etc/{marker}"),
        format!("/tmp/{marker}"),
        format!("/{marker}"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} written on the host");
        ok(&root, &["exec", "box", "test", "-f", &p]);
    }
    let out = tmp.path().join("passwd");
    ok(&root, &["cp", "box:/up/etc/passwd", s(&out)]);
    assert!(
        fs::read_to_string(&out).expect("passwd").lines().count() <= 2,
        "the container's passwd, not the host's"
    );

    // A read-only root refuses, before anything is written.
    ok(
        &root,
        &[
            "run",
            "-d",
            "--name",
            "ro",
            "--read-only",
            "busybox",
            "sleep",
            "300",
        ],
    );
    let (_, err) = expect_code(&root, &["cp", s(&src), "ro:/x"], 1);
    assert!(err.contains("read-only"), "{err}");
    ok(&root, &["rm", "-f", "-v", "box", "ro"]);
}
