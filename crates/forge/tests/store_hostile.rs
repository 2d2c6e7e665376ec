//! Hostile input through the CLI, one test each: the command fails with a one-line error
//! naming the file and the problem (exit 1), nothing outside the store changes, the store
//! keeps no trace of the attempt (no staging leftovers, no snapshot, every blob intact),
//! and it still works for the next command (`forge images`, then a valid load).

mod support;

#[path = "../../forge-oci/tests/common/mod.rs"]
mod oci_common;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;
use tar::{EntryType, Header};

/// A store, a sentinel directory beside it, and a valid archive to load afterwards.
struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    sentinel: PathBuf,
    valid: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let tmp = scratch(name);
        let base = tmp.path().to_path_buf();
        let root = base.join("store");
        let sentinel = base.join("sentinel");
        fs::create_dir(&sentinel).expect("mkdir sentinel");
        fs::write(sentinel.join("keep"), b"precious").expect("write sentinel");
        // A valid archive made in another store.
        let other = base.join("maker");
        import_busybox(&other, "good:1");
        let valid = base.join("valid.tar");
        ok(
            &other,
            &["save", "-o", valid.to_str().expect("p"), "good:1"],
        );
        fs::remove_dir_all(&other).expect("rm maker");
        // The store exists (and is used) before the attack.
        import_busybox(&root, "before:1");
        Fixture {
            _tmp: tmp,
            base,
            root,
            sentinel,
            valid,
        }
    }

    fn input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.base.join(name);
        fs::write(&p, bytes).expect("write input");
        p
    }

    /// Runs `args` (which must fail), checks the error and every invariant; returns the
    /// error line.
    fn refuses(&self, cmd: &mut Command, args_for_message: &str, needles: &[&str]) -> String {
        let sentinel_before = oci_common::describe(&self.sentinel);
        let base_before = list(&self.base);
        let snapshots_before = list(&self.root.join("snapshots"));
        let index_before = fs::read(self.root.join("index.json")).expect("index");
        let r = output(cmd);
        assert!(!r.ok, "{args_for_message} must fail:\n{}", r.stdout);
        assert_eq!(r.code, Some(1), "{args_for_message}: exit 1\n{}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one-line error: {}", r.stderr);
        let line = lines[0].to_string();
        assert!(line.starts_with("Error: "), "{line}");
        for n in needles {
            assert!(line.contains(n), "error {line:?} mentions {n:?}");
        }
        // Nothing outside the store changed.
        assert_eq!(
            oci_common::describe(&self.sentinel),
            sentinel_before,
            "sentinel"
        );
        assert_eq!(
            list(&self.base),
            base_before,
            "nothing new beside the store"
        );
        assert_eq!(
            fs::symlink_metadata(self.sentinel.join("keep"))
                .expect("keep")
                .nlink(),
            1,
            "no hardlink to the sentinel"
        );
        // The store holds no trace of the attempt.
        assert_eq!(
            list(&self.root.join("tmp")),
            Vec::<String>::new(),
            "tmp/ clean"
        );
        assert_eq!(
            list(&self.root.join("snapshots")),
            snapshots_before,
            "no new snapshot"
        );
        assert_eq!(
            fs::read(self.root.join("index.json")).expect("index"),
            index_before,
            "index unchanged"
        );
        assert_blobs_intact(&self.root);
        // And it still works.
        let images = ok(&self.root, &["images"]);
        assert!(images.contains("before"), "{images}");
        let out = ok(&self.root, &["load", "-i", self.valid.to_str().expect("p")]);
        assert_eq!(out, "Loaded image: good:1\n");
        line
    }

    fn import(&self, file: &Path) -> Command {
        let mut c = forge(&self.root);
        c.arg("import").arg(file).arg("evil:1");
        c
    }

    fn load(&self, file: &Path) -> Command {
        let mut c = forge(&self.root);
        c.arg("load").arg("-i").arg(file);
        c
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

fn tar_of(entries: &[Spec<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let h = header(name, *kind, data.len() as u64, *link);
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("finish")
}

const OK_FILE: Spec<'static> = (b"ok.txt", EntryType::Regular, b"fine", None);

#[test]
fn dotdot_entry_is_refused() {
    let f = Fixture::new("hostile-dotdot");
    let tar = f.input(
        "dotdot.tar",
        &tar_of(&[
            OK_FILE,
            (b"../sentinel/pwned", EntryType::Regular, b"x", None),
        ]),
    );
    f.refuses(
        &mut f.import(&tar),
        "import",
        &["dotdot.tar", "../sentinel/pwned", "'..'"],
    );
    assert!(!f.sentinel.join("pwned").exists());
}

#[test]
fn absolute_entry_is_refused() {
    let f = Fixture::new("hostile-abs");
    let name = format!("{}/pwned", f.sentinel.display());
    let tar = f.input(
        "abs.tar",
        &tar_of(&[(name.as_bytes(), EntryType::Regular, b"x", None)]),
    );
    f.refuses(
        &mut f.import(&tar),
        "import",
        &["abs.tar", "absolute path", "pwned"],
    );
}

#[test]
fn write_through_planted_symlink_is_refused() {
    let f = Fixture::new("hostile-symlink");
    let target = f.sentinel.to_string_lossy().into_owned();
    let tar = f.input(
        "plant.tar",
        &tar_of(&[
            (b"link", EntryType::Symlink, b"", Some(target.as_bytes())),
            (b"link/pwned", EntryType::Regular, b"x", None),
        ]),
    );
    f.refuses(
        &mut f.import(&tar),
        "import",
        &["plant.tar", "link/pwned", "symbolic link"],
    );
}

#[test]
fn hardlink_to_host_file_is_refused() {
    let f = Fixture::new("hostile-hardlink");
    let host = f.sentinel.join("keep").to_string_lossy().into_owned();
    let tar = f.input(
        "hl-abs.tar",
        &tar_of(&[(b"hl", EntryType::Link, b"", Some(host.as_bytes()))]),
    );
    f.refuses(&mut f.import(&tar), "import", &["hl-abs.tar", "hl"]);
    let tar = f.input(
        "hl-rel.tar",
        &tar_of(&[(b"hl", EntryType::Link, b"", Some(b"../sentinel/keep"))]),
    );
    f.refuses(
        &mut f.import(&tar),
        "import",
        &["hl-rel.tar", "hardlink target"],
    );
    // /etc/passwd, the classic.
    let tar = f.input(
        "hl-passwd.tar",
        &tar_of(&[(b"passwd", EntryType::Link, b"", Some(b"/etc/passwd"))]),
    );
    let before = fs::metadata("/etc/passwd").expect("passwd").nlink();
    f.refuses(&mut f.import(&tar), "import", &["hl-passwd.tar", "passwd"]);
    assert_eq!(fs::metadata("/etc/passwd").expect("passwd").nlink(), before);
}

/// Without CAP_MKNOD (dropped from the bounding set, so the root-run forge lacks it as an
/// unprivileged user would), a device node is a clear error, not a silent skip.
#[test]
fn device_node_without_cap_mknod_is_refused() {
    let f = Fixture::new("hostile-device");
    let mut h = header(b"dev/null", EntryType::Char, 0, None);
    h.set_device_major(1).expect("major");
    h.set_device_minor(3).expect("minor");
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header(b"dev/", EntryType::Directory, 0, None), &b""[..])
        .expect("dir");
    b.append(&h, &b""[..]).expect("dev");
    let tar = f.input("dev.tar", &b.into_inner().expect("tar"));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-mknod", "--inh-caps=-mknod", "--"])
        .arg(env!("CARGO_BIN_EXE_forge"))
        .arg("--root")
        .arg(&f.root)
        .arg("import")
        .arg(&tar)
        .env_remove("FORGE_ROOT")
        .stdin(std::process::Stdio::null());
    f.refuses(
        &mut cmd,
        "import without CAP_MKNOD",
        &["dev.tar", "dev/null", "CAP_MKNOD"],
    );
    // With the capability the same tarball imports.
    ok(&f.root, &["import", tar.to_str().expect("p"), "dev:1"]);
}

#[test]
fn truncated_gzip_is_refused() {
    let f = Fixture::new("hostile-truncgz");
    let gz = f.base.join("full.tar.gz");
    tar_dir(&busybox_rootfs(), &gz, Some("gzip"));
    let bytes = fs::read(&gz).expect("read");
    fs::remove_file(&gz).expect("rm");
    let cut = f.input("cut.tar.gz", &bytes[..bytes.len() / 2]);
    f.refuses(
        &mut f.import(&cut),
        "import",
        &["cut.tar.gz", "reading layer stream"],
    );
    // The same for an archive being loaded.
    let archive = f.base.join("a.tar.gz");
    sh(Command::new("sh").arg("-c").arg(format!(
        "gzip -c {} > {}",
        f.valid.display(),
        archive.display()
    )));
    let bytes = fs::read(&archive).expect("read");
    fs::remove_file(&archive).expect("rm");
    let cut = f.input("cut-archive.tar.gz", &bytes[..bytes.len() * 2 / 3]);
    f.refuses(
        &mut f.load(&cut),
        "load",
        &["cut-archive.tar.gz", "truncated"],
    );
}

/// A header claiming 1 TiB with a few bytes behind it: refused as truncated, without
/// allocating or writing anything like that size.
#[test]
fn huge_size_claim_is_refused() {
    let f = Fixture::new("hostile-huge");
    let mut bytes = header(b"big", EntryType::Regular, 1 << 40, None)
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(&[7u8; 4096]);
    let tar = f.input("huge.tar", &bytes);
    f.refuses(
        &mut f.import(&tar),
        "import",
        &["huge.tar", "big", "truncated", "1099511627776"],
    );
    let mut bytes = header(b"manifest.json", EntryType::Regular, 1 << 40, None)
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(&[b'['; 4096]);
    let archive = f.input("huge-archive.tar", &bytes);
    f.refuses(
        &mut f.load(&archive),
        "load",
        &["huge-archive.tar", "manifest.json", "truncated"],
    );
}

/// Unpacks a forge-saved oci-archive of busybox into a directory to tamper with.
fn oci_archive_dir(f: &Fixture) -> (PathBuf, serde_json::Value) {
    let maker = f.base.join("maker2");
    import_busybox(&maker, "good:1");
    let archive = f.base.join("oci.tar");
    ok(
        &maker,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            archive.to_str().expect("p"),
            "good:1",
        ],
    );
    fs::remove_dir_all(&maker).expect("rm maker");
    let dir = f.base.join("oci-dir");
    fs::create_dir(&dir).expect("mkdir");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-xf")
        .arg(&archive));
    fs::remove_file(&archive).expect("rm");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index")).expect("json");
    let md = index["manifests"][0]["digest"].as_str().expect("digest")[7..].to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(md)).expect("manifest"))
            .expect("json");
    (dir, manifest)
}

