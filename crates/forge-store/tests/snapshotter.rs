//! The snapshotter (prepare / view / commit / snapshot_layer / remove_snapshot) on plain
//! directories: no mounts, so it runs anywhere. The overlay side (whiteouts, opaque dirs,
//! a real sandbox step) is in forge-sandbox's `tests/with_store.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use forge_oci::layer::{Compression, SourceKind};
use forge_oci::{media_types, Digest};
use forge_store::{chain_id, CommitOptions, Store, StoreDir, StoreError};

fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forge-store");
    fs::create_dir_all(&base).expect("base");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn tmp_entries(store: &Store) -> usize {
    fs::read_dir(store.dir(StoreDir::Tmp)).expect("tmp").count()
}

fn plain(compression: Compression) -> CommitOptions {
    CommitOptions {
        source: SourceKind::Directory,
        compression,
        level: None,
        source_date_epoch: Some(0),
    }
}

/// Tar entry names of a gzip layer blob (GNU tar lists them).
fn entries(store: &Store, blob: &Digest) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(store.blob_path(blob))
        .output()
        .expect("run tar");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn prepare_commit_view_and_remove() {
    let tmp = scratch();
    let store = Store::open(&tmp.path().join("s")).expect("open");

    // A base layer on nothing.
    let a = store.prepare(None).expect("prepare");
    assert!(a.parent().is_none());
    assert!(a.lowerdirs().is_empty());
    assert!(a.work().is_dir());
    let mode = fs::metadata(a.upper()).expect("upper").permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(fs::read_dir(a.upper()).expect("upper").count(), 0);
    fs::create_dir(a.upper().join("etc")).expect("mkdir");
    fs::write(a.upper().join("etc/base"), "base\n").expect("write");
    let upper_a = a.upper();
    let base = store
        .commit(a, &plain(Compression::Gzip))
        .expect("commit")
        .expect("a layer");
    assert!(!upper_a.exists(), "the upper dir was renamed away");
    assert_eq!(base.chain_id, base.diff_id, "ChainID(L0) = DiffID(L0)");
    assert_eq!(base.media_type, media_types::OCI_LAYER_GZIP);
    assert!(store.has_blob(&base.blob));
    assert_eq!(
        fs::metadata(store.blob_path(&base.blob))
            .expect("blob")
            .len(),
        base.blob_size
    );
    assert_eq!(entries(&store, &base.blob), ["etc/", "etc/base"]);
    assert_eq!(
        store.view(Some(&base.chain_id)).expect("view"),
        [store.snapshot_fs(&base.chain_id)]
    );
    assert_eq!(
        fs::read_to_string(store.snapshot_fs(&base.chain_id).join("etc/base")).expect("read"),
        "base\n"
    );
    assert!(!store.snapshot_dir(&base.chain_id).join("work").exists());
    assert_eq!(tmp_entries(&store), 0);

    // An empty upper makes no layer and leaves nothing behind.
    let empty = store.prepare(Some(&base.chain_id)).expect("prepare");
    assert_eq!(empty.parent(), Some(&base.chain_id));
    assert_eq!(empty.lowerdirs(), [store.snapshot_fs(&base.chain_id)]);
    assert!(store
        .commit(empty, &CommitOptions::default())
        .expect("commit")
        .is_none());
    assert_eq!(tmp_entries(&store), 0);

    // Dropping an active snapshot removes its directories.
    let dropped = store.prepare(Some(&base.chain_id)).expect("prepare");
    fs::write(dropped.upper().join("x"), "x").expect("write");
    drop(dropped);
    assert_eq!(tmp_entries(&store), 0);

    // A second layer: chain ID per the spec, lowerdirs top-most first.
    let b = store.prepare(Some(&base.chain_id)).expect("prepare");
    fs::write(b.upper().join("top"), "top\n").expect("write");
    let top = store
        .commit(b, &plain(Compression::Zstd))
        .expect("commit")
        .expect("a layer");
    assert_eq!(top.media_type, media_types::OCI_LAYER_ZSTD);
    assert_eq!(
        top.chain_id,
        Digest::sha256_of(format!("{} {}", base.chain_id, top.diff_id).as_bytes())
    );
    assert_eq!(top.chain_id, chain_id(Some(&base.chain_id), &top.diff_id));
    assert_eq!(
        store.view(Some(&top.chain_id)).expect("view"),
        [
            store.snapshot_fs(&top.chain_id),
            store.snapshot_fs(&base.chain_id)
        ]
    );
    let meta = store
        .snapshot_meta(&top.chain_id)
        .expect("meta")
        .expect("exists");
    assert_eq!(meta.parent.as_ref(), Some(&base.chain_id));
    assert_eq!(meta.layer.as_ref(), Some(&top.blob));
    assert_eq!(meta.size, 4);

    // The base cannot go while the top is on it.
    let err = store
        .remove_snapshot(&base.chain_id)
        .expect_err("base is a parent");
    assert!(
        matches!(&err, StoreError::SnapshotInUse { chain_id, child }
            if chain_id == &base.chain_id && child == &top.chain_id),
        "{err}"
    );
    assert!(
        err.to_string().contains("is the parent of snapshot"),
        "{err}"
    );

    // Rebase the top layer's blob onto another parent (COPY --link).
    let c = store.prepare(None).expect("prepare");
    fs::write(c.upper().join("other"), "other\n").expect("write");
    let other = store
        .commit(c, &plain(Compression::Gzip))
        .expect("commit")
        .expect("a layer");
    let rebased = store
        .snapshot_layer(Some(&other.chain_id), &top.blob, &top.diff_id)
        .expect("snapshot_layer");
    assert_eq!(rebased, chain_id(Some(&other.chain_id), &top.diff_id));
    assert_eq!(
        fs::read_to_string(store.snapshot_fs(&rebased).join("top")).expect("read"),
        "top\n"
    );
    assert_eq!(
        store.view(Some(&rebased)).expect("view"),
        [
            store.snapshot_fs(&rebased),
            store.snapshot_fs(&other.chain_id)
        ]
    );
    // Already there: nothing to do, same answer.
    assert_eq!(
        store
            .snapshot_layer(Some(&other.chain_id), &top.blob, &top.diff_id)
            .expect("again"),
        rebased
    );
    // A missing parent is named.
    let ghost = Digest::sha256_of(b"ghost");
    let err = store
        .snapshot_layer(Some(&ghost), &top.blob, &top.diff_id)
        .expect_err("no parent");
    assert!(err.to_string().contains(ghost.hex()), "{err}");

    // Remove top-down; then the chain is broken and view names the missing snapshot.
    store.remove_snapshot(&top.chain_id).expect("remove top");
    store.remove_snapshot(&rebased).expect("remove rebased");
    store
        .remove_snapshot(&other.chain_id)
        .expect("remove other");
    assert!(matches!(
        store.remove_snapshot(&top.chain_id),
        Err(StoreError::NoSnapshot { .. })
    ));
    let b2 = store.prepare(Some(&base.chain_id)).expect("prepare");
    fs::write(b2.upper().join("top"), "top\n").expect("write");
    let again = store
        .commit(b2, &plain(Compression::Zstd))
        .expect("commit")
        .expect("layer");
    assert_eq!(again, top, "same content, same layer");
    fs::rename(
        store.snapshot_dir(&base.chain_id),
        tmp.path().join("moved-away"),
    )
    .expect("hide base");
    let err = store.view(Some(&again.chain_id)).expect_err("broken chain");
    assert!(
        matches!(&err, StoreError::NoSnapshot { chain_id, needed_by: Some(n) }
            if chain_id == &base.chain_id && n == &again.chain_id),
        "{err}"
    );
    assert!(err.to_string().contains(base.chain_id.hex()), "{err}");
    assert!(store.prepare(Some(&again.chain_id)).is_err());
    assert_eq!(tmp_entries(&store), 0);
}

