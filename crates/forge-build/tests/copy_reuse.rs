//! A COPY that runs again after a context change hard-links the files of its previous
//! result whose sources did not change, and writes the others anew.

mod copy_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use copy_support::{op, Tree};
use forge_build::context::BuildContext;
use forge_build::graph::Copy;
use forge_build::ops::copy::{copy_reusing, CopyOutcome, CopyRequest, CopySource};
use forge_build::ops::reuse::Previous;

fn run(ctx: &Tree, op: &Copy, previous: Option<&Previous>) -> (tempfile::TempDir, CopyOutcome) {
    let context = BuildContext::open(ctx.path(), None).expect("context");
    let diff = tempfile::tempdir().expect("diff dir");
    let outcome = copy_reusing(
        &CopyRequest {
            op,
            source: CopySource::Context(&context),
            dest_view: None,
            users_view: None,
            diff_dir: diff.path(),
            downloads: None,
        },
        previous,
    )
    .expect("copy");
    (diff, outcome)
}

fn ino(dir: &tempfile::TempDir, rel: &str) -> u64 {
    fs::symlink_metadata(dir.path().join(rel))
        .expect("stat")
        .ino()
}

#[test]
fn unchanged_files_are_linked_changed_ones_written() {
    let ctx = Tree::new();
    ctx.file("src/a.txt", "a")
        .file("src/b.txt", "b")
        .file("src/sub/c.txt", "c")
        .file("src/d.txt", "d")
        .mode("src/d.txt", 0o600);
    let copy = op(&["src"], "/app/");
    let (first, out1) = run(&ctx, &copy, None);
    assert_eq!(out1.reused, 0);
    assert_eq!(out1.stamps.len(), 4, "{:?}", out1.stamps.keys());
    assert!(out1.stamps.contains_key("app/sub/c.txt"));

    // b's content changes (same size), d's mode changes, a and c stay.
    fs::write(ctx.p("src/b.txt"), "B").expect("write");
    ctx.mode("src/d.txt", 0o640);
    let previous = Previous::new(first.path(), out1.stamps.clone());
    let (second, out2) = run(&ctx, &copy, Some(&previous));
    assert_eq!(out2.reused, 2);
    assert_eq!(out2.files, 4);
    assert_eq!(ino(&second, "app/a.txt"), ino(&first, "app/a.txt"));
    assert_eq!(ino(&second, "app/sub/c.txt"), ino(&first, "app/sub/c.txt"));
    assert_ne!(ino(&second, "app/b.txt"), ino(&first, "app/b.txt"));
    assert_ne!(ino(&second, "app/d.txt"), ino(&first, "app/d.txt"));
    assert_eq!(
        fs::read_to_string(second.path().join("app/b.txt")).expect("read"),
        "B"
    );
    let d = fs::symlink_metadata(second.path().join("app/d.txt")).expect("stat");
    assert_eq!(d.mode() & 0o7777, 0o640);
    // The previous result is untouched, and the new one does not need it.
    assert_eq!(
        fs::read_to_string(first.path().join("app/b.txt")).expect("read"),
        "b"
    );
    drop(first);
    assert_eq!(
        fs::read_to_string(second.path().join("app/a.txt")).expect("read"),
        "a"
    );
    assert_eq!(out2.stamps.len(), 4);
}

#[test]
fn a_previous_file_that_does_not_match_is_not_linked() {
    let ctx = Tree::new();
    ctx.file("src/a.txt", "a").file("src/b.txt", "b");
    let copy = op(&["src"], "/app/");
    let (first, out1) = run(&ctx, &copy, None);
    // Someone changed the previous result's file (it no longer has the copy's mtime),
    // and the record names a file that is not there.
    let stale = first.path().join("app/a.txt");
    fs::write(&stale, "x").expect("write");
    fs::remove_file(first.path().join("app/b.txt")).expect("remove");
    let previous = Previous::new(first.path(), out1.stamps);
    let (second, out2) = run(&ctx, &copy, Some(&previous));
    assert_eq!(out2.reused, 0);
    assert_eq!(
        fs::read_to_string(second.path().join("app/a.txt")).expect("read"),
        "a"
    );
    assert_eq!(
        fs::read_to_string(second.path().join("app/b.txt")).expect("read"),
        "b"
    );
}

#[test]
fn a_different_chmod_or_destination_copies_again() {
    let ctx = Tree::new();
    ctx.file("src/a.txt", "a");
    let (first, out1) = run(&ctx, &op(&["src"], "/app/"), None);
    let previous = Previous::new(first.path(), out1.stamps);
    let mut chmod = op(&["src"], "/app/");
    chmod.chmod = Some("0755".into());
    let (second, out2) = run(&ctx, &chmod, Some(&previous));
    assert_eq!(out2.reused, 0);
    assert_eq!(
        fs::symlink_metadata(second.path().join("app/a.txt"))
            .expect("stat")
            .mode()
            & 0o7777,
        0o755
    );
    let (_third, out3) = run(&ctx, &op(&["src"], "/elsewhere/"), Some(&previous));
    assert_eq!(out3.reused, 0);
}

#[test]
fn files_of_many_directories_are_written_before_directory_times_are_set() {
    // More directories than the copy holds open for queued files at once, each with
    // files, and directory mtimes that writing a file into them would change.
    let ctx = Tree::new();
    for d in 0..300 {
        for f in 0..3 {
            ctx.file(&format!("src/d{d:03}/f{f}.txt"), &format!("{d}/{f}"));
        }
        ctx.mtime(&format!("src/d{d:03}"), 1_000_000 + d);
    }
    let (diff, out) = run(&ctx, &op(&["src"], "/app/"), None);
    assert_eq!(out.files, 900);
    for d in [0u64, 127, 128, 129, 299] {
        for f in 0..3 {
            let rel = format!("app/d{d:03}/f{f}.txt");
            assert_eq!(
                fs::read_to_string(diff.path().join(&rel)).expect("read"),
                format!("{d}/{f}"),
                "{rel}"
            );
        }
        let m = fs::symlink_metadata(diff.path().join(format!("app/d{d:03}"))).expect("stat");
        assert_eq!(
            m.mtime(),
            i64::try_from(1_000_000 + d).expect("small"),
            "d{d:03}"
        );
    }
}
