//! Hostile layers: each must fail with its typed error and leave everything outside the
//! target untouched. Tars are built with the tar crate's low-level header API so names the
//! safe API refuses (`../x`, `/abs`) can be written.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use common::{describe, scratch};
use forge_oci::layer::UnsafeReason;
use forge_oci::layer::{apply_layer, ApplyError, ApplyOptions};
use tar::{EntryType, Header};

/// A target dir and a sentinel dir next to it, inside one scratch dir.
struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    target: PathBuf,
    sentinel: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let tmp = scratch(name);
        let base = tmp.path().to_path_buf();
        let target = base.join("target");
        let sentinel = base.join("sentinel");
        fs::create_dir(&target).expect("mkdir target");
        fs::create_dir(&sentinel).expect("mkdir sentinel");
        fs::write(sentinel.join("keep"), b"precious").expect("write sentinel");
        Fixture {
            _tmp: tmp,
            base,
            target,
            sentinel,
        }
    }

    fn apply(&self, tar: &[u8]) -> Result<forge_oci::layer::Applied, ApplyError> {
        let before = describe(&self.sentinel);
        let listing = |p: &Path| {
            let mut v: Vec<_> = fs::read_dir(p)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            v.sort();
            v
        };
        let base_before = listing(&self.base);
        let r = apply_layer(tar, &self.target, &ApplyOptions::default());
        assert_eq!(describe(&self.sentinel), before, "sentinel dir unchanged");
        assert_eq!(
            listing(&self.base),
            base_before,
            "nothing new next to the target"
        );
        let keep = fs::symlink_metadata(self.sentinel.join("keep")).expect("keep");
        assert_eq!(keep.nlink(), 1, "no hardlink made to the sentinel file");
        r
    }
}

fn header(name: &[u8], kind: EntryType, size: u64, link: Option<&[u8]>) -> Header {
    let mut h = Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// (name, type, data, link target)
type Spec<'a> = (&'a [u8], EntryType, &'a [u8], Option<&'a [u8]>);

/// A tar of the given entries.
fn tar_of(entries: &[Spec<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let h = header(name, *kind, data.len() as u64, *link);
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish")
}

fn file(name: &[u8]) -> Spec<'_> {
    (name, EntryType::Regular, b"pwned", None)
}

#[test]
fn parent_dir_component_is_refused() {
    let f = Fixture::new("dotdot");
    let tar = tar_of(&[file(b"../sentinel/pwned")]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(&err, ApplyError::UnsafePath { entry, reason: UnsafeReason::ParentDir } if entry == "../sentinel/pwned"),
        "{err}"
    );
    let tar = tar_of(&[file(b"a/../../sentinel/pwned")]);
    assert!(matches!(f.apply(&tar), Err(ApplyError::UnsafePath { .. })));
}

