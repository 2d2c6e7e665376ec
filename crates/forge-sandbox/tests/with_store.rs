//! Steps run in the sandbox on the store's snapshots, as a build runs them: `prepare` a
//! writable snapshot on a committed chain, run the step on an overlay of
//! `store.view(parent)` with the active snapshot's upper and work dirs, `commit` the upper
//! as a layer. Needs root (mounts, namespaces) and `umoci`.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as StdStdio};
use std::time::{Duration, Instant};

use common::*;
use forge_oci::image::{build_manifest, descriptor};
use forge_oci::layer::{Compression, SourceKind};
use forge_oci::layout::OciLayout;
use forge_oci::{media_types, Digest, ImageConfig, RootFs as OciRootFs};
use forge_sandbox::{cleanup_stale, MountSpec, ProcessSpec, RootFs, Sandbox, SandboxSpec};
use forge_store::{CommitOptions, CommittedLayer, GcRoots, Store, StoreDir};

// ---------------------------------------------------------------------------------------
// Helpers

fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forge-sandbox");
    fs::create_dir_all(&base).expect("base");
    tempfile::Builder::new()
        .prefix("s-")
        .tempdir_in(base)
        .expect("tempdir")
}

/// A store holding the busybox rootfs imported as a one-layer image; returns the store,
/// the layer's chain ID and the layer blob.
fn store_with_busybox(dir: &Path) -> (Store, Digest, Digest) {
    let store = Store::open(&dir.join("store")).expect("open store");
    let tarball = Command::new("tar")
        .arg("-C")
        .arg(busybox_rootfs())
        .args(["--numeric-owner", "-cf", "-", "."])
        .output()
        .expect("run tar");
    assert!(tarball.status.success());
    let imported = store
        .import(&tarball.stdout[..], &Default::default(), &[])
        .expect("import busybox");
    let chains = store.unpack(&imported.image).expect("unpack");
    let chain = chains.last().expect("one layer").clone();
    (store, chain, imported.layer.digest)
}

/// A sandbox spec on an overlay: `lowerdirs` plus the given upper and work dirs (or a
/// read-only view without them).
fn spec_on(
    lowerdirs: Vec<PathBuf>,
    upper_work: Option<(PathBuf, PathBuf)>,
    state: &Path,
    args: &[&str],
) -> SandboxSpec {
    let mut process = ProcessSpec::new(args.iter().copied());
    process.stdin = forge_sandbox::Stdio::Null;
    process.stdout = forge_sandbox::Stdio::Piped;
    process.stderr = forge_sandbox::Stdio::Piped;
    let (upperdir, workdir) = match upper_work {
        Some((u, w)) => (Some(u), Some(w)),
        None => (None, None),
    };
    let mut spec = SandboxSpec::new(
        RootFs::Overlay {
            lowerdirs,
            upperdir,
            workdir,
        },
        process,
    );
    spec.state_dir = state.to_path_buf();
    spec.cgroup_parent = "forge-test".to_owned();
    spec
}

fn plain() -> CommitOptions {
    CommitOptions {
        source: SourceKind::Directory,
        compression: Compression::None,
        level: None,
        source_date_epoch: Some(0),
    }
}

fn overlay_upper() -> CommitOptions {
    CommitOptions {
        source: SourceKind::OverlayUpper,
        compression: Compression::Gzip,
        level: None,
        source_date_epoch: Some(0),
    }
}

fn lgetxattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut names = vec![0u8; 4096];
    // SAFETY: buffers are ours and sized as passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let key = String::from_utf8_lossy(name).into_owned();
        let cname = CString::new(name).expect("name");
        let mut val = vec![0u8; 4096];
        // SAFETY: as above.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        assert!(m >= 0, "lgetxattr {key} {}", path.display());
        val.truncate(m as usize);
        out.insert(key, val);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The xattr helper: this test binary, re-run inside the sandbox (busybox has no
// setfattr or setcap), with the host's libraries bind-mounted and its loader run directly.

const XATTR_FILE_ENV: &str = "FORGE_TEST_XATTR_FILE";
const CAP_FILE_ENV: &str = "FORGE_TEST_CAP_FILE";

/// `security.capability` v2 granting CAP_NET_BIND_SERVICE (bit 10), effective: what
/// `setcap cap_net_bind_service+ep` writes.
fn cap_net_bind_service_ep() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // VFS_CAP_REVISION_2 | effective
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted, high word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, high word
    v
}

