//! Whiteouts and opaque directories in both apply modes, and the writer's overlay upper
//! dir conversion back to the same tar entries.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use common::{describe, scratch};
use forge_oci::layer::{
    apply_layer, write_layer, ApplyMode, ApplyOptions, Compression, LayerOptions, SourceKind,
};
use tar::{EntryType, Header};

fn tar_of(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(if *kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_000);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish")
}

fn lower() -> Vec<u8> {
    tar_of(&[
        ("a/", EntryType::Directory, b""),
        ("a/1", EntryType::Regular, b"one"),
        ("a/2", EntryType::Regular, b"two"),
        ("a/sub/", EntryType::Directory, b""),
        ("a/sub/deep", EntryType::Regular, b"deep"),
        ("b/", EntryType::Directory, b""),
        ("b/x", EntryType::Regular, b"x"),
        ("b/y", EntryType::Regular, b"y"),
        ("c/", EntryType::Directory, b""),
        ("c/inner", EntryType::Regular, b"i"),
        ("keep", EntryType::Regular, b"k"),
    ])
}

/// Opaque `a` (with a new file sorting before the marker and one after), a deleted file in
/// `b`, a deleted directory `c`.
fn upper() -> Vec<u8> {
    tar_of(&[
        ("a/", EntryType::Directory, b""),
        ("a/-early", EntryType::Regular, b"early"),
        ("a/.wh..wh..opq", EntryType::Regular, b""),
        ("a/3", EntryType::Regular, b"three"),
        ("b/", EntryType::Directory, b""),
        ("b/.wh.x", EntryType::Regular, b""),
        (".wh.c", EntryType::Regular, b""),
    ])
}

fn names(root: &Path) -> Vec<String> {
    describe(root)
        .0
        .keys()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn plain_mode_resolves_whiteouts() {
    let t = scratch("wh-plain");
    let plain = ApplyOptions::default();
    apply_layer(&lower()[..], t.path(), &plain).expect("lower");
    apply_layer(&upper()[..], t.path(), &plain).expect("upper");
    assert_eq!(
        names(t.path()),
        ["a", "a/-early", "a/3", "b", "b/y", "keep"]
    );
}

#[test]
fn overlay_mode_records_whiteouts() {
    let t = scratch("wh-overlay");
    let ov = ApplyOptions {
        mode: ApplyMode::Overlay,
        ..ApplyOptions::default()
    };
    apply_layer(&upper()[..], t.path(), &ov).expect("upper");
    assert_eq!(names(t.path()), ["a", "a/-early", "a/3", "b", "b/x", "c"]);
    assert_eq!(
        xattr::get(t.path().join("a"), "trusted.overlay.opaque").expect("getxattr"),
        Some(b"y".to_vec())
    );
    for p in ["b/x", "c"] {
        let m = fs::symlink_metadata(t.path().join(p)).expect("lstat");
        assert!(m.file_type().is_char_device(), "{p} is a whiteout device");
        assert_eq!(m.rdev(), 0, "{p} is 0/0");
    }

    // Writing the snapshot back as an overlay upper dir gives the same changes.
    let (blob, _) = write_layer(
        t.path(),
        &LayerOptions {
            compression: Compression::None,
            source: SourceKind::OverlayUpper,
            ..LayerOptions::default()
        },
        Vec::new(),
    )
    .expect("write");
    let mut ar = tar::Archive::new(&blob[..]);
    let mut got = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let n = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let overlay_xattrs = e
            .pax_extensions()
            .expect("pax")
            .map(|p| {
                p.filter_map(Result::ok)
                    .filter(|r| r.key().unwrap_or("").contains("overlay"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(overlay_xattrs, 0, "{n}: overlay xattrs are not emitted");
        got.push((n, e.header().entry_type()));
    }
    let want: Vec<(String, EntryType)> = [
        (".wh.c", EntryType::Regular),
        ("a/", EntryType::Directory),
        ("a/-early", EntryType::Regular),
        ("a/.wh..wh..opq", EntryType::Regular),
        ("a/3", EntryType::Regular),
        ("b/", EntryType::Directory),
        ("b/.wh.x", EntryType::Regular),
    ]
    .into_iter()
    .map(|(n, k)| (n.to_string(), k))
    .collect();
    assert_eq!(got, want);
}

/// The overlay-mode snapshot, mounted by the kernel over the plain lower, shows the same
/// tree as plain-mode application. Skipped when overlay mounts are not possible here.
#[test]
fn overlay_snapshot_mounts_like_plain_result() {
    let t = scratch("wh-mount");
    let lowerdir = t.path().join("lower");
    let upperdir = t.path().join("upper");
    let work = t.path().join("work");
    let merged = t.path().join("merged");
    let plain = t.path().join("plain");
    for d in [&lowerdir, &upperdir, &work, &merged, &plain] {
        fs::create_dir(d).expect("mkdir");
    }
    apply_layer(&lower()[..], &lowerdir, &ApplyOptions::default()).expect("lower");
    let ov = ApplyOptions {
        mode: ApplyMode::Overlay,
        ..ApplyOptions::default()
    };
    apply_layer(&upper()[..], &upperdir, &ov).expect("upper");
    apply_layer(&lower()[..], &plain, &ApplyOptions::default()).expect("plain lower");
    apply_layer(&upper()[..], &plain, &ApplyOptions::default()).expect("plain upper");

    let opts = format!("lowerdir={}:{}", upperdir.display(), lowerdir.display());
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        eprintln!("skipping: cannot mount overlayfs here");
        return;
    }
    let seen = names(&merged);
    let _ = Command::new("umount").arg(&merged).status();
    let _ = &work;
    assert_eq!(seen, names(&plain));
}

/// `ADD archive.tar`: whiteout names are just files.
#[test]
fn extract_mode_keeps_whiteout_names_as_files() {
    let t = scratch("wh-extract");
    let ex = ApplyOptions {
        mode: ApplyMode::Extract,
        ..ApplyOptions::default()
    };
    apply_layer(&lower()[..], t.path(), &ex).expect("lower");
    apply_layer(&upper()[..], t.path(), &ex).expect("upper");
    let n = names(t.path());
    for p in [
        ".wh.c",
        "a/.wh..wh..opq",
        "b/.wh.x",
        "a/1",
        "b/x",
        "c/inner",
    ] {
        assert!(n.contains(&p.to_string()), "{p} in {n:?}");
    }
}
