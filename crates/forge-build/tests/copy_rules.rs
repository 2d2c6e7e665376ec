//! COPY's rules for sources, destinations and metadata, on real files.

mod copy_support;

use copy_support::{op, run_ctx, run_tree, Tree};

#[test]
fn a_directory_source_copies_its_contents_not_itself() {
    let ctx = Tree::new();
    ctx.file("src/a.txt", "a").file("src/sub/b.txt", "b");
    for dest in ["/app/", "/app"] {
        let r = run_ctx(ctx.path(), &op(&["src"], dest), None);
        r.ok();
        assert_eq!(
            r.listing(),
            ["app/", "app/a.txt", "app/sub/", "app/sub/b.txt"],
            "{dest}"
        );
        assert_eq!(r.read("app/sub/b.txt"), "b");
        // The created destination is 0755 root, not the source dir's mode.
        assert_eq!(r.mode("app"), 0o755);
    }
}

#[test]
fn a_trailing_slash_makes_the_destination_a_directory() {
    let ctx = Tree::new();
    ctx.file("a.txt", "a");
    let r = run_ctx(ctx.path(), &op(&["a.txt"], "/x/"), None);
    assert_eq!(r.listing(), ["x/", "x/a.txt"]);
    let r = run_ctx(ctx.path(), &op(&["a.txt"], "/y"), None);
    assert_eq!(r.listing(), ["y"]);
    assert_eq!(r.read("y"), "a");
    let r = run_ctx(ctx.path(), &op(&["a.txt"], "/deep/er/z"), None);
    assert_eq!(r.listing(), ["deep/", "deep/er/", "deep/er/z"]);
}

#[test]
fn a_file_onto_an_existing_directory_goes_inside_it() {
    let ctx = Tree::new();
    ctx.file("a.txt", "a");
    let view = Tree::new();
    view.dir_mode("opt", 0o750)
        .chown("opt", 7, 8)
        .mtime("opt", 1_000_000);
    let r = run_ctx(ctx.path(), &op(&["a.txt"], "/opt"), Some(view.path()));
    r.ok();
    assert_eq!(r.listing(), ["opt/", "opt/a.txt"]);
    // The directory of the view is recreated as it was, but for its mtime:
    // it gained an entry (docker 20.10 checked, peer case p-copy-parent-mtime).
    assert_eq!(r.mode("opt"), 0o750);
    assert_eq!(r.owner("opt"), (7, 8));
    assert_ne!(r.mtime("opt"), 1_000_000);
}

/// BuildKit copies each source to the destination in turn, as if it were alone (docker
/// 20.10 checked: `COPY a b /dest` leaves /dest = b; the legacy builder's "must be a
/// directory and end with a /" error is not BuildKit's).
#[test]
fn several_sources_are_copied_in_turn() {
    let ctx = Tree::new();
    ctx.file("a.txt", "a")
        .file("b.txt", "b")
        .file("d1/x", "x")
        .file("d2/y", "y");
    let r = run_ctx(ctx.path(), &op(&["a.txt", "b.txt"], "/dest"), None);
    assert_eq!(r.listing(), ["dest"]);
    assert_eq!(r.read("dest"), "b", "the last file wins");
    // A glob that matches several files: the same.
    let r = run_ctx(ctx.path(), &op(&["*.txt"], "/dest"), None);
    assert_eq!(r.read("dest"), "b");
    let r = run_ctx(ctx.path(), &op(&["a.txt", "b.txt"], "/dest/"), None);
    assert_eq!(r.listing(), ["dest/", "dest/a.txt", "dest/b.txt"]);
    // An existing directory takes the files inside.
    let view = Tree::new();
    view.dir_mode("dest", 0o755);
    let r = run_ctx(
        ctx.path(),
        &op(&["a.txt", "b.txt"], "/dest"),
        Some(view.path()),
    );
    assert_eq!(r.listing(), ["dest/", "dest/a.txt", "dest/b.txt"]);
    // Directory sources merge their contents; a file after a directory goes inside it.
    let r = run_ctx(ctx.path(), &op(&["d1", "d2"], "/m"), None);
    assert_eq!(r.listing(), ["m/", "m/x", "m/y"]);
    let r = run_ctx(ctx.path(), &op(&["d1", "a.txt"], "/m"), None);
    assert_eq!(r.listing(), ["m/", "m/a.txt", "m/x"]);
    // A directory after a file at the destination cannot be copied there.
    let r = run_ctx(ctx.path(), &op(&["a.txt", "d1"], "/m"), None);
    assert!(!r.err().is_empty());
}