fn lsetxattr(path: &str, name: &str, value: &[u8]) {
    let p = CString::new(path).expect("path");
    let n = CString::new(name).expect("name");
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "lsetxattr {name} on {path}: {}",
        std::io::Error::last_os_error()
    );
}

/// Not a test of its own: inside the sandbox, sets the xattrs the step needs.
#[test]
fn xattr_helper() {
    let Ok(file) = std::env::var(XATTR_FILE_ENV) else {
        return;
    };
    lsetxattr(&file, "user.forge", b"hello");
    let cap = std::env::var(CAP_FILE_ENV).expect("cap file");
    lsetxattr(&cap, "security.capability", &cap_net_bind_service_ep());
}

/// Mounts that let the sandbox run this test binary (dynamically linked).
fn helper_mounts() -> (Vec<MountSpec>, String) {
    let exe = std::env::current_exe().expect("current exe");
    let mounts = vec![
        MountSpec::Bind {
            source: "/usr/lib/x86_64-linux-gnu".into(),
            target: "/hostlib".into(),
            readonly: true,
        },
        MountSpec::Bind {
            source: exe,
            target: "/forge-helper".into(),
            readonly: true,
        },
    ];
    let cmd = "/hostlib/ld-linux-x86-64.so.2 --library-path /hostlib /forge-helper \
               --exact xattr_helper --nocapture --test-threads=1 >/dev/null"
        .to_owned();
    (mounts, cmd)
}

// ---------------------------------------------------------------------------------------
// Trees

/// One file as a tree comparison sees it (no times: directories' mtimes differ between an
/// overlay and an unpacked tree).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    content: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every file under `root` except the top-level entries in `skip`, keyed by path.
fn tree(root: &Path, skip: &[&str]) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).expect("read_dir") {
            let e = e.expect("entry");
            let r = rel.join(e.file_name());
            let key = r.to_string_lossy().into_owned();
            if skip.contains(&key.as_str()) {
                continue;
            }
            let m = fs::symlink_metadata(e.path()).expect("lstat");
            let ft = m.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(r.clone());
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                let t = fs::read_link(e.path()).expect("readlink");
                ("symlink", t.as_os_str().as_bytes().to_vec())
            } else if ft.is_file() {
                ("file", fs::read(e.path()).expect("read"))
            } else {
                ("other", format!("{:x}", m.rdev()).into_bytes())
            };
            let xattrs = lgetxattrs(&e.path())
                .into_iter()
                .filter(|(k, _)| !k.starts_with("trusted.overlay."))
                .collect();
            out.insert(
                key,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    nlink: if ft.is_dir() { 0 } else { m.nlink() },
                    content,
                    xattrs,
                },
            );
        }
    }
    out
}

/// One tar entry of a layer, as the golden list has it.
fn layer_entries(store: &Store, blob: &Digest) -> Vec<String> {
    let bytes = store.read_blob(blob, "layer").expect("blob");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut raw)
        .expect("gunzip");
    let mut ar = tar::Archive::new(&raw[..]);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            tar::EntryType::Char => "char",
            _ => "other",
        };
        let mut line = format!(
            "{path} {kind} {:o} {}:{}",
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.gid().expect("gid")
        );
        if let Some(l) = h.link_name().expect("link") {
            line.push_str(&format!(" -> {}", l.display()));
        }
        let mut xattrs: Vec<String> = Vec::new();
        if let Some(pax) = e.pax_extensions().expect("pax") {
            for ext in pax {
                let ext = ext.expect("pax record");
                let key = ext.key().expect("key");
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    let v = ext.value_bytes();
                    let shown = match std::str::from_utf8(v) {
                        Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
                        _ => v.iter().map(|b| format!("{b:02x}")).collect(),
                    };
                    xattrs.push(format!("{name}={shown}"));
                }
            }
        }
        if !xattrs.is_empty() {
            line.push_str(&format!(" [{}]", xattrs.join(",")));
        }
        let mut content = Vec::new();
        e.read_to_end(&mut content).expect("content");
        if kind == "file" && !content.is_empty() {
            line.push_str(&format!(" {:?}", String::from_utf8_lossy(&content)));
        }
        out.push(line);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tests

