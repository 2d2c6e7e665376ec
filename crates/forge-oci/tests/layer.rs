//! Layer writer: round trip through our applier, reproducibility, header format.

mod common;

use std::fs;
use std::io::Read;
use std::process::Command;

use common::{assert_same_tree, build_tree, scratch};
use forge_oci::layer::{apply_layer, write_layer, ApplyOptions, Compression, LayerOptions};

fn opts(c: Compression) -> LayerOptions {
    LayerOptions {
        compression: c,
        ..LayerOptions::default()
    }
}

#[test]
fn round_trip_through_applier_preserves_everything() {
    let src = scratch("rt-src");
    build_tree(src.path());
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (blob, info) = write_layer(src.path(), &opts(c), Vec::new()).expect("write layer");
        assert_eq!(info.size, blob.len() as u64);
        assert_eq!(info.digest, forge_oci::Digest::sha256_of(&blob));
        let dst = scratch("rt-dst");
        let applied = apply_layer(&blob[..], dst.path(), &ApplyOptions::default()).expect("apply");
        assert_eq!(applied.digest, info.digest, "{c:?}: blob digest");
        assert_eq!(applied.diff_id, info.diff_id, "{c:?}: diffID");
        assert_eq!(applied.compression, c);
        assert!(
            applied.skipped_xattrs.is_empty(),
            "{:?}",
            applied.skipped_xattrs
        );
        assert_same_tree(src.path(), dst.path(), true);
        if c == Compression::None {
            assert_eq!(
                info.digest, info.diff_id,
                "an uncompressed blob is its own diffID"
            );
        }
    }
}

#[test]
fn same_tree_gives_identical_bytes() {
    let a = scratch("repro-a");
    build_tree(a.path());
    // A copy made by cp -a: other inode numbers, same content and metadata.
    let b = scratch("repro-b");
    let copy = b.path().join("tree");
    let st = Command::new("cp")
        .arg("-a")
        .arg(a.path())
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(st.success());
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (x, ix) = write_layer(a.path(), &opts(c), Vec::new()).expect("write");
        let (y, iy) = write_layer(a.path(), &opts(c), Vec::new()).expect("write");
        let (z, iz) = write_layer(&copy, &opts(c), Vec::new()).expect("write");
        assert_eq!(ix, iy, "{c:?}: same dir twice");
        assert_eq!(x, y);
        assert_eq!(ix, iz, "{c:?}: a copy of the tree");
        assert_eq!(x, z);
    }
}

/// Reads an uncompressed layer's entries: (name, type, mtime, uname, xattr names).
type Seen = (String, tar::EntryType, u64, Vec<u8>, Vec<String>);

fn entries(blob: &[u8]) -> Vec<Seen> {
    let mut ar = tar::Archive::new(blob);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header().clone();
        let uname = h.username_bytes().map(<[u8]>::to_vec).unwrap_or_default();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().expect("pax") {
            for r in pax {
                let k = r.expect("record").key().expect("utf8").to_string();
                if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                    xattrs.push(x.to_string());
                }
            }
        }
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).expect("data");
        out.push((
            name,
            h.entry_type(),
            h.mtime().expect("mtime"),
            uname,
            xattrs,
        ));
    }
    out
}

#[test]
fn headers_are_sorted_numeric_pax_and_clamped() {
    let src = scratch("hdr");
    build_tree(src.path());
    let o = LayerOptions {
        compression: Compression::None,
        source_date_epoch: Some(1_700_000_000),
        ..LayerOptions::default()
    };
    let (blob, _) = write_layer(src.path(), &o, Vec::new()).expect("write");
    let es = entries(&blob);
    let names: Vec<&str> = es.iter().map(|e| e.0.as_str()).collect();
    // Walk order: each directory's children bytewise-sorted, a directory before its content.
    let expected_prefix = [
        "a.txt",
        "abs-link",
        "big.bin",
        "caps",
        "d1/",
        "d1/d2/",
        "d1/d2/d3/",
        "d1/d2/d3/deep.txt",
        "d1/hl2",
        "empty/",
        "fifo",
        "hl1",
        "home/",
        "link",
        "long/",
    ];
    assert_eq!(&names[..expected_prefix.len()], &expected_prefix);
    let long = format!("long/{}", common::long_name());
    assert!(
        names.contains(&long.as_str()),
        "200-char name via PAX path: {names:?}"
    );
    for (name, kind, mtime, uname, xattrs) in &es {
        assert!(uname.is_empty(), "{name}: no uname");
        let want = if name == "new.txt" {
            1_700_000_000
        } else {
            1_600_000_000
        };
        assert_eq!(
            *mtime, want,
            "{name}: mtime clamped only when later than the epoch"
        );
        match name.as_str() {
            "caps" => assert_eq!(xattrs, &["security.capability", "user.foo"]),
            // d1/ is walked before hl1, so d1/hl2 is the first name and carries the data.
            "d1/hl2" => assert_eq!(*kind, tar::EntryType::Regular),
            "hl1" => assert_eq!(*kind, tar::EntryType::Link),
            _ => {}
        }
    }
}

#[test]
fn gzip_header_has_no_name_or_mtime() {
    let src = scratch("gz");
    fs::write(src.path().join("f"), b"x").expect("write");
    let (blob, _) = write_layer(src.path(), &opts(Compression::Gzip), Vec::new()).expect("write");
    assert_eq!(&blob[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(blob[3] & 0x08, 0, "FNAME not set");
    assert_eq!(&blob[4..8], &[0, 0, 0, 0], "MTIME is zero");
}
