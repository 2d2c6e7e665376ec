//! Snapshots: unpacked layers under `snapshots/<chain id hex>/`, ready to be overlay
//! lowerdirs.
//!
//! containerd's vocabulary: a snapshot is *prepared* in `tmp/` ([`Store::prepare_snapshot`]),
//! filled, and *committed* ([`Store::commit_snapshot`]): its `meta.json` is written and the
//! whole directory renamed into `snapshots/`, so a snapshot directory either does not exist
//! or is complete. Snapshots are keyed by the layer's chain ID (OCI image spec:
//! `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`), so
//! images sharing a base share its snapshots. Each holds one layer's diff in overlayfs
//! format (`fs/`): whiteouts as 0/0 character devices, opaque directories marked with
//! `trusted.overlay.opaque=y`.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use forge_oci::layer::{
    apply_layer, peek, sniff, ApplyMode, ApplyOptions, Decoder, Sniffed, SNIFF_LEN,
};
use forge_oci::{Digest, HashingReader};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result, StoreError};
use crate::images::ImageRecord;
use crate::store::{sync_dir, Store, StoreDir};

/// `meta.json` of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The snapshot's key.
    pub chain_id: Digest,
    /// The chain ID of the layer below, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// The layer's diffID.
    pub diff_id: Digest,
    /// The layer blob it was unpacked from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Digest>,
    /// Bytes of content in the diff, counted as docker does (apparent sizes of every
    /// non-directory, hardlinks once).
    pub size: u64,
    /// Bytes of the uncompressed layer tar, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
}

/// The chain IDs of a stack of diffIDs, base first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A snapshot being filled in `tmp/`; removed on drop unless committed.
#[derive(Debug)]
pub struct PreparedSnapshot {
    dir: PathBuf,
    committed: bool,
}

impl PreparedSnapshot {
    /// The directory to fill: the snapshot's `fs/`.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }

    /// The staging directory (holding `fs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PreparedSnapshot {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_tree(&self.dir);
        }
    }
}