#[test]
fn absolute_name_is_refused() {
    let f = Fixture::new("abs");
    let name = format!("{}/pwned", f.sentinel.display());
    let tar = tar_of(&[file(name.as_bytes())]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(
            &err,
            ApplyError::UnsafePath {
                reason: UnsafeReason::Absolute,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("pwned"),
        "error names the entry: {err}"
    );
}

#[test]
fn symlink_planted_then_traversed_is_refused() {
    let f = Fixture::new("plant");
    let abs = f.sentinel.to_string_lossy().into_owned();
    let tar = tar_of(&[
        (b"a", EntryType::Symlink, b"", Some(abs.as_bytes())),
        file(b"a/pwned"),
    ]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(&err, ApplyError::SymlinkInPath { entry, component } if entry == "a/pwned" && component == "a"),
        "{err}"
    );
    // The classic: a -> / then a/etc/passwd.
    let f = Fixture::new("plant-root");
    let tar = tar_of(&[
        (b"a", EntryType::Symlink, b"", Some(b"/")),
        file(b"a/etc/passwd"),
    ]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(matches!(err, ApplyError::SymlinkInPath { .. }), "{err}");
    // Relative symlink out of the target.
    let f = Fixture::new("plant-rel");
    let tar = tar_of(&[
        (b"b", EntryType::Symlink, b"", Some(b"../sentinel")),
        file(b"b/pwned"),
    ]);
    assert!(matches!(
        f.apply(&tar),
        Err(ApplyError::SymlinkInPath { .. })
    ));
}

#[test]
fn symlink_already_present_is_not_followed() {
    let f = Fixture::new("present");
    symlink(&f.sentinel, f.target.join("pre")).expect("symlink");
    let tar = tar_of(&[file(b"pre/pwned")]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(&err, ApplyError::SymlinkInPath { component, .. } if component == "pre"),
        "{err}"
    );
    // A whiteout through it must not delete outside either.
    let tar = tar_of(&[(b"pre/.wh.keep", EntryType::Regular, b"", None)]);
    assert!(matches!(
        f.apply(&tar),
        Err(ApplyError::SymlinkInPath { .. })
    ));
}

#[test]
fn file_over_existing_symlink_replaces_the_link() {
    let f = Fixture::new("over");
    symlink(f.sentinel.join("keep"), f.target.join("x")).expect("symlink");
    let tar = tar_of(&[file(b"x")]);
    f.apply(&tar).expect("replacing a symlink is fine");
    let m = fs::symlink_metadata(f.target.join("x")).expect("x");
    assert!(
        m.is_file(),
        "x is now a regular file, the link's target untouched"
    );
    assert_eq!(fs::read(f.target.join("x")).expect("read"), b"pwned");
}

#[test]
fn hardlink_outside_is_refused() {
    let f = Fixture::new("hl-abs");
    let abs = format!("{}/keep", f.sentinel.display());
    let tar = tar_of(&[(b"h", EntryType::Link, b"", Some(abs.as_bytes()))]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(&err, ApplyError::HardlinkTarget { entry, .. } if entry == "h"),
        "{err}"
    );

    let tar = tar_of(&[(b"h", EntryType::Link, b"", Some(b"/etc/passwd"))]);
    assert!(matches!(
        f.apply(&tar),
        Err(ApplyError::HardlinkTarget { .. })
    ));

    let tar = tar_of(&[(b"h", EntryType::Link, b"", Some(b"../../x"))]);
    assert!(matches!(
        f.apply(&tar),
        Err(ApplyError::HardlinkTarget { .. })
    ));

    let tar = tar_of(&[(b"h", EntryType::Link, b"", Some(b"../sentinel/keep"))]);
    assert!(matches!(
        f.apply(&tar),
        Err(ApplyError::HardlinkTarget { .. })
    ));
}

#[test]
fn hardlink_through_symlink_is_refused() {
    let f = Fixture::new("hl-sym");
    let abs = f.sentinel.to_string_lossy().into_owned();
    let tar = tar_of(&[
        (b"s", EntryType::Symlink, b"", Some(abs.as_bytes())),
        (b"h", EntryType::Link, b"", Some(b"s/keep")),
    ]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(&err, ApplyError::HardlinkTarget { reason, .. } if reason.contains("symbolic link")),
        "{err}"
    );
}

#[test]
fn hardlink_inside_works() {
    let f = Fixture::new("hl-ok");
    let tar = tar_of(&[file(b"d/a"), (b"b", EntryType::Link, b"", Some(b"d/a"))]);
    f.apply(&tar).expect("a link inside the layer is fine");
    let a = fs::metadata(f.target.join("d/a")).expect("a");
    let b = fs::metadata(f.target.join("b")).expect("b");
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn truncated_gzip_is_an_error() {
    let f = Fixture::new("trunc-gz");
    let data = common::pseudo_random(200_000);
    let tar = tar_of(&[(b"big", EntryType::Regular, &data, None)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    for cut in [gz.len() / 2, gz.len() - 4, 20] {
        let err = f.apply(&gz[..cut]).expect_err("must fail");
        assert!(
            matches!(
                err,
                ApplyError::Stream { .. } | ApplyError::Truncated { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn huge_size_with_missing_data_is_an_error() {
    let f = Fixture::new("huge");
    let mut b = tar::Builder::new(Vec::new());
    let h = header(b"huge", EntryType::Regular, 1 << 40, None);
    b.get_mut().extend_from_slice(h.as_bytes());
    b.get_mut().extend_from_slice(&[7u8; 1000]);
    let tar = std::mem::take(b.get_mut());
    let err = f.apply(&tar).expect_err("must fail");
    assert!(
        matches!(&err, ApplyError::Truncated { entry, expected, got } if entry == "huge" && *expected == 1 << 40 && *got == 1000),
        "{err}"
    );
}

#[test]
fn bad_whiteouts_are_refused() {
    let f = Fixture::new("wh");
    let tar = tar_of(&[(b"d/.wh..", EntryType::Regular, b"", None)]);
    let err = f.apply(&tar).expect_err("must refuse");
    assert!(
        matches!(
            err,
            ApplyError::UnsafePath {
                reason: UnsafeReason::BadWhiteout,
                ..
            }
        ),
        "{err}"
    );
    let tar = tar_of(&[(b"../.wh.sentinel", EntryType::Regular, b"", None)]);
    assert!(matches!(f.apply(&tar), Err(ApplyError::UnsafePath { .. })));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let f = Fixture::new("garbage");
    let mut junk = common::pseudo_random(4096);
    junk[0] = b'x';
    assert!(matches!(f.apply(&junk), Err(ApplyError::Stream { .. })));
    // A zstd magic followed by garbage.
    let mut z = vec![0x28, 0xb5, 0x2f, 0xfd];
    z.extend_from_slice(&common::pseudo_random(100));
    assert!(matches!(f.apply(&z), Err(ApplyError::Stream { .. })));
    // xz is recognised and refused clearly.
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
    assert!(matches!(
        f.apply(&xz),
        Err(ApplyError::UnsupportedCompression("xz"))
    ));
}

#[test]
fn absurdly_deep_tree_removal_is_an_error_not_a_stack_overflow() {
    let f = Fixture::new("deep");
    let deep = format!("{}f", "d/".repeat(600));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, &deep, &b"x"[..]).expect("long name");
    let tar = b.into_inner().expect("tar");
    f.apply(&tar).expect("a deep tree can be created");
    let wh = tar_of(&[(b".wh.d", EntryType::Regular, b"", None)]);
    let err = f.apply(&wh).expect_err("too deep to remove");
    assert!(matches!(err, ApplyError::TooDeep { .. }), "{err}");
}