/// The lower layer the step changes: files, a directory to remove, one to remove and
/// recreate, owned by various users.
fn commit_lower(store: &Store, parent: &Digest) -> CommittedLayer {
    let a = store.prepare(Some(parent)).expect("prepare");
    let d = a.upper().join("data");
    fs::create_dir_all(d.join("dir/sub")).expect("mkdir");
    fs::create_dir_all(d.join("redo")).expect("mkdir");
    for (name, body) in [
        ("keep", "keep\n"),
        ("modify", "old\n"),
        ("chmod", "chmod\n"),
        ("delete", "delete\n"),
        ("dir/a", "a\n"),
        ("dir/sub/b", "b\n"),
        ("redo/old", "old\n"),
    ] {
        fs::write(d.join(name), body).expect("write");
    }
    std::os::unix::fs::chown(d.join("keep"), Some(1000), Some(1000)).expect("chown");
    std::os::unix::fs::chown(d.join("modify"), Some(1000), Some(1001)).expect("chown");
    store
        .commit(a, &plain())
        .expect("commit lower")
        .expect("a layer")
}

const STEP: &str = r#"set -e
cd /data
echo new > modify
chmod 0600 chmod
rm delete
rm -r dir
rm -r redo
mkdir redo
echo fresh > redo/fresh
echo new > new
ln new hardlink
chown 1000:1000 new
echo x > xattr
printf '#!/bin/sh\n' > capbin
chmod 0755 capbin
mkdir -p /opt/made
ln -s ../data/new /opt/made/link
"#;

#[test]
fn step_layer_matches_golden_and_umoci_applies_it_to_the_same_tree() {
    let tmp = scratch();
    let (store, busybox, busybox_blob) = store_with_busybox(tmp.path());
    let lower = commit_lower(&store, &busybox);
    let state = tmp.path().join("state");

    let active = store.prepare(Some(&lower.chain_id)).expect("prepare");
    assert_eq!(
        active.lowerdirs(),
        store.view(Some(&lower.chain_id)).expect("view")
    );
    let (mounts, helper) = helper_mounts();
    let script =
        format!("{STEP}{XATTR_FILE_ENV}=/data/xattr {CAP_FILE_ENV}=/data/capbin {helper}\n");
    let mut spec = spec_on(
        active.lowerdirs().to_vec(),
        Some((active.upper(), active.work())),
        &state,
        &["sh", "-c", &script],
    );
    spec.mounts = mounts;
    let out = output(&spec);
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let step = store
        .commit(active, &overlay_upper())
        .expect("commit")
        .expect("a layer");
    assert_eq!(step.media_type, media_types::OCI_LAYER_GZIP);

    // Exactly these entries: copied-up parents, the changes, whiteouts for what went, an
    // opaque marker for the directory removed and recreated; nothing the sandbox mounted.
    let cap_hex: String = cap_net_bind_service_ep()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let golden = vec![
        "data/ dir 755 0:0".to_owned(),
        "data/.wh.delete file 0 0:0".to_owned(),
        "data/.wh.dir file 0 0:0".to_owned(),
        format!("data/capbin file 755 0:0 [security.capability={cap_hex}] \"#!/bin/sh\\n\""),
        "data/chmod file 600 0:0 \"chmod\\n\"".to_owned(),
        "data/hardlink file 644 1000:1000 \"new\\n\"".to_owned(),
        "data/modify file 644 1000:1001 \"new\\n\"".to_owned(),
        "data/new hardlink 644 1000:1000 -> data/hardlink".to_owned(),
        "data/redo/ dir 755 0:0".to_owned(),
        // docker (pkg/archive) gives the opaque marker its directory's mode.
        "data/redo/.wh..wh..opq file 755 0:0".to_owned(),
        "data/redo/fresh file 644 0:0 \"fresh\\n\"".to_owned(),
        "data/xattr file 644 0:0 [user.forge=hello] \"x\\n\"".to_owned(),
        "opt/ dir 755 0:0".to_owned(),
        "opt/made/ dir 755 0:0".to_owned(),
        "opt/made/link symlink 777 0:0 -> ../data/new".to_owned(),
    ];
    assert_eq!(layer_entries(&store, &step.blob), golden);

    // The committed snapshot is the upper itself, and chains onto the lower.
    assert_eq!(
        store.view(Some(&step.chain_id)).expect("view"),
        [
            store.snapshot_fs(&step.chain_id),
            store.snapshot_fs(&lower.chain_id),
            store.snapshot_fs(&busybox)
        ]
    );

    // umoci applies busybox + lower + step from an OCI layout of the three blobs.
    let layout_dir = tmp.path().join("layout");
    let mut layout = OciLayout::create(&layout_dir).expect("layout");
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (blob, mt) in [
        (&busybox_blob, media_types::OCI_LAYER_GZIP),
        (&lower.blob, media_types::OCI_LAYER_TAR),
        (&step.blob, media_types::OCI_LAYER_GZIP),
    ] {
        fs::copy(store.blob_path(blob), layout.blob_path(blob)).expect("copy blob");
        let size = fs::metadata(store.blob_path(blob)).expect("blob").len();
        layers.push(descriptor(mt, blob, size));
    }
    diff_ids.push(
        store
            .snapshot_meta(&busybox)
            .expect("meta")
            .expect("busybox")
            .diff_id,
    );
    diff_ids.push(lower.diff_id.clone());
    diff_ids.push(step.diff_id.clone());
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: OciRootFs {
            diff_ids,
            ..OciRootFs::default()
        },
        ..ImageConfig::default()
    };
    let cfg = layout
        .put_json(media_types::OCI_CONFIG, &config)
        .expect("config");
    let manifest = build_manifest(cfg, layers, None, false);
    let md = layout
        .put_json(media_types::OCI_MANIFEST, &manifest)
        .expect("manifest");
    layout.tag("step", &md).expect("tag");
    let unpacked = tmp.path().join("umoci-rootfs");
    let st = Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:step", layout_dir.display()))
        .arg(&unpacked)
        .status()
        .expect("run umoci");
    assert!(st.success(), "umoci raw unpack failed");

    // The committed chain, viewed read-only through the sandbox, shows the same tree.
    let mut viewer = spec_on(
        store.view(Some(&step.chain_id)).expect("view"),
        None,
        &state,
        &["sleep", "100"],
    );
    viewer.process.stdout = forge_sandbox::Stdio::Null;
    viewer.process.stderr = forge_sandbox::Stdio::Null;
    let sb = Sandbox::spawn(&viewer).expect("spawn viewer");
    let pid = sb.pid().expect("pid");
    let skip = [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ];
    let seen = tree(&PathBuf::from(format!("/proc/{pid}/root")), &skip);
    sb.kill(libc::SIGKILL).expect("kill viewer");
    let _ = sb.wait();
    let applied = tree(&unpacked, &skip);
    assert!(seen.contains_key("data/xattr"));
    assert!(!seen.contains_key("data/delete"));
    assert!(!seen.contains_key("data/redo/old"));
    assert_eq!(seen["data/new"].nlink, 2);
    let only_seen: Vec<_> = seen.keys().filter(|k| !applied.contains_key(*k)).collect();
    let only_applied: Vec<_> = applied.keys().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        only_seen.is_empty() && only_applied.is_empty(),
        "only in the overlay: {only_seen:?}; only in umoci's tree: {only_applied:?}"
    );
    for (k, v) in &seen {
        assert_eq!(v, &applied[k], "{k} differs");
    }
    assert_eq!(
        seen["data/capbin"].xattrs.get("security.capability"),
        Some(&cap_net_bind_service_ep())
    );
    let m = fs::symlink_metadata(unpacked.join("data/new")).expect("new");
    let h = fs::symlink_metadata(unpacked.join("data/hardlink")).expect("hardlink");
    assert_eq!(m.ino(), h.ino(), "umoci kept the hardlink");
}