#[test]
fn globs_match_per_component_and_may_match_nothing() {
    let ctx = Tree::new();
    ctx.file("a.txt", "a")
        .file("b.md", "b")
        .file("src/one/c.txt", "c")
        .file("src/two/c.txt", "c2")
        .file("src/two/d.txt", "d");
    let r = run_ctx(ctx.path(), &op(&["*.txt"], "/g/"), None);
    assert_eq!(r.listing(), ["g/", "g/a.txt"]);
    let r = run_ctx(ctx.path(), &op(&["src/*/c.txt"], "/g/"), None);
    // Both match and have the same name: the later one wins.
    assert_eq!(r.listing(), ["g/", "g/c.txt"]);
    assert_eq!(r.read("g/c.txt"), "c2");
    let r = run_ctx(ctx.path(), &op(&["src/t[vw]o"], "/g/"), None);
    assert_eq!(r.listing(), ["g/", "g/c.txt", "g/d.txt"]);
    // A wildcard matching nothing copies nothing (BuildKit's AllowEmptyWildcard).
    let r = run_ctx(ctx.path(), &op(&["*.rs", "a.txt"], "/g/"), None);
    assert_eq!(r.listing(), ["g/", "g/a.txt"]);
    // A plain path that does not exist is an error.
    let r = run_ctx(ctx.path(), &op(&["nope.txt"], "/g/"), None);
    assert_eq!(
        r.err(),
        "file not found in build context or excluded by .dockerignore: \"nope.txt\""
    );
}

#[test]
fn dockerignored_paths_do_not_exist() {
    let ctx = Tree::new();
    ctx.file(".dockerignore", "*.log\nsecret\n!secret/keep.txt\n")
        .file("app.txt", "a")
        .file("debug.log", "l")
        .file("secret/key", "k")
        .file("secret/keep.txt", "keep");
    let r = run_ctx(ctx.path(), &op(&["."], "/c/"), None);
    r.ok();
    assert_eq!(
        r.listing(),
        [
            "c/",
            "c/.dockerignore",
            "c/app.txt",
            "c/secret/",
            "c/secret/keep.txt"
        ]
    );
    let r = run_ctx(ctx.path(), &op(&["debug.log"], "/x"), None);
    assert!(r.err().contains("excluded by .dockerignore: \"debug.log\""));
    let r = run_ctx(ctx.path(), &op(&["*.log", "app.txt"], "/g/"), None);
    assert_eq!(r.listing(), ["g/", "g/app.txt"]);
}

#[test]
fn exclude_patterns_match_below_each_source() {
    let ctx = Tree::new();
    ctx.file("dir1/a.png", "1")
        .file("dir1/b.txt", "2")
        .file("dir2/c.png", "3")
        .file("dir2/sub/d.txt", "4")
        .file("dir2/sub/e.md", "5");
    let mut c = op(&["dir*"], "/e/");
    c.exclude = vec!["*.png".into(), "sub/*.md".into()];
    let r = run_ctx(ctx.path(), &c, None);
    r.ok();
    assert_eq!(r.listing(), ["e/", "e/b.txt", "e/sub/", "e/sub/d.txt"]);
    // Relative to the context root, as `.` makes them.
    let mut c = op(&["."], "/r/");
    c.exclude = vec!["*/*.png".into(), "dir2/sub".into(), "!dir2/sub/e.md".into()];
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(
        r.listing(),
        [
            "r/",
            "r/dir1/",
            "r/dir1/b.txt",
            "r/dir2/",
            "r/dir2/sub/",
            "r/dir2/sub/e.md"
        ]
    );
}

