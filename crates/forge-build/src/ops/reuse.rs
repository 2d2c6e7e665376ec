//! Reusing the unchanged files of a COPY's previous result.
//!
//! When one file of a large COPY from the build context changes, the step's cache key
//! changes and the step runs again; writing every selected file anew costs a new inode
//! per file, which dominates the step. Instead, a file whose source is provably the one
//! the previous run of the same step copied is hard-linked from that run's snapshot.
//!
//! "Provably the same" is the stat cache's test (DESIGN §2, `statcache/`): device, inode,
//! size, modification and change times of the source, recorded when it was copied
//! ([`SourceStamp`]). Any write, truncate, chmod, chown, xattr change or replacement of
//! the source moves its change time or inode. The previous file is also checked to still
//! have exactly the type, size, mode, owner and mtime the copy would give it.
//!
//! Why a hard link is safe: committed snapshots are never written again (they are only
//! overlay lowerdirs or read-only views; a RUN that changes such a file copies it up into
//! its own upper dir), so sharing an inode between two snapshots shares immutable data.
//! The new snapshot does not depend on the previous one: removing either leaves the other
//! whole (the inode lives while one name does). Within one layer the layer writer emits a
//! hard link entry only for two names of the layer itself, so the tar is the one a fresh
//! copy gives. Only context sources with a single link are reused (their owners are 0:0
//! or the `--chown` owner, part of the step's definition), and a failed link falls back
//! to copying.
//!
//! Which previous result: `cache/copy/<step digest>.json` names the snapshot the last run
//! of the step (the vertex digest: its definition and inputs, not the context's content)
//! committed, with the stamps of the files it copied. Written after the commit, read
//! before the copy; a missing, unreadable or stale record only means a full copy.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_oci::Digest;
use forge_store::{Store, StoreDir, StoreError};
use nix::fcntl::AtFlags;
use nix::sys::stat::FileStat;
use nix::unistd::linkat;
use serde::{Deserialize, Serialize};

use super::fsx::{self, Comps, Walked};

/// What identifies a source file's content without reading it: device, inode, size,
/// modification time and change time (seconds and nanoseconds each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamp([i64; 7]);

impl SourceStamp {
    pub(crate) fn of(st: &FileStat) -> SourceStamp {
        // Device and inode numbers are kept bit for bit; only equality matters.
        SourceStamp([
            st.st_dev as i64,
            st.st_ino as i64,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
        ])
    }
}

/// A previous result of the same COPY: its layer directory and the stamps of the
/// sources of the files in it, by path inside the layer (`a/b/c`).
#[derive(Debug, Clone)]
pub struct Previous {
    root: PathBuf,
    files: HashMap<String, SourceStamp>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    snapshot: Digest,
    files: BTreeMap<String, SourceStamp>,
}

fn record_path(store: &Store, step: &Digest) -> PathBuf {
    store
        .dir(StoreDir::Cache)
        .join("copy")
        .join(format!("{}.json", step.hex()))
}

impl Previous {
    /// A previous result in `root` whose files came from sources with `files`' stamps
    /// (a [`CopyOutcome::stamps`](super::copy::CopyOutcome::stamps)).
    pub fn new(root: &Path, files: BTreeMap<String, SourceStamp>) -> Previous {
        Previous {
            root: root.to_path_buf(),
            files: files.into_iter().collect(),
        }
    }

