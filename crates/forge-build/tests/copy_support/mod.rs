//! Shared helpers of the COPY/ADD tests: trees on disk, a copy runner and
//! assertions on the layer directory.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forge_build::context::BuildContext;
use forge_build::graph::{AddOptions, Copy, Source};
use forge_build::ops::copy::{copy, CopyError, CopyOutcome, CopyRequest, CopySource};

/// A COPY of `sources` to `dest` from the context.
pub fn op(sources: &[&str], dest: &str) -> Copy {
    Copy {
        from: Source::Context,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        inline: Vec::new(),
        dest: dest.to_string(),
        chown: None,
        chmod: None,
        link: false,
        exclude: Vec::new(),
        parents: false,
        add: None,
    }
}

/// The same as an ADD.
pub fn add(sources: &[&str], dest: &str) -> Copy {
    let mut c = op(sources, dest);
    c.add = Some(AddOptions {
        unpack: None,
        checksum: None,
        keep_git_dir: false,
    });
    c
}

/// A directory tree made for one test.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (parents made), mode 0644.
    pub fn file(&self, rel: &str, content: &str) -> &Tree {
        self.file_mode(rel, content, 0o644)
    }

    pub fn file_mode(&self, rel: &str, content: &str, mode: u32) -> &Tree {
        let p = self.p(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(&p, content).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    pub fn bytes(&self, rel: &str, content: &[u8]) -> &Tree {
        let p = self.p(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(&p, content).expect("write");
        self
    }

    pub fn dir_mode(&self, rel: &str, mode: u32) -> &Tree {
        let p = self.p(rel);
        fs::create_dir_all(&p).expect("mkdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Sets a path's mode (after a chown, which clears set-id bits).
    pub fn mode(&self, rel: &str, mode: u32) -> &Tree {
        fs::set_permissions(self.p(rel), fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Tree {
        let p = self.p(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, &p).expect("symlink");
        self
    }

    pub fn hardlink(&self, rel: &str, existing: &str) -> &Tree {
        fs::hard_link(self.p(existing), self.p(rel)).expect("link");
        self
    }

    pub fn chown(&self, rel: &str, uid: u32, gid: u32) -> &Tree {
        std::os::unix::fs::lchown(self.p(rel), Some(uid), Some(gid)).expect("chown");
        self
    }

    /// Sets a path's mtime (not following symlinks is not needed here).
    pub fn mtime(&self, rel: &str, secs: u64) -> &Tree {
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        let f = fs::File::options()
            .read(true)
            .open(self.p(rel))
            .expect("open");
        f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
            .expect("set times");
        self
    }

    /// A root with /etc/passwd and /etc/group for `--chown` names.
    pub fn with_users(&self) -> &Tree {
        self.file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1001::/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        );
        self.file(
            "etc/group",
            "root:x:0:\nstaff:x:50:\nalice:x:1001:\nnobody:x:65534:\n",
        )
    }
}

/// The outcome of one copy: the layer directory and what `copy` said.
pub struct Run {
    pub diff: tempfile::TempDir,
    pub result: Result<CopyOutcome, CopyError>,
}

impl Run {
    pub fn p(&self, rel: &str) -> PathBuf {
        self.diff.path().join(rel.trim_start_matches('/'))
    }

    pub fn ok(&self) -> &CopyOutcome {
        match &self.result {
            Ok(o) => o,
            Err(e) => panic!("copy failed: {e}"),
        }
    }

    pub fn err(&self) -> String {
        match &self.result {
            Ok(_) => panic!("copy succeeded but should have failed"),
            Err(e) => e.to_string(),
        }
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }

    pub fn meta(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.p(rel)).unwrap_or_else(|e| panic!("stat {rel}: {e}"))
    }

    pub fn mode(&self, rel: &str) -> u32 {
        self.meta(rel).mode() & 0o7777
    }

    pub fn owner(&self, rel: &str) -> (u32, u32) {
        let m = self.meta(rel);
        (m.uid(), m.gid())
    }

    pub fn mtime(&self, rel: &str) -> i64 {
        self.meta(rel).mtime()
    }

    pub fn link(&self, rel: &str) -> String {
        fs::read_link(self.p(rel))
            .unwrap_or_else(|e| panic!("readlink {rel}: {e}"))
            .to_string_lossy()
            .into_owned()
    }

    /// Every path in the layer, sorted, relative, directories with a `/`.
    pub fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.diff.path(), self.diff.path(), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("readdir") {
        let e = e.expect("entry");
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            out.push(format!("{rel}/"));
            walk(root, &p, out);
        } else {
            out.push(rel);
        }
    }
}

/// Runs a copy from the context at `ctx` onto `view` (if any).
pub fn run_ctx(ctx: &Path, op: &Copy, view: Option<&Path>) -> Run {
    let context = BuildContext::open(ctx, None).expect("context");
    let diff = tempfile::tempdir().expect("diff dir");
    let result = copy(&CopyRequest {
        op,
        source: CopySource::Context(&context),
        dest_view: view,
        users_view: None,
        diff_dir: diff.path(),
        downloads: None,
    });
    Run { diff, result }
}

/// Runs a copy from the tree at `src` onto `view` (if any).
pub fn run_tree(src: &Path, op: &Copy, view: Option<&Path>) -> Run {
    let diff = tempfile::tempdir().expect("diff dir");
    let result = copy(&CopyRequest {
        op,
        source: CopySource::Tree(src),
        dest_view: view,
        users_view: None,
        diff_dir: diff.path(),
        downloads: None,
    });
    Run { diff, result }
}

pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after epoch").as_secs()
}