#[test]
fn parents_keep_the_source_path_below_the_root_or_the_pivot() {
    let ctx = Tree::new();
    ctx.file("a/b/c.txt", "c")
        .file("a/d.txt", "d")
        .file("x/y/z.txt", "z")
        .file("x/w/z.txt", "w")
        .dir_mode("a/b", 0o750)
        .mtime("a/b", 5_000);
    let mut c = op(&["a/b/c.txt", "x/*/z.txt"], "/dest/");
    c.parents = true;
    let r = run_ctx(ctx.path(), &c, None);
    r.ok();
    assert_eq!(
        r.listing(),
        [
            "dest/",
            "dest/a/",
            "dest/a/b/",
            "dest/a/b/c.txt",
            "dest/x/",
            "dest/x/w/",
            "dest/x/w/z.txt",
            "dest/x/y/",
            "dest/x/y/z.txt"
        ]
    );
    // Parent directories carry their source metadata.
    assert_eq!(r.mode("dest/a/b"), 0o750);
    assert_eq!(r.mtime("dest/a/b"), 5_000);
    // A /./ pivot keeps only what follows it.
    let mut c = op(&["a/./b/c.txt"], "/p/");
    c.parents = true;
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.listing(), ["p/", "p/b/", "p/b/c.txt"]);
    // A directory keeps its own name and everything below it.
    let mut c = op(&["a"], "/q/");
    c.parents = true;
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(
        r.listing(),
        ["q/", "q/a/", "q/a/b/", "q/a/b/c.txt", "q/a/d.txt"]
    );
    // A plain missing path is an error.
    let mut c = op(&["a/nope.txt"], "/q/");
    c.parents = true;
    let r = run_ctx(ctx.path(), &c, None);
    assert!(r.err().contains("\"a/nope.txt\""));
}

#[test]
fn chown_by_name_and_by_id_resolves_in_the_destination() {
    let ctx = Tree::new();
    ctx.file("f", "f").file("d/g", "g");
    let view = Tree::new();
    view.with_users();
    let cases: &[(&str, (u32, u32))] = &[
        ("alice", (1000, 1001)),
        ("alice:staff", (1000, 50)),
        ("alice:7", (1000, 7)),
        ("1234", (1234, 1234)),
        ("1234:5", (1234, 5)),
        ("0:staff", (0, 50)),
    ];
    for (spec, want) in cases {
        let mut c = op(&["f", "d"], "/new/dir/");
        c.chown = Some(spec.to_string());
        let r = run_ctx(ctx.path(), &c, Some(view.path()));
        r.ok();
        assert_eq!(r.owner("new/dir/f"), *want, "{spec}");
        assert_eq!(r.owner("new/dir/g"), *want, "{spec}");
        // Directories the copy creates belong to the owner too (BuildKit's MkdirAll).
        assert_eq!(r.owner("new"), *want, "{spec}");
        assert_eq!(r.owner("new/dir"), *want, "{spec}");
    }
    // Numbers need no entry, even without any /etc/passwd.
    let mut c = op(&["f"], "/f");
    c.chown = Some("4242".into());
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.owner("f"), (4242, 4242));
}

#[test]
fn an_unknown_user_or_group_is_an_error_naming_it() {
    let ctx = Tree::new();
    ctx.file("f", "f");
    let view = Tree::new();
    view.with_users();
    let mut c = op(&["f"], "/f");
    c.chown = Some("mallory".into());
    let r = run_ctx(ctx.path(), &c, Some(view.path()));
    assert_eq!(
        r.err(),
        "unable to find user mallory: no matching entries in passwd file"
    );
    c.chown = Some("alice:wheel".into());
    let r = run_ctx(ctx.path(), &c, Some(view.path()));
    assert_eq!(
        r.err(),
        "unable to find group wheel: no matching entries in group file"
    );
    // Scratch has no /etc/passwd: a name cannot resolve.
    c.chown = Some("alice".into());
    let r = run_ctx(ctx.path(), &c, None);
    assert!(r.err().contains("unable to find user alice"));
}

