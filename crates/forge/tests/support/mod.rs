//! Shared helpers of the store CLI tests: the real `forge` binary on a temporary store,
//! the busybox test rootfs (built once per target dir), tarballs made with GNU tar, and
//! checks of the store's invariants.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use forge_oci::Digest;

/// A scratch directory under the target dir (a real filesystem with xattrs, unlike some
/// tmpfs mounts).
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).expect("create tmp base");
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(base)
        .expect("tempdir")
}

/// `forge --root ROOT`, with the environment cleared of what would change its behaviour.
pub fn forge(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_forge"));
    c.arg("--root")
        .arg(root)
        .env_remove("FORGE_ROOT")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    c
}

/// What a command printed.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn output(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    Run {
        ok: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `forge --root ROOT ARGS…`.
pub fn run(root: &Path, args: &[&str]) -> Run {
    output(forge(root).args(args))
}

/// Runs and asserts success; returns stdout.
pub fn ok(root: &Path, args: &[&str]) -> String {
    let r = run(root, args);
    assert!(
        r.ok,
        "forge {args:?} failed ({:?}):\n{}\n{}",
        r.code, r.stdout, r.stderr
    );
    r.stdout
}

/// Runs and asserts failure with docker's exit status 1 and a one-line error; returns it.
pub fn fails(root: &Path, args: &[&str]) -> String {
    let r = run(root, args);
    assert!(!r.ok, "forge {args:?} should fail:\n{}", r.stdout);
    assert_eq!(
        r.code,
        Some(1),
        "exit status of forge {args:?}: {}",
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "one-line error from forge {args:?}: {}",
        r.stderr
    );
    assert!(
        lines[0].starts_with("Error: "),
        "docker-style error: {}",
        lines[0]
    );
    lines[0].to_string()
}

/// Runs any command, asserting success; returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let r = output(cmd);
    assert!(r.ok, "{cmd:?} failed:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn cache_dir() -> PathBuf {
    // Shared by every test binary of this target dir.
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-test-cache");
    fs::create_dir_all(&d).expect("cache dir");
    d
}

/// Runs `f` once per target dir, under a file lock so that test binaries running at the
/// same time do not build the same thing twice.
fn cached(name: &str, f: impl FnOnce(&Path)) -> PathBuf {
    let dir = cache_dir();
    let path = dir.join(name);
    let lock = File::create(dir.join(format!("{name}.lock"))).expect("lock file");
    let _l = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    if !path.exists() {
        f(&path);
        assert!(path.exists(), "{name} was built");
    }
    path
}

/// The busybox test rootfs from `testdata/busybox-rootfs.sh` (Debian's busybox-static).
pub fn busybox_rootfs() -> PathBuf {
    cached("busybox-rootfs", |dest| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/busybox-rootfs.sh");
        sh(Command::new("sh").arg(script).arg(dest));
    })
}

/// The busybox rootfs as a plain tar made by GNU tar.
pub fn busybox_tar() -> PathBuf {
    let rootfs = busybox_rootfs();
    cached("busybox.tar", |dest| tar_dir(&rootfs, dest, None))
}

/// Tars `dir` with GNU tar, numeric owners and every xattr, optionally compressed
/// (`gzip`, `zstd`).
pub fn tar_dir(dir: &Path, out: &Path, compress: Option<&str>) {
    let tmp = out.with_extension("partial");
    let mut c = Command::new("tar");
    c.arg("--xattrs")
        .arg("--xattrs-include=*")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(dir);
    if let Some(z) = compress {
        c.arg(format!("--use-compress-program={z}"));
    }
    c.arg("-cf").arg(&tmp).arg(".");
    sh(&mut c);
    fs::rename(&tmp, out).expect("rename tar");
}

/// Imports the busybox rootfs as `name` into the store at `root`; returns the image id.
pub fn import_busybox(root: &Path, name: &str) -> String {
    let tar = busybox_tar();
    let id = ok(root, &["import", tar.to_str().expect("utf-8 path"), name]);
    id.trim().to_string()
}

/// Every file under `blobs/` hashes to its name, and nothing else is there.
pub fn assert_blobs_intact(root: &Path) {
    let dir = root.join("blobs/sha256");
    for e in fs::read_dir(&dir).expect("read blobs") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let expected = Digest::from_sha256_hex(&name)
            .unwrap_or_else(|_| panic!("{name} under blobs/sha256 is not a digest"));
        assert_eq!(
            sha256_file(&e.path()),
            expected,
            "blob {name} hashes to its name"
        );
    }
}

/// The sha256 of a file.
pub fn sha256_file(p: &Path) -> Digest {
    let mut f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut h = forge_oci::Hasher::new(forge_oci::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish()
}

/// Entries of a directory, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Parses `forge inspect` output.
pub fn inspect(root: &Path, image: &str) -> serde_json::Value {
    let out = ok(root, &["inspect", image]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

/// The manifest digest an image's name points at in `index.json`.
pub fn manifest_digest(root: &Path, familiar: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).expect("index.json"))
            .expect("index JSON");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == familiar)
        .unwrap_or_else(|| panic!("{familiar} in index.json"))["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

/// Makes a file world-readable (for commands run as another user).
pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A ~100 MB oci-archive (`big:1`): a rootfs of incompressible files, so the layer blob
/// is ~100 MB too. Built once per target dir.
pub fn big_archive() -> PathBuf {
    cached("big-oci.tar", |dest| {
        let work = dest.with_extension("work");
        let _ = fs::remove_dir_all(&work);
        let tree = work.join("tree");
        fs::create_dir_all(tree.join("data")).expect("mkdir");
        for i in 0..20 {
            sh(Command::new("head")
                .args(["-c", "5000000", "/dev/urandom"])
                .stdout(File::create(tree.join(format!("data/chunk{i:02}"))).expect("create")));
        }
        for i in 0..200 {
            fs::write(
                tree.join(format!("data/small{i:03}")),
                format!("file {i}\n"),
            )
            .expect("write");
        }
        let tar = work.join("tree.tar");
        tar_dir(&tree, &tar, None);
        let store = work.join("store");
        ok(&store, &["import", tar.to_str().expect("p"), "big:1"]);
        let out = work.join("big.tar");
        ok(
            &store,
            &[
                "save",
                "--format",
                "oci-archive",
                "-o",
                out.to_str().expect("p"),
                "big:1",
            ],
        );
        fs::rename(&out, dest).expect("rename");
        fs::remove_dir_all(&work).expect("rm work");
    })
}