/// 200 layers made through prepare/commit mount in one overlay and read correctly.
#[test]
fn two_hundred_layer_chain_mounts_and_reads() {
    let tmp = scratch();
    let (store, busybox, _) = store_with_busybox(tmp.path());
    let mut parent = busybox.clone();
    for i in 0..200 {
        let a = store.prepare(Some(&parent)).expect("prepare");
        let d = a.upper().join("layers");
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join(format!("l{i}")), format!("{i}\n")).expect("write");
        if i == 0 || i == 100 {
            fs::write(a.upper().join("over"), format!("written at {i}\n")).expect("write");
        }
        parent = store
            .commit(a, &plain())
            .expect("commit")
            .expect("layer")
            .chain_id;
    }
    let lowerdirs = store.view(Some(&parent)).expect("view");
    assert_eq!(lowerdirs.len(), 201);
    assert_eq!(lowerdirs.last(), Some(&store.snapshot_fs(&busybox)));

    // A step on top of all of it, through prepare, writes into its own upper.
    let active = store.prepare(Some(&parent)).expect("prepare");
    let spec = spec_on(
        active.lowerdirs().to_vec(),
        Some((active.upper(), active.work())),
        &tmp.path().join("state"),
        &[
            "sh",
            "-c",
            "cat /layers/l0 /layers/l199 /over; ls /layers | wc -l; echo top > /top",
        ],
    );
    assert_eq!(stdout(&spec), "0\n199\nwritten at 100\n200\n");
    let top = store
        .commit(active, &overlay_upper())
        .expect("commit")
        .expect("layer");
    assert_eq!(store.view(Some(&top.chain_id)).expect("view").len(), 202);
    assert_eq!(
        fs::read_to_string(store.snapshot_fs(&top.chain_id).join("top")).expect("top"),
        "top\n"
    );
}

