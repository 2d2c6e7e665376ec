//! Symlinks, hard links and escape attempts: sources never leave their
//! root, writes never leave the layer directory.

mod copy_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use copy_support::{op, run_ctx, run_tree, Tree};

#[test]
fn symlinks_inside_a_copied_directory_are_copied_as_symlinks() {
    let ctx = Tree::new();
    ctx.file("d/x", "x")
        .symlink("d/abs", "/etc/passwd")
        .symlink("d/rel", "../../../outside")
        .symlink("d/dir", "/");
    let r = run_ctx(ctx.path(), &op(&["d"], "/app/"), None);
    let out = r.ok();
    assert_eq!(out.symlinks, 3);
    assert_eq!(r.link("app/abs"), "/etc/passwd");
    assert_eq!(r.link("app/rel"), "../../../outside");
    assert_eq!(r.link("app/dir"), "/");
    assert_eq!(
        r.listing(),
        ["app/", "app/abs", "app/dir", "app/rel", "app/x"]
    );
}

#[test]
fn a_source_that_is_a_symlink_is_followed_inside_the_root() {
    // A tree whose absolute link to /etc/passwd must give the tree's file.
    let tree = Tree::new();
    tree.file("etc/passwd", "tree passwd\n")
        .symlink("link", "/etc/passwd")
        .symlink("etc/up", "../../../../etc/passwd")
        .symlink("dirlink", "/etc");
    let r = run_tree(tree.path(), &op(&["link"], "/got"), None);
    r.ok();
    assert_eq!(r.read("got"), "tree passwd\n");
    assert!(!r.meta("got").file_type().is_symlink());
    // `..` in a link target stops at the root.
    let r = run_tree(tree.path(), &op(&["etc/up"], "/got"), None);
    assert_eq!(r.read("got"), "tree passwd\n");
    // A link to a directory copies the directory's contents; the file keeps
    // the name it was asked by.
    let r = run_tree(tree.path(), &op(&["dirlink"], "/e/"), None);
    assert_eq!(r.listing(), ["e/", "e/passwd", "e/up"]);
    let r = run_tree(tree.path(), &op(&["link"], "/named/"), None);
    assert_eq!(r.listing(), ["named/", "named/link"]);

    // In the build context, the same link finds nothing: the host's
    // /etc/passwd is never read.
    let ctx = Tree::new();
    ctx.symlink("link", "/etc/passwd")
        .file("data/real.txt", "real")
        .symlink("rel", "data/real.txt");
    let r = run_ctx(ctx.path(), &op(&["link"], "/x"), None);
    assert_eq!(
        r.err(),
        "file not found in build context or excluded by .dockerignore: \"link\""
    );
    let r = run_ctx(ctx.path(), &op(&["rel"], "/x"), None);
    assert_eq!(r.read("x"), "real");
}

#[test]
fn hard_links_between_copied_files_are_kept() {
    let ctx = Tree::new();
    ctx.file("d/a", "same inode")
        .hardlink("d/b", "d/a")
        .file("d/sub/c", "c")
        .hardlink("d/sub/e", "d/a");
    let r = run_ctx(ctx.path(), &op(&["d"], "/h/"), None);
    let out = r.ok();
    assert_eq!(out.files, 2);
    assert_eq!(out.hardlinks, 2);
    let ino = r.meta("h/a").ino();
    assert_eq!(r.meta("h/b").ino(), ino);
    assert_eq!(r.meta("h/sub/e").ino(), ino);
    assert_ne!(r.meta("h/sub/c").ino(), ino);
    assert_eq!(r.meta("h/a").nlink(), 3);
}

#[test]
fn dot_dot_in_a_source_stays_in_the_context() {
    let ctx = Tree::new();
    ctx.file("etc/passwd", "context passwd\n");
    let r = run_ctx(ctx.path(), &op(&["../../etc/passwd"], "/p"), None);
    r.ok();
    assert_eq!(r.read("p"), "context passwd\n");
    let empty = Tree::new();
    empty.file("x", "x");
    let r = run_ctx(empty.path(), &op(&["../../../../etc/passwd"], "/p"), None);
    assert!(r.err().contains("not found"), "{}", r.err());
    assert!(r.listing().is_empty());
}

#[test]
fn a_symlink_to_the_host_root_in_a_tree_resolves_inside_the_tree() {
    let tree = Tree::new();
    tree.symlink("x", "/")
        .file_mode("etc/shadow", "tree shadow\n", 0o640);
    let r = run_tree(tree.path(), &op(&["x/etc/shadow"], "/s"), None);
    r.ok();
    assert_eq!(r.read("s"), "tree shadow\n");
    assert_eq!(r.mode("s"), 0o640);
    // A glob through the link too.
    let r = run_tree(tree.path(), &op(&["x/etc/sha*"], "/g/"), None);
    assert_eq!(r.read("g/shadow"), "tree shadow\n");
    // And the whole directory through it: only the tree's entries.
    let r = run_tree(tree.path(), &op(&["x/etc"], "/e/"), None);
    assert_eq!(r.listing(), ["e/", "e/shadow"]);
    // A missing file behind the link is not looked for on the host.
    let r = run_tree(tree.path(), &op(&["x/etc/hostname"], "/h"), None);
    assert_eq!(r.err(), "\"/x/etc/hostname\": not found");
}

#[test]
fn a_destination_symlink_to_a_host_path_is_resolved_in_the_view() {
    let host = Tree::new();
    let ctx = Tree::new();
    ctx.file("a.txt", "a");
    let view = Tree::new();
    let host_dir = host.path().to_string_lossy().into_owned();
    view.symlink("out", &host_dir);
    let r = run_ctx(ctx.path(), &op(&["a.txt"], "/out/"), Some(view.path()));
    r.ok();
    assert_eq!(
        fs::read_dir(host.path()).expect("host dir").count(),
        0,
        "nothing written on the host"
    );
    let inside = format!("{}/a.txt", host_dir.trim_start_matches('/'));
    assert_eq!(r.read(&inside), "a");
}

#[test]
fn a_symlink_made_by_the_copy_is_never_written_through() {
    let host = Tree::new();
    let host_dir = host.path().to_string_lossy().into_owned();
    let ctx = Tree::new();
    ctx.symlink("one/sub", &host_dir).file("two/sub/evil", "x");
    // The first source makes /app/sub a symlink to a host directory; the
    // second would write below it.
    let r = run_ctx(ctx.path(), &op(&["one", "two"], "/app/"), None);
    assert_eq!(r.err(), "cannot copy to non-directory: /app/sub");
    assert_eq!(fs::read_dir(host.path()).expect("host dir").count(), 0);
    // A file onto that symlink replaces the link, never the host's file.
    let ctx = Tree::new();
    let target = host.p("victim");
    fs::write(&target, "host data").expect("write");
    ctx.symlink("one/f", &target.to_string_lossy())
        .file("two/f", "payload");
    let r = run_ctx(ctx.path(), &op(&["one", "two"], "/app/"), None);
    r.ok();
    assert_eq!(fs::read_to_string(&target).expect("read"), "host data");
    assert_eq!(r.read("app/f"), "payload");
}

#[test]
fn a_view_symlink_loop_is_an_error_not_a_hang() {
    let ctx = Tree::new();
    ctx.file("a", "a");
    let view = Tree::new();
    view.symlink("loop1", "loop2").symlink("loop2", "loop1");
    let r = run_ctx(ctx.path(), &op(&["a"], "/loop1/"), Some(view.path()));
    assert!(
        r.err().contains("too many levels of symbolic links"),
        "{}",
        r.err()
    );
}