#[test]
fn chmod_octal_and_symbolic() {
    let ctx = Tree::new();
    ctx.file_mode("bin/tool", "t", 0o700)
        .file_mode("bin/data", "d", 0o600)
        .dir_mode("bin/sub", 0o700)
        .file_mode("bin/sub/x", "x", 0o640);
    let mut c = op(&["bin"], "/o/");
    c.chmod = Some("0755".into());
    let r = run_ctx(ctx.path(), &c, None);
    r.ok();
    assert_eq!(r.mode("o/tool"), 0o755);
    assert_eq!(r.mode("o/data"), 0o755);
    assert_eq!(r.mode("o/sub"), 0o755);
    assert_eq!(r.mode("o/sub/x"), 0o755);
    let mut c = op(&["bin"], "/s/");
    c.chmod = Some("u=rwX,go=rX".into());
    let r = run_ctx(ctx.path(), &c, None);
    r.ok();
    assert_eq!(r.mode("s/tool"), 0o755, "executable stays executable");
    assert_eq!(r.mode("s/data"), 0o644);
    assert_eq!(r.mode("s/sub"), 0o755, "directories get X");
    assert_eq!(r.mode("s/sub/x"), 0o644);
    let mut c = op(&["bin/data"], "/data");
    c.chmod = Some("g+w,o-r".into());
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.mode("data"), 0o620);
    c.chmod = Some("0999".into());
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(
        r.err(),
        "invalid chmod parameter: '0999'. it should be octal string and between 0 and 07777"
    );
    c.chmod = Some("u+q".into());
    let r = run_ctx(ctx.path(), &c, None);
    assert!(r.err().contains("invalid chmod parameter: 'u+q'"));
}

#[test]
fn modes_and_mtimes_are_kept_owners_reset_for_the_context_kept_for_a_tree() {
    let src = Tree::new();
    src.file("d/f", "f")
        .chown("d/f", 123, 456)
        .mode("d/f", 0o4750)
        .mtime("d/f", 1_234_567)
        .dir_mode("d/e", 0o711)
        .chown("d/e", 9, 9)
        .mtime("d/e", 7_654_321);
    let r = run_ctx(src.path(), &op(&["d"], "/c/"), None);
    r.ok();
    assert_eq!(r.mode("c/f"), 0o4750);
    assert_eq!(r.mtime("c/f"), 1_234_567);
    assert_eq!(r.owner("c/f"), (0, 0));
    assert_eq!(r.mode("c/e"), 0o711);
    assert_eq!(r.mtime("c/e"), 7_654_321);
    assert_eq!(r.owner("c/e"), (0, 0));
    let r = run_tree(src.path(), &op(&["d"], "/t/"), None);
    r.ok();
    assert_eq!(r.owner("t/f"), (123, 456));
    assert_eq!(r.owner("t/e"), (9, 9));
    assert_eq!(r.mode("t/f"), 0o4750);
}

#[test]
fn heredoc_files_are_0644_with_a_fixed_mtime() {
    let ctx = Tree::new();
    let mut c = op(&[], "/d/");
    c.inline = vec![
        ("hello.txt".into(), "hi\n".into()),
        ("run.sh".into(), "echo\n".into()),
    ];
    let r = run_ctx(ctx.path(), &c, None);
    r.ok();
    assert_eq!(r.listing(), ["d/", "d/hello.txt", "d/run.sh"]);
    assert_eq!(r.read("d/hello.txt"), "hi\n");
    assert_eq!(r.mode("d/hello.txt"), 0o644);
    assert_eq!(r.mtime("d/hello.txt"), 0);
    assert_eq!(r.owner("d/hello.txt"), (0, 0));
    let mut c = op(&[], "/etc/motd");
    c.inline = vec![("EOF".into(), "welcome\n".into())];
    c.chmod = Some("600".into());
    let r = run_ctx(ctx.path(), &c, None);
    assert_eq!(r.listing(), ["etc/", "etc/motd"]);
    assert_eq!(r.read("etc/motd"), "welcome\n");
    assert_eq!(r.mode("etc/motd"), 0o600);
}

#[test]
fn parent_directories_of_the_view_are_replicated_with_their_metadata() {
    let ctx = Tree::new();
    ctx.file_mode("tool", "#!/bin/sh\n", 0o755);
    let view = Tree::new();
    view.dir_mode("usr/local/bin", 0o755)
        .dir_mode("usr/local", 0o2775)
        .chown("usr/local", 12, 34)
        .mtime("usr/local/bin", 1_000)
        .mtime("usr/local", 2_000)
        .mtime("usr", 3_000);
    let r = run_ctx(
        ctx.path(),
        &op(&["tool"], "/usr/local/bin/"),
        Some(view.path()),
    );
    r.ok();
    assert_eq!(
        r.listing(),
        ["usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/tool"]
    );
    assert_eq!(r.mode("usr/local"), 0o2775);
    assert_eq!(r.owner("usr/local"), (12, 34));
    // Only the directory that gained an entry has a new mtime.
    assert_eq!(r.mtime("usr/local"), 2_000);
    assert_ne!(r.mtime("usr/local/bin"), 1_000);
    assert_eq!(r.mtime("usr"), 3_000);
    assert_eq!(r.owner("usr/local/bin/tool"), (0, 0));
}