/// A layer's snapshot from `unpack` (image layers) and one from `commit` chain the same
/// way: a step on an imported image views both.
#[test]
fn commit_on_an_imported_image() {
    let tmp = scratch();
    let store = Store::open(&tmp.path().join("s")).expect("open");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("hello"), "hi\n").expect("write");
    let tarball = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["-cf", "-", "hello"])
        .output()
        .expect("run tar")
        .stdout;
    let imported = store
        .import(&tarball[..], &Default::default(), &[])
        .expect("import");
    let chains = store.unpack(&imported.image).expect("unpack");
    let active = store.prepare(chains.last()).expect("prepare");
    assert_eq!(
        active.lowerdirs(),
        store.lowerdirs(&imported.image).expect("lowerdirs")
    );
    fs::write(active.upper().join("more"), "more\n").expect("write");
    let layer = store
        .commit(active, &plain(Compression::Gzip))
        .expect("commit")
        .expect("layer");
    assert_eq!(store.view(Some(&layer.chain_id)).expect("view").len(), 2);
}

/// `commit_diff` then `write_snapshot_blob` give the very snapshot and blob `commit`
/// gives in one go; a snapshot written to after its commit is refused, not exported.
#[test]
fn deferred_blob_matches_a_direct_commit() {
    let tmp = scratch();
    let fill = |upper: &Path| {
        fs::create_dir(upper.join("d")).expect("mkdir");
        fs::write(upper.join("d/f"), "x".repeat(300_000)).expect("write");
        fs::write(upper.join("g"), "g\n").expect("write");
    };
    let direct_store = Store::open(&tmp.path().join("direct")).expect("open");
    let a = direct_store.prepare(None).expect("prepare");
    fill(&a.upper());
    let direct = direct_store
        .commit(a, &plain(Compression::Gzip))
        .expect("commit")
        .expect("a layer");

    let store = Store::open(&tmp.path().join("deferred")).expect("open");
    let b = store.prepare(None).expect("prepare");
    fill(&b.upper());
    let diff = store
        .commit_diff(b, &plain(Compression::Gzip))
        .expect("commit_diff")
        .expect("a layer");
    assert_eq!(diff.chain_id, direct.chain_id);
    assert_eq!(diff.diff_id, direct.diff_id);
    assert!(store.has_snapshot(&diff.chain_id), "usable before its blob");
    assert!(!store.has_blob(&direct.blob), "no blob yet");
    let layer = store
        .write_snapshot_blob(&diff, &plain(Compression::Gzip))
        .expect("blob");
    assert_eq!(layer, direct);
    assert_eq!(
        fs::read(store.blob_path(&layer.blob)).expect("blob"),
        fs::read(direct_store.blob_path(&direct.blob)).expect("blob")
    );
    assert_eq!(tmp_entries(&store), 0);

    // An empty upper makes no layer, as with commit.
    let c = store.prepare(Some(&diff.chain_id)).expect("prepare");
    assert!(store
        .commit_diff(c, &plain(Compression::Gzip))
        .expect("commit_diff")
        .is_none());

    // Changed after commit: the blob would not match the diffID the steps used.
    fs::write(store.snapshot_fs(&diff.chain_id).join("g"), "changed\n").expect("write");
    let err = store
        .write_snapshot_blob(&diff, &plain(Compression::Gzip))
        .expect_err("changed snapshot");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(diff.diff_id.as_str()), "{err}");
}