    /// The last committed result of the step `step`, if its record and snapshot are
    /// still there.
    pub fn load(store: &Store, step: &Digest) -> Option<Previous> {
        let bytes = std::fs::read(record_path(store, step)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        if !store.has_snapshot(&record.snapshot) {
            return None;
        }
        Some(Previous::new(
            &store.snapshot_fs(&record.snapshot),
            record.files,
        ))
    }

    /// Records `snapshot`, made by the step `step` from sources with `stamps`, as the
    /// step's previous result (staged, fsynced, renamed). Nothing is recorded when no
    /// file can be reused.
    pub fn save(
        store: &Store,
        step: &Digest,
        snapshot: &Digest,
        stamps: &BTreeMap<String, SourceStamp>,
    ) -> Result<(), StoreError> {
        if stamps.is_empty() {
            return Ok(());
        }
        let record = Record {
            snapshot: snapshot.clone(),
            files: stamps.clone(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|source| StoreError::Serialise {
            what: "COPY reuse record",
            source,
        })?;
        store.write_file(&record_path(store, step), &bytes)
    }
}

/// The metadata a copy gives a file: what a previous file must have to stand for it.
pub(crate) struct Expected {
    pub(crate) size: i64,
    pub(crate) perm: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: (i64, i64),
}

/// `a/b/c`, the key of a path inside the layer; `None` for a name that is not UTF-8
/// (such files are always copied).
pub(crate) fn layer_key(path: &[OsString]) -> Option<String> {
    let parts: Option<Vec<&str>> = path.iter().map(|c| c.to_str()).collect();
    parts.map(|p| p.join("/"))
}

/// A [`Previous`] opened for one copy: its root directory and the last directory
/// looked up in it (files come directory by directory).
pub(crate) struct Reuser {
    files: HashMap<String, SourceStamp>,
    root: OwnedFd,
    dir: Option<(Comps, Option<Arc<OwnedFd>>)>,
}

/// Where the previous result may hold a file to hard-link, and what that file must be.
pub(crate) struct Candidate {
    pub(crate) dir: Arc<OwnedFd>,
    pub(crate) name: OsString,
    pub(crate) want: Expected,
}

impl Candidate {
    /// Links the previous file to `ddir/dname` if it has exactly the metadata the copy
    /// would give it (checked here, where the link is made, so that this can run on
    /// any thread); `false` when it cannot stand for the copy.
    pub(crate) fn link(&self, ddir: BorrowedFd<'_>, dname: &OsStr) -> bool {
        let Ok(Some(st)) = fsx::lstat_at(self.dir.as_fd(), &self.name) else {
            return false;
        };
        let w = &self.want;
        let same = fsx::kind(&st) == nix::sys::stat::SFlag::S_IFREG
            && st.st_size == w.size
            && st.st_mode & 0o7777 == w.perm
            && st.st_uid == w.uid
            && st.st_gid == w.gid
            && (st.st_mtime, st.st_mtime_nsec) == w.mtime;
        same && linkat(
            self.dir.as_fd(),
            self.name.as_os_str(),
            ddir,
            dname,
            AtFlags::empty(),
        )
        .is_ok()
    }
}

impl Reuser {
    /// `None` when the previous result's directory cannot be opened.
    pub(crate) fn open(prev: &Previous) -> Option<Reuser> {
        let root = fsx::open_root(&prev.root).ok()?;
        Some(Reuser {
            files: prev.files.clone(),
            root,
            dir: None,
        })
    }

    /// The previous result's file for `path` (relative to the layer root), if
    /// `path`'s source had `stamp` when that result was made: a [`Candidate`] to link,
    /// which still checks the file is a regular file with the metadata `want`.
    pub(crate) fn find(
        &mut self,
        key: &str,
        path: &[OsString],
        stamp: &SourceStamp,
        want: Expected,
    ) -> Option<Candidate> {
        if self.files.get(key) != Some(stamp) {
            return None;
        }
        let (name, parent) = path.split_last()?;
        if self.dir.as_ref().map(|(p, _)| p.as_slice()) != Some(parent) {
            let fd = match fsx::walk_dir(self.root.as_fd(), parent) {
                Ok(Walked::Dir(fd)) => Some(Arc::new(fd)),
                _ => None,
            };
            self.dir = Some((parent.to_vec(), fd));
        }
        let dir = Arc::clone(self.dir.as_ref()?.1.as_ref()?);
        Some(Candidate {
            dir,
            name: name.clone(),
            want,
        })
    }
}
