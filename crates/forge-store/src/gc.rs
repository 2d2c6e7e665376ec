//! Garbage collection: mark what `index.json` (and the caller's extra roots) reach, sweep
//! the rest of `blobs/`, `snapshots/` and everything in `tmp/`.
//!
//! GC holds `locks/gc.lock` exclusively, which every other operation holds shared (see
//! [`crate::lock`]): while it runs no one is staging in `tmp/` or holding a blob that is
//! written but not yet tagged, so both can go.

use std::collections::BTreeSet;
use std::fs;

use forge_oci::image::{Descriptor, ImageIndex, ImageManifest};
use forge_oci::{media_types, Digest, ImageConfig};

use crate::error::{io_err, Result};
use crate::lock::{self, LockMode};
use crate::snapshot::{chain_ids, remove_tree, tree_size};
use crate::store::{Store, StoreDir};

/// What else must survive a collection besides what `index.json` reaches (build cache
/// entries, containers' images).
#[derive(Debug, Clone, Default)]
pub struct GcRoots {
    /// Blobs to keep (and, for manifests and indexes, everything they reach).
    pub blobs: BTreeSet<Digest>,
    /// Snapshots to keep, by chain ID.
    pub snapshots: BTreeSet<Digest>,
}

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blob files removed.
    pub blobs_removed: u64,
    /// Snapshot directories removed.
    pub snapshots_removed: u64,
    /// Entries of `tmp/` removed.
    pub tmp_removed: u64,
    /// Bytes those held.
    pub bytes_freed: u64,
}

/// What is reachable.
#[derive(Debug, Clone, Default)]
pub struct Reachable {
    /// Blob digests.
    pub blobs: BTreeSet<Digest>,
    /// Snapshot chain IDs.
    pub snapshots: BTreeSet<Digest>,
}

impl Store {
    /// Collects garbage, waiting until no other operation holds the store.
    pub fn gc(&self, roots: &GcRoots) -> Result<GcReport> {
        let _guard = lock::lock(&self.lock_path("gc"), LockMode::Exclusive)?;
        self.gc_locked(roots)
    }

    /// Collects garbage if no other operation holds the store right now; `None` if one
    /// does (the next collection will get it).
    pub fn try_gc(&self, roots: &GcRoots) -> Result<Option<GcReport>> {
        match lock::try_lock(&self.lock_path("gc"), LockMode::Exclusive)? {
            Some(_guard) => self.gc_locked(roots).map(Some),
            None => Ok(None),
        }
    }

    /// Everything `index.json` and `roots` reach. Unreadable blobs are kept (marked) but
    /// not followed.
    pub fn reachable(&self, roots: &GcRoots) -> Result<Reachable> {
        let mut r = Reachable {
            blobs: BTreeSet::new(),
            snapshots: roots.snapshots.clone(),
        };
        let index = self.read_index()?;
        let mut todo: Vec<(Digest, String)> = Vec::new();
        for d in index.manifests() {
            push(&mut todo, d);
        }
        for d in &roots.blobs {
            // Unknown type: followed if it parses as a manifest or index.
            todo.push((d.clone(), String::new()));
        }
        while let Some((d, mt)) = todo.pop() {
            if !r.blobs.insert(d.clone()) {
                continue;
            }
            let guess = mt.is_empty();
            if guess || media_types::is_index(&mt) || media_types::is_manifest(&mt) {
                let Ok(bytes) = self.read_blob(&d, "manifest") else {
                    continue;
                };
                let v: serde_json::Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if v.get("manifests").is_some() {
                    if let Ok(idx) = serde_json::from_value::<ImageIndex>(v) {
                        for m in idx.manifests() {
                            push(&mut todo, m);
                        }
                    }
                } else if v.get("config").is_some() && v.get("layers").is_some() {
                    if let Ok(m) = serde_json::from_value::<ImageManifest>(v) {
                        push(&mut todo, m.config());
                        for l in m.layers() {
                            push(&mut todo, l);
                        }
                        // The config's diffIDs name the snapshots this image uses.
                        if let Ok(cd) = Digest::from_oci(m.config().digest()) {
                            r.blobs.insert(cd.clone());
                            if let Ok(cb) = self.read_blob(&cd, "config") {
                                if let Ok(c) = ImageConfig::from_json(&cb) {
                                    r.snapshots.extend(chain_ids(&c.rootfs.diff_ids));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(r)
    }

    fn gc_locked(&self, roots: &GcRoots) -> Result<GcReport> {
        let keep = self.reachable(roots)?;
        let mut report = GcReport::default();

        // Blobs.
        let blobs = self.root().join("blobs");
        if let Ok(algs) = fs::read_dir(&blobs) {
            for alg in algs.flatten() {
                let alg_dir = alg.path();
                if !alg_dir.is_dir() {
                    continue;
                }
                let alg_name = alg.file_name().to_string_lossy().into_owned();
                for e in fs::read_dir(&alg_dir).map_err(io_err("read", &alg_dir))? {
                    let e = e.map_err(io_err("read", &alg_dir))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    let digest = Digest::parse(&format!("{alg_name}:{name}")).ok();
                    if digest.as_ref().is_some_and(|d| keep.blobs.contains(d)) {
                        continue;
                    }
                    // Unreachable, or not a blob at all (a temp file an older writer left).
                    report.bytes_freed += tree_size(&e.path());
                    remove_tree(&e.path()).map_err(io_err("remove", e.path()))?;
                    report.blobs_removed += 1;
                }
            }
        }

        // Snapshots.
        let snaps = self.dir(StoreDir::Snapshots);
        for e in fs::read_dir(&snaps).map_err(io_err("read", &snaps))? {
            let e = e.map_err(io_err("read", &snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = Digest::from_sha256_hex(&name).ok();
            if digest.as_ref().is_some_and(|d| keep.snapshots.contains(d)) {
                continue;
            }
            // Moved to tmp/ first so a crash half way through leaves no partial snapshot
            // under its name.
            let doomed = self.tmp_path("gc-snapshot");
            fs::rename(e.path(), &doomed).map_err(io_err("rename", e.path()))?;
            report.bytes_freed += tree_size(&doomed);
            remove_tree(&doomed).map_err(io_err("remove", &doomed))?;
            report.snapshots_removed += 1;
        }

        // Memo entries of the blobs just removed: misses now, dropped so they do not pile up.
        let memo = self.block_memo();
        memo.prune().map_err(io_err(
            "prune",
            self.dir(StoreDir::Cache).join("gzip-blocks"),
        ))?;

        // Staging leftovers of killed or failed writers.
        let tmp = self.dir(StoreDir::Tmp);
        for e in fs::read_dir(&tmp).map_err(io_err("read", &tmp))? {
            let e = e.map_err(io_err("read", &tmp))?;
            report.bytes_freed += tree_size(&e.path());
            remove_tree(&e.path()).map_err(io_err("remove", e.path()))?;
            report.tmp_removed += 1;
        }
        Ok(report)
    }
}

fn push(todo: &mut Vec<(Digest, String)>, d: &Descriptor) {
    if let Ok(dg) = Digest::from_oci(d.digest()) {
        todo.push((dg, d.media_type().to_string()));
    }
}