#[test]
fn the_destination_follows_symlinks_of_the_view_inside_it() {
    let ctx = Tree::new();
    ctx.file("libx.so", "so");
    let view = Tree::new();
    view.dir_mode("usr/lib", 0o755).symlink("lib", "usr/lib");
    // Absolute link targets count from the view's root.
    view.symlink("opt", "/usr/lib");
    let r = run_ctx(ctx.path(), &op(&["libx.so"], "/lib/"), Some(view.path()));
    r.ok();
    assert_eq!(r.listing(), ["usr/", "usr/lib/", "usr/lib/libx.so"]);
    let r = run_ctx(
        ctx.path(),
        &op(&["libx.so"], "/opt/sub/"),
        Some(view.path()),
    );
    assert_eq!(
        r.listing(),
        ["usr/", "usr/lib/", "usr/lib/sub/", "usr/lib/sub/libx.so"]
    );
}

#[test]
fn files_and_directories_do_not_replace_each_other() {
    let ctx = Tree::new();
    ctx.file("tree/etc", "a file named etc")
        .file("other/f", "f");
    let view = Tree::new();
    view.dir_mode("etc", 0o755).file("data", "file");
    let r = run_ctx(ctx.path(), &op(&["tree"], "/"), Some(view.path()));
    assert_eq!(r.err(), "cannot replace to directory /etc with file");
    let r = run_ctx(ctx.path(), &op(&["other"], "/data"), Some(view.path()));
    assert_eq!(r.err(), "cannot copy to non-directory: /data");
}

#[test]
fn existing_files_in_the_view_are_overwritten() {
    let ctx = Tree::new();
    ctx.file("conf", "new");
    let view = Tree::new();
    view.file("etc/conf", "old").symlink("etc/link", "conf");
    let r = run_ctx(ctx.path(), &op(&["conf"], "/etc/conf"), Some(view.path()));
    r.ok();
    assert_eq!(r.read("etc/conf"), "new");
    // A symlink as the destination is followed (fs.RootPath).
    let r = run_ctx(ctx.path(), &op(&["conf"], "/etc/link"), Some(view.path()));
    r.ok();
    assert_eq!(r.listing(), ["etc/", "etc/conf"]);
}

#[test]
fn on_and_from_the_busybox_test_rootfs() {
    let base = tempfile::tempdir().expect("tempdir");
    let rootfs = base.path().join("rootfs");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/busybox-rootfs.sh"
    );
    let status = std::process::Command::new("sh")
        .arg(script)
        .arg(&rootfs)
        .status()
        .expect("run busybox-rootfs.sh");
    assert!(
        status.success(),
        "busybox-rootfs.sh failed (busybox-static installed?)"
    );
    let ctx = Tree::new();
    ctx.file("note", "n");
    // --chown by name against the image's /etc/passwd; /tmp is recreated
    // with its sticky 1777 mode (and a new mtime: it gained an entry).
    let mut c = op(&["note"], "/tmp/");
    c.chown = Some("nobody".into());
    let r = run_ctx(ctx.path(), &c, Some(&rootfs));
    r.ok();
    assert_eq!(r.owner("tmp/note"), (65534, 65534));
    assert_eq!(r.mode("tmp"), 0o1777);
    assert_ne!(r.mtime("tmp"), 0);
    // From the rootfs as a stage: /bin/sh is an absolute link to
    // /bin/busybox, resolved inside the rootfs.
    let r = run_tree(&rootfs, &op(&["/bin/sh"], "/usr/local/bin/sh"), None);
    r.ok();
    let size = std::fs::metadata(rootfs.join("bin/busybox"))
        .expect("busybox")
        .len();
    assert!(r.meta("usr/local/bin/sh").is_file());
    assert_eq!(r.meta("usr/local/bin/sh").len(), size);
    // The whole /bin: links stay links.
    let r = run_tree(&rootfs, &op(&["/bin"], "/b/"), None);
    r.ok();
    assert_eq!(r.link("b/sh"), "/bin/busybox");
}