// ---------------------------------------------------------------------------------------
// SIGKILL of forge mid-step

const KILL_HELPER_ENV: &str = "FORGE_WITH_STORE_SIGKILL_HELPER";

/// Not a test of its own: the forge process the SIGKILL test starts (this binary again)
/// and kills. It prepares a snapshot on the store's busybox and runs `sleep 100` on it.
#[test]
fn sigkill_helper_with_store() {
    let Ok(dir) = std::env::var(KILL_HELPER_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = Store::open(&dir.join("store")).expect("open store");
    let busybox =
        Digest::parse(&std::env::var("FORGE_BUSYBOX_CHAIN").expect("chain")).expect("digest");
    let active = store.prepare(Some(&busybox)).expect("prepare");
    let mut spec = spec_on(
        active.lowerdirs().to_vec(),
        Some((active.upper(), active.work())),
        &dir.join("state"),
        &["sh", "-c", "echo partial > /partial; exec sleep 100"],
    );
    spec.process.stdout = forge_sandbox::Stdio::Null;
    spec.process.stderr = forge_sandbox::Stdio::Null;
    spec.limits.memory = Some(128 << 20);
    let sb = Sandbox::spawn(&spec).expect("spawn");
    let pid = sb.pid().expect("pid");
    let ns = fs::read_link(format!("/proc/{pid}/ns/pid")).expect("ns");
    println!("SANDBOX {} {} {}", pid, ns.display(), sb.id());
    let _ = sb.wait();
    panic!("the sandbox ended before this process was killed");
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", "cpuacct", "unified", ""]
        .iter()
        .map(|c| {
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join("forge-test")
                .join(id)
        })
        .collect()
}

#[test]
fn sigkill_mid_step_then_cleanup_and_gc_leave_nothing() {
    let tmp = scratch();
    let (store, busybox, _) = store_with_busybox(tmp.path());
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "sigkill_helper_with_store",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_HELPER_ENV, tmp.path())
        .env("FORGE_BUSYBOX_CHAIN", busybox.to_string())
        .stdout(StdStdio::piped())
        .stderr(StdStdio::null())
        .spawn()
        .expect("start helper");
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    while !line.contains("SANDBOX ") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "helper exited early"
        );
    }
    let line = &line[line.find("SANDBOX ").expect("marker")..];
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (ns, id) = (fields[2].to_owned(), fields[3].to_owned());
    // Mid-step: the command has written into the active snapshot's upper in tmp/.
    let tmp_dir = store.dir(StoreDir::Tmp);
    assert!(
        wait_until(Duration::from_secs(5), || pids_in_namespace(&ns).len() == 2),
        "pid 1 and sleep"
    );
    let pids = pids_in_namespace(&ns);
    assert!(fs::read_dir(&tmp_dir).expect("tmp").count() >= 1);

    child.kill().expect("SIGKILL the helper");
    child.wait().expect("reap the helper");

    // No process of the step survives (checked by pid), no mount anywhere on the host.
    assert!(
        wait_until(Duration::from_secs(5), || pids_in_namespace(&ns).is_empty()),
        "sandbox processes survived: {:?}",
        pids_in_namespace(&ns)
    );
    for pid in &pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid}");
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&*tmp.path().to_string_lossy()),
        "{mountinfo}"
    );

    // A new forge command: cleanup_stale removes the cgroups and lock, gc the staging dir.
    let report = cleanup_stale(&tmp.path().join("state")).expect("cleanup");
    assert_eq!(report.removed, std::slice::from_ref(&id));
    assert!(report.busy_cgroups.is_empty());
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "{} survived cleanup", d.display());
    }
    let gc = store.gc(&GcRoots::default()).expect("gc");
    assert!(gc.tmp_removed >= 1, "{gc:?}");
    assert_eq!(fs::read_dir(&tmp_dir).expect("tmp").count(), 0);
    assert!(store.has_snapshot(&busybox), "the image's snapshot stays");
    assert_eq!(
        fs::read_dir(tmp.path().join("state"))
            .expect("state")
            .count(),
        0
    );
}