fn retar(f: &Fixture, dir: &Path, name: &str) -> PathBuf {
    let out = f.base.join(name);
    sh(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&out)
        .arg("."));
    fs::remove_dir_all(dir).expect("rm dir");
    out
}

#[test]
fn manifest_naming_a_missing_blob_is_refused() {
    let f = Fixture::new("hostile-missing");
    let (dir, manifest) = oci_archive_dir(&f);
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    fs::remove_file(dir.join("blobs/sha256").join(&layer[7..])).expect("rm layer");
    let archive = retar(&f, &dir, "missing.tar");
    f.refuses(
        &mut f.load(&archive),
        "load",
        &["missing.tar", &layer, "not in the archive"],
    );
}

#[test]
fn blob_with_wrong_digest_is_refused() {
    let f = Fixture::new("hostile-digest");
    let (dir, manifest) = oci_archive_dir(&f);
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let path = dir.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, bytes).expect("write");
    let archive = retar(&f, &dir, "tampered.tar");
    f.refuses(
        &mut f.load(&archive),
        "load",
        &["tampered.tar", &layer[7..], "digest mismatch"],
    );
}

/// A well-formed archive whose layer is hostile: load unpacks layers with the same safe
/// applier, so the image is refused before it is named.
#[test]
fn archive_with_hostile_layer_is_refused() {
    let f = Fixture::new("hostile-layer");
    let layer = tar_of(&[OK_FILE, (b"../../pwned", EntryType::Regular, b"x", None)]);
    let diff_id = forge_oci::Digest::sha256_of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let manifest =
        r#"[{"Config":"c.json","RepoTags":["evil:1"],"Layers":["l/layer.tar"]}]"#.to_string();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("l/layer.tar", &layer[..]),
        ("c.json", config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let h = header(name.as_bytes(), EntryType::Regular, data.len() as u64, None);
        b.append(&h, data).expect("append");
    }
    let archive = f.input("evil-docker.tar", &b.into_inner().expect("tar"));
    let line = f.refuses(
        &mut f.load(&archive),
        "load",
        &["evil-docker.tar", "../../pwned", "'..'"],
    );
    assert!(!ok(&f.root, &["images"]).contains("evil"), "{line}");
    // The refused layer's blob is unreferenced: prune collects it.
    ok(&f.root, &["image", "prune", "-f"]);
    assert_blobs_intact(&f.root);
    let _ = std::io::stderr().flush();
}