impl Store {
    /// `snapshots/<chain id hex>/`.
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir(StoreDir::Snapshots).join(chain_id.hex())
    }

    /// `snapshots/<chain id hex>/fs/`: the layer's files, an overlay lowerdir.
    pub fn snapshot_fs(&self, chain_id: &Digest) -> PathBuf {
        self.snapshot_dir(chain_id).join("fs")
    }

    /// Whether the snapshot exists (committed snapshots are always complete).
    pub fn has_snapshot(&self, chain_id: &Digest) -> bool {
        self.snapshot_dir(chain_id).join("meta.json").is_file()
    }

    /// A snapshot's metadata, `None` if it does not exist.
    pub fn snapshot_meta(&self, chain_id: &Digest) -> Result<Option<SnapshotMeta>> {
        let path = self.snapshot_dir(chain_id).join("meta.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Every committed snapshot's chain ID.
    pub fn snapshots(&self) -> Result<Vec<Digest>> {
        let dir = self.dir(StoreDir::Snapshots);
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let e = e.map_err(io_err("read", &dir))?;
            if let Ok(d) = Digest::from_sha256_hex(&e.file_name().to_string_lossy()) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Starts a snapshot in `tmp/` with an empty `fs/`.
    pub fn prepare_snapshot(&self) -> Result<PreparedSnapshot> {
        spread_new_dirs(&self.dir(StoreDir::Tmp));
        let dir = self.tmp_path("snapshot");
        let fs_dir = dir.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io_err("create", &fs_dir))?;
        fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &fs_dir))?;
        Ok(PreparedSnapshot {
            dir,
            committed: false,
        })
    }

    /// Makes a prepared snapshot visible as `snapshots/<meta.chain_id>/`. If another
    /// process committed the same chain ID first, theirs is kept and ours discarded.
    pub fn commit_snapshot(&self, mut p: PreparedSnapshot, meta: &SnapshotMeta) -> Result<()> {
        let meta_path = p.dir.join("meta.json");
        let bytes = serde_json::to_vec(meta).map_err(|source| StoreError::Serialise {
            what: "snapshot metadata",
            source,
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&meta_path)
            .map_err(io_err("create", &meta_path))?;
        f.write_all(&bytes).map_err(io_err("write", &meta_path))?;
        f.sync_all().map_err(io_err("fsync", &meta_path))?;
        let dest = self.snapshot_dir(&meta.chain_id);
        if self.has_snapshot(&meta.chain_id) {
            return Ok(()); // dropped: ours is removed
        }
        match fs::rename(&p.dir, &dest) {
            Ok(()) => {
                p.committed = true;
                sync_dir(&self.dir(StoreDir::Snapshots))
            }
            // Someone else's complete snapshot is already there.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOTEMPTY) | Some(nix::libc::EEXIST)
                ) && self.has_snapshot(&meta.chain_id) =>
            {
                Ok(())
            }
            Err(e) => Err(io_err("rename", &dest)(e)),
        }
    }

    /// Makes sure every layer of `image` is unpacked; returns the chain IDs, base first.
    /// Each layer blob is verified against its digest and its diffID while unpacking.
    pub fn unpack(&self, image: &ImageRecord) -> Result<Vec<Digest>> {
        let diff_ids = &image.config.rootfs.diff_ids;
        let layers = image.layer_digests()?;
        if layers.len() != diff_ids.len() {
            return Err(StoreError::LayerCount {
                manifest: Digest::from_oci(image.manifest.digest())
                    .unwrap_or_else(|_| image.id.clone()),
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let chains = chain_ids(diff_ids);
        for (i, chain) in chains.iter().enumerate() {
            if self.has_snapshot(chain) {
                continue;
            }
            let parent = i.checked_sub(1).map(|p| chains[p].clone());
            self.unpack_layer(&layers[i], &diff_ids[i], chain, parent)?;
        }
        Ok(chains)
    }

    pub(crate) fn unpack_layer(
        &self,
        layer: &Digest,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<Digest>,
    ) -> Result<()> {
        let (blob, _) = self.open_blob(layer, "layer")?;
        self.unpack_layer_from(blob, layer, diff_id, chain, parent)
    }

    /// Unpacks the layer blob read from `blob` as snapshot `chain`, e.g. while the blob
    /// is still downloading. Only the diffID is checked here: verifying the blob's own
    /// digest is up to whoever stores it (a [`Store::open_blob`] reader does at its end).
    /// The snapshot is committed only if the tar hashes to `diff_id`.
    pub fn unpack_layer_from(
        &self,
        mut blob: impl io::Read,
        layer: &Digest,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<Digest>,
    ) -> Result<()> {
        let file = format!("layer {layer}");
        let apply_err = |source| StoreError::Apply {
            file: file.clone(),
            source,
        };
        let p = self.prepare_snapshot()?;
        let (applied, hashed_size) = {
            let stream_err = |e: io::Error| StoreError::Corrupt {
                path: self.blob_path(layer),
                reason: e.to_string(),
            };
            let (prefix, chained) = peek(&mut blob, SNIFF_LEN).map_err(stream_err)?;
            let compression = match sniff(&prefix) {
                Sniffed::Known(c) => c,
                Sniffed::Bzip2 | Sniffed::Xz => {
                    return Err(StoreError::Corrupt {
                        path: self.blob_path(layer),
                        reason: "layer compression is not gzip, zstd or none".into(),
                    })
                }
            };
            let mut tar =
                HashingReader::new(Decoder::new(chained, compression).map_err(stream_err)?);
            let opts = ApplyOptions {
                mode: ApplyMode::Overlay,
                same_owner: None,
            };
            let applied = apply_layer(&mut tar, &p.fs(), &opts).map_err(apply_err)?;
            (applied, tar.bytes_read())
        };
        // Read whatever the decompressor left, so the blob's digest is checked over all
        // of it.
        io::copy(&mut blob, &mut io::sink()).map_err(|e| StoreError::Corrupt {
            path: self.blob_path(layer),
            reason: e.to_string(),
        })?;
        if &applied.diff_id != diff_id {
            return Err(StoreError::DiffIdMismatch {
                layer: layer.clone(),
                expected: diff_id.clone(),
                actual: applied.diff_id,
            });
        }
        let size = content_size(&p.fs())?;
        let meta = SnapshotMeta {
            chain_id: chain.clone(),
            parent,
            diff_id: diff_id.clone(),
            layer: Some(layer.clone()),
            size,
            uncompressed_size: Some(hashed_size),
        };
        self.commit_snapshot(p, &meta)
    }

    /// The overlay lowerdirs of `image`, top layer first (overlayfs' order), unpacking
    /// missing layers.
    pub fn lowerdirs(&self, image: &ImageRecord) -> Result<Vec<PathBuf>> {
        let mut dirs: Vec<PathBuf> = self
            .unpack(image)?
            .iter()
            .map(|c| self.snapshot_fs(c))
            .collect();
        dirs.reverse();
        Ok(dirs)
    }

    /// The size of an image as docker reports it: the content of its unpacked layers
    /// (falling back to the compressed layer size for a layer not unpacked).
    pub fn image_size(&self, image: &ImageRecord) -> u64 {
        let chains = chain_ids(&image.config.rootfs.diff_ids);
        chains
            .iter()
            .enumerate()
            .map(|(i, c)| match self.snapshot_meta(c) {
                Ok(Some(m)) => m.size,
                _ => image.layers.get(i).map_or(0, |l| l.size()),
            })
            .sum()
    }
}

/// `FS_TOPDIR_FL` of linux/fs.h (`chattr +T`), which libc does not define.
const FS_TOPDIR_FL: nix::libc::c_int = 0x0002_0000;

/// Marks `dir` (the store's `tmp/`, where snapshots are staged) as the top of directory
/// hierarchies for ext4's Orlov allocator, as `/home` is: each new snapshot directory
/// then goes to a lightly used block group instead of its parent's, and its files with
/// it. Without it every snapshot lands in the group of `tmp/`, where the store's own
/// churn (removed steps, pruned snapshots) leaves thousands of freed inodes; ext4
/// without a journal skips each inode freed in the last 30 seconds with a buffer-cache
/// lookup on every allocation (`recently_deleted` in fs/ext4/ialloc.c), so writing the
/// 2,000 files of one COPY there took seconds of kernel time. Only a placement hint:
/// nothing depends on it, and file systems without the flag refuse it, which is ignored.
fn spread_new_dirs(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(d) = fs::File::open(dir) else { return };
    let mut flags: nix::libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, valid for the call.
    let got = unsafe { nix::libc::ioctl(d.as_raw_fd(), nix::libc::FS_IOC_GETFLAGS, &mut flags) };
    if got != 0 || flags & FS_TOPDIR_FL != 0 {
        return;
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, valid for the call.
    let _ = unsafe { nix::libc::ioctl(d.as_raw_fd(), nix::libc::FS_IOC_SETFLAGS, &flags) };
}

/// docker's `directory.Size`: apparent sizes of every non-directory under `dir`, each
/// inode once.
pub fn content_size(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err("read", &d))? {
            let e = e.map_err(io_err("read", &d))?;
            let m = e.metadata().map_err(io_err("stat", e.path()))?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// `du`-style bytes on disk under `path` (apparent sizes, each inode once), 0 if missing.
pub fn tree_size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => content_size(path).unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Removes a file or a directory tree, making read-only directories writable first (a
/// layer may hold 0555 directories, which an unprivileged owner cannot empty).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !m.is_dir() {
        return fs::remove_file(path);
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mut stack = vec![path.to_path_buf()];
            while let Some(d) = stack.pop() {
                let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
                if let Ok(rd) = fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            stack.push(e.path());
                        }
                    }
                }
            }
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_staged_under_a_top_directory_on_ext4() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let _staged = store.prepare_snapshot().expect("prepare");
        let fs_type = nix::sys::statfs::statfs(dir.path())
            .expect("statfs")
            .filesystem_type();
        if fs_type != nix::sys::statfs::EXT4_SUPER_MAGIC {
            eprintln!("not ext4 ({fs_type:?}): the placement hint does not apply, not checked");
            return;
        }
        let tmp = fs::File::open(store.dir(StoreDir::Tmp)).expect("open tmp");
        let mut flags: nix::libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, valid for the call.
        let got =
            unsafe { nix::libc::ioctl(tmp.as_raw_fd(), nix::libc::FS_IOC_GETFLAGS, &mut flags) };
        assert_eq!(got, 0, "FS_IOC_GETFLAGS");
        assert_ne!(flags & FS_TOPDIR_FL, 0, "tmp/ is not marked +T: {flags:#x}");
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::sha256_of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
