//! Helpers of the `forge build` tests: a store holding `busybox:latest` (the test rootfs
//! with docker's `CMD` and a `PATH`), builds with plain progress, the plain progress
//! parsed into steps, and results unpacked with `umoci`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{busybox_tar, forge, ok, output, Run};

/// Imports the busybox rootfs as `busybox:latest`, as a registry's busybox looks.
pub fn import_busybox_image(root: &Path) {
    let tar = busybox_tar();
    ok(
        root,
        &[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            "-c",
            "ENV PATH=/bin",
            tar.to_str().expect("utf-8 path"),
            "busybox:latest",
        ],
    );
}

/// `forge build --progress=plain ARGS…` with extra environment variables.
pub fn build(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = forge(root);
    c.arg("build").arg("--progress=plain").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    output(&mut c)
}

/// Builds and asserts success.
pub fn build_ok(root: &Path, args: &[&str]) -> Run {
    let r = build(root, args, &[]);
    assert!(
        r.ok,
        "forge build {args:?} failed ({:?}):\n{}",
        r.code, r.stderr
    );
    r
}

/// One step of the plain progress: its name and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub cached: bool,
    pub done: bool,
    pub error: bool,
}

/// Parses BuildKit's plain progress (`#N name`, `#N CACHED`, `#N DONE 0.1s`,
/// `#N ERROR: …`) into steps in the order they were first named; `#0` lines are
/// build-level messages and skipped.
pub fn steps(stderr: &str) -> Vec<Step> {
    let mut order: Vec<u64> = Vec::new();
    let mut by_n: BTreeMap<u64, Step> = BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, text)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if n == 0 {
            continue;
        }
        match by_n.get_mut(&n) {
            None => {
                order.push(n);
                by_n.insert(
                    n,
                    Step {
                        name: text.to_string(),
                        cached: false,
                        done: false,
                        error: false,
                    },
                );
            }
            Some(s) => {
                if text == "CACHED" {
                    s.cached = true;
                } else if text.starts_with("DONE ") {
                    s.done = true;
                } else if text.starts_with("ERROR") {
                    s.error = true;
                }
            }
        }
    }
    order.into_iter().filter_map(|n| by_n.remove(&n)).collect()
}

/// Names of the steps that ran (not from the cache).
pub fn ran(stderr: &str) -> Vec<String> {
    steps(stderr)
        .into_iter()
        .filter(|s| s.done || s.error)
        .map(|s| s.name)
        .collect()
}

/// Names of the steps taken from the cache.
pub fn cached(stderr: &str) -> Vec<String> {
    steps(stderr)
        .into_iter()
        .filter(|s| s.cached)
        .map(|s| s.name)
        .collect()
}

/// Copies `name` out of the store with skopeo and unpacks it with umoci into
/// `work/bundle`; returns the rootfs.
pub fn unpack(root: &Path, name: &str, work: &Path) -> Result<PathBuf, String> {
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let _ = fs::remove_dir_all(&layout);
    let _ = fs::remove_dir_all(&bundle);
    fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let r = output(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}:{name}", root.display()),
        &format!("oci:{}:img", layout.display()),
    ]));
    if !r.ok {
        return Err(format!("skopeo copy {name}: {}", r.stderr));
    }
    let r = output(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:img", layout.display()),
        bundle.to_str().expect("utf-8 path"),
    ]));
    if !r.ok {
        return Err(format!("umoci unpack {name}: {}", r.stderr));
    }
    Ok(bundle.join("rootfs"))
}

/// The manifest digest `name` points at in the store's `index.json`.
pub fn manifest_of(root: &Path, name: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).expect("index.json"))
            .expect("index JSON");
    let full = format!("docker.io/library/{name}");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| {
            let r = m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or("");
            r == name || r == full
        })
        .unwrap_or_else(|| panic!("{name} in index.json: {index}"))["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

/// A JSON blob of the store.
pub fn json_blob(root: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = fs::read(root.join("blobs/sha256").join(hex)).expect("blob");
    serde_json::from_slice(&bytes).expect("blob JSON")
}

/// The image config an image name points at, read from the store's own blobs (skopeo's
/// config type would drop docker's `Healthcheck`, `OnBuild` and `Shell`).
pub fn image_config(root: &Path, name: &str) -> serde_json::Value {
    let manifest = json_blob(root, &manifest_of(root, name));
    json_blob(
        root,
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    )
}

/// Every file under `dir`, recursively (symlinks not followed).
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.expect("dir entry");
        let ft = e.file_type().expect("file type");
        if ft.is_dir() {
            walk(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// Where `needle` appears under `dir`: in a file's bytes, or in a gzip-compressed
/// file's decompressed bytes (layer blobs).
pub fn find_text(dir: &Path, needle: &str) -> Vec<String> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    let n = needle.as_bytes();
    let contains = |hay: &[u8]| hay.windows(n.len()).any(|w| w == n);
    let mut hits = Vec::new();
    for f in files {
        let Ok(bytes) = fs::read(&f) else { continue };
        if contains(&bytes) {
            hits.push(f.display().to_string());
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(&f)
                .output()
                .expect("gzip");
            if contains(&out.stdout) {
                hits.push(format!("{} (decompressed)", f.display()));
            }
        }
    }
    hits
}
