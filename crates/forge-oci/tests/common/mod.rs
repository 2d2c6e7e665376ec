//! Shared test helpers: a tree with every kind of file a layer must carry, and a comparison
//! of two trees by everything a layer preserves.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

/// A scratch directory under the crate's target dir (ext4, with xattr support; /tmp may be
/// tmpfs without `user.*` xattrs on older kernels).
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).expect("create tmp base");
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(base)
        .expect("tempdir")
}

pub fn set_mtime(p: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
}

fn chown(p: &Path, uid: u32, gid: u32) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        p,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .expect("chown");
}

pub fn write(p: &Path, data: &[u8], mode: u32) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir -p");
    }
    fs::write(p, data).expect("write");
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The 200-character file name used in the tree.
pub fn long_name() -> String {
    format!("long-{}", "n".repeat(195))
}

/// Builds the standard test tree in `root`. Every mtime is 1_600_000_000 except `new.txt`
/// (2_000_000_000, for SOURCE_DATE_EPOCH clamping).
pub fn build_tree(root: &Path) {
    write(&root.join("a.txt"), b"hello\n", 0o644);
    fs::create_dir(root.join("empty")).expect("mkdir");
    write(&root.join("d1/d2/d3/deep.txt"), b"deep", 0o600);
    symlink("a.txt", root.join("link")).expect("symlink");
    symlink("/etc/passwd", root.join("abs-link")).expect("symlink");
    let long_target = format!("/{}/target", "t".repeat(150));
    symlink(&long_target, root.join("long-link")).expect("symlink");
    write(&root.join("hl1"), b"shared inode", 0o640);
    fs::hard_link(root.join("hl1"), root.join("d1/hl2")).expect("hardlink");
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
    mknod(
        &root.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .expect("mknod");
    write(&root.join("caps"), b"#!/bin/true\n", 0o755);
    xattr::set(root.join("caps"), "user.foo", b"bar").expect("user xattr");
    set_capability(&root.join("caps"));
    write(&root.join("suid"), b"s", 0o4755);
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    fs::create_dir(root.join("tmp")).expect("mkdir");
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    write(&root.join("owned"), b"mine", 0o644);
    chown(&root.join("owned"), 1000, 1000);
    fs::create_dir(root.join("home")).expect("mkdir");
    chown(&root.join("home"), 1000, 1000);
    write(&root.join("long").join(long_name()), b"long name", 0o644);
    write(&root.join("big.bin"), &pseudo_random(300_000), 0o644);
    write(&root.join("new.txt"), b"new", 0o644);

    // Fixed mtimes, children before parents (writing a child changes its parent's mtime).
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &all {
        set_mtime(p, 1_600_000_000);
    }
    set_mtime(&root.join("new.txt"), 2_000_000_000);
    set_mtime(root, 1_600_000_000);
}

/// `security.capability` for `cap_net_raw+ep`: with setcap when present, else the
/// VFS_CAP_REVISION_2 bytes directly.
pub fn set_capability(p: &Path) {
    let ok = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(p)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        // magic_etc = 0x02000001 (rev 2, effective), permitted bit 13 (CAP_NET_RAW).
        let mut v = Vec::new();
        v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
        v.extend_from_slice(&(1u32 << 13).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        xattr::set(p, "security.capability", &v).expect("set capability xattr");
    }
}

pub fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let m = fs::symlink_metadata(&p).expect("lstat");
        out.push(p.clone());
        if m.is_dir() {
            walk(&p, out);
        }
    }
}

/// Everything a layer preserves about one path.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub link: Option<PathBuf>,
    pub content: Option<Vec<u8>>,
    pub rdev: Option<(u64, u64)>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Describes the tree under `root` (relative paths), plus hardlink groups.
pub fn describe(root: &Path) -> (BTreeMap<PathBuf, Node>, Vec<Vec<PathBuf>>) {
    let mut all = Vec::new();
    walk(root, &mut all);
    let mut map = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    for p in all {
        let m = fs::symlink_metadata(&p).expect("lstat");
        let rel = p.strip_prefix(root).expect("under root").to_path_buf();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        if ft.is_file() && m.nlink() > 1 {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(&p).expect("listxattr") {
            let n = String::from_utf8_lossy(name.as_bytes()).into_owned();
            if n == "security.selinux" {
                continue;
            }
            if let Some(v) = xattr::get(&p, &name).expect("getxattr") {
                xattrs.insert(n, v);
            }
        }
        map.insert(
            rel,
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                link: ft
                    .is_symlink()
                    .then(|| fs::read_link(&p).expect("readlink")),
                content: ft.is_file().then(|| fs::read(&p).expect("read")),
                rdev: (ft.is_char_device() || ft.is_block_device()).then(|| {
                    (
                        nix::sys::stat::major(m.rdev()),
                        nix::sys::stat::minor(m.rdev()),
                    )
                }),
                xattrs,
            },
        );
    }
    let mut groups: Vec<Vec<PathBuf>> = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    groups.sort();
    (map, groups)
}

/// Asserts two trees are the same by every attribute a layer keeps. `check_mtime` is false
/// when a peer does not restore directory mtimes exactly.
pub fn assert_same_tree(expected: &Path, actual: &Path, check_mtime: bool) {
    let (a, ag) = describe(expected);
    let (b, bg) = describe(actual);
    let ak: Vec<_> = a.keys().collect();
    let bk: Vec<_> = b.keys().collect();
    assert_eq!(ak, bk, "same paths");
    for (path, na) in &a {
        let nb = &b[path];
        let mut na = na.clone();
        let mut nb = nb.clone();
        if !check_mtime {
            na.mtime = 0;
            nb.mtime = 0;
        }
        assert_eq!(na, nb, "attributes of {}", path.display());
    }
    assert_eq!(ag, bg, "hardlink groups");
}
