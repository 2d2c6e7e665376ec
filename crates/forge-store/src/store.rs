//! The store directory: its layout, blobs in and out, and `index.json` updates.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use forge_oci::image::{self, Descriptor, ImageIndex};
use forge_oci::layout::{empty_index, OciLayout};
use forge_oci::sink::VerifyingReader;
use forge_oci::{
    BlobInfo, BlobSink, BlobSinkError, BlobSource, BlobSourceError, Digest, HashingWriter,
};
use serde::Serialize;

use crate::error::{io_err, Result, StoreError};
use crate::lock::{self, Lease, LockGuard, LockMode};

/// Largest manifest, index or config read into memory (they are a few KiB in practice).
pub const MAX_DOCUMENT_SIZE: u64 = 16 << 20;

/// The directories of a store besides the OCI layout's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDir {
    /// `snapshots/<chain id hex>/`: unpacked layers.
    Snapshots,
    /// `cache/`: build cache entries.
    Cache,
    /// `statcache/`: build-context stat cache.
    StatCache,
    /// `containers/<id>/`: container state.
    Containers,
    /// `volumes/<name>/`: named volumes.
    Volumes,
    /// `tmp/`: staging, same filesystem as everything else.
    Tmp,
    /// `locks/`: lock files.
    Locks,
}

impl StoreDir {
    /// Every directory, in creation order.
    pub const ALL: [StoreDir; 7] = [
        StoreDir::Snapshots,
        StoreDir::Cache,
        StoreDir::StatCache,
        StoreDir::Containers,
        StoreDir::Volumes,
        StoreDir::Tmp,
        StoreDir::Locks,
    ];

    /// The directory's name under the store root.
    pub fn name(self) -> &'static str {
        match self {
            StoreDir::Snapshots => "snapshots",
            StoreDir::Cache => "cache",
            StoreDir::StatCache => "statcache",
            StoreDir::Containers => "containers",
            StoreDir::Volumes => "volumes",
            StoreDir::Tmp => "tmp",
            StoreDir::Locks => "locks",
        }
    }
}

/// An open store. Cheap to clone; every method works on the directory, so several
/// `Store`s (in one process or many) can share it.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    layout: OciLayout,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the store at `root`, creating whatever is missing (the OCI layout files and
    /// every [`StoreDir`]).
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).map_err(io_err("create", root))?;
        // Absolute, so paths handed out (snapshot lowerdirs) work from any directory.
        let root = &fs::canonicalize(root).map_err(io_err("resolve", root))?;
        for d in StoreDir::ALL {
            let p = root.join(d.name());
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        let tmp = root.join(StoreDir::Tmp.name());
        // Under the index lock: two processes opening a new store at once must not both
        // create index.json, the second clobbering what the first already added.
        let layout = {
            let _guard = lock::lock(
                &root.join(StoreDir::Locks.name()).join("index.lock"),
                LockMode::Exclusive,
            )?;
            OciLayout::with_tmp_dir(root, &tmp)?
        };
        Ok(Store {
            root: root.to_path_buf(),
            layout,
        })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One of the store's directories.
    pub fn dir(&self, d: StoreDir) -> PathBuf {
        self.root.join(d.name())
    }

    /// The OCI layout view of the store (`index.json`, `blobs/`), for peers' formats.
    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    /// Writes a small file of the store (a cache record) atomically: staged in
    /// `tmp/`, fsynced, renamed into place, its directory fsynced. Readers see
    /// the old file or the new one, never half.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let tmp = self.tmp_path("file");
        let result = (|| {
            let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            fs::rename(&tmp, path).map_err(io_err("rename", path))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// A fresh path in `tmp/` that no other writer uses: `tmp/<prefix>-<pid>-<n>-<nanos>`.
    pub fn tmp_path(&self, prefix: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.dir(StoreDir::Tmp)
            .join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
    }

    /// Holds `locks/gc.lock` shared until dropped: garbage collection waits for it, so
    /// blobs written (and not yet tagged) or being read stay. Take one for every
    /// operation that writes or reads blobs or snapshots.
    pub fn lease(&self) -> Result<Lease> {
        lock::lock(&self.lock_path("gc"), LockMode::Shared)
    }

    /// `locks/<name>.lock`.
    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.dir(StoreDir::Locks).join(format!("{name}.lock"))
    }

    /// Holds `locks/index.lock` exclusively (for a read-modify-write of `index.json`).
    pub fn lock_index(&self) -> Result<LockGuard> {
        lock::lock(&self.lock_path("index"), LockMode::Exclusive)
    }

    // ---- blobs ----

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout.blob_path(d)
    }

    /// The memo of compressed gzip blocks of committed layers (`cache/gzip-blocks/`).
    pub fn block_memo(&self) -> crate::gzmemo::BlockMemo {
        crate::gzmemo::BlockMemo::new(
            self.dir(StoreDir::Cache).join("gzip-blocks"),
            self.root().join("blobs").join("sha256"),
        )
    }

    /// Whether a blob is present (not verified).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.layout.has_blob(d)
    }

    /// Reads a whole (small) blob, verifying its digest: manifests, indexes, configs.
    pub fn read_blob(&self, d: &Digest, what: &'static str) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: d.clone(),
                    what,
                    path,
                })
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let size = f.metadata().map_err(io_err("stat", &path))?.len();
        if size > MAX_DOCUMENT_SIZE {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("{size} bytes is too large for a {what}"),
            });
        }
        let mut out = Vec::new();
        VerifyingReader::new(f, d.clone(), Some(size))
            .read_to_end(&mut out)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => StoreError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                },
                _ => io_err("read", &path)(e),
            })?;
        Ok(out)
    }

    /// Opens a blob for streaming. The reader fails with `InvalidData` at its end if the
    /// content does not hash to `d`, so a consumer reading to the end never accepts
    /// corrupt content.
    pub fn open_blob(
        &self,
        d: &Digest,
        what: &'static str,
    ) -> Result<(VerifyingReader<File>, u64)> {
        let path = self.blob_path(d);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: d.clone(),
                    what,
                    path,
                })
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let size = f.metadata().map_err(io_err("stat", &path))?.len();
        Ok((VerifyingReader::new(f, d.clone(), Some(size)), size))
    }

    /// Starts a blob: bytes go to a file in `tmp/`, and [`BlobWriter::commit`] makes it
    /// visible under `blobs/` once complete, fsynced and verified.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let tmp = self.tmp_path("blob");
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        Ok(BlobWriter {
            out: Some(HashingWriter::new(BufWriter::with_capacity(256 * 1024, f))),
            tmp,
            blobs: self.root.join("blobs").join("sha256"),
        })
    }

    /// Stores the blob read from `r` (to its end). With `expected`, the content must hash
    /// to it. When the store already has that blob, `r` is still read and verified (an
    /// archive with a corrupt copy of a blob we have is refused, not silently accepted),
    /// but nothing is written.
    pub fn put_blob(&self, r: &mut dyn Read, expected: Option<&Digest>) -> Result<BlobInfo> {
        if let Some(d) = expected.filter(|d| d.algorithm() != forge_oci::Algorithm::Sha256) {
            // sha512 blobs (rare, but the spec allows them) go through the layout's own
            // sink, which stages them in tmp/ too.
            return Ok(self.layout.clone().put(r, Some(d))?);
        }
        if let Some(d) = expected {
            if let Ok(m) = fs::metadata(self.blob_path(d)) {
                if m.is_file() {
                    let mut h = forge_oci::HashingReader::new(r);
                    io::copy(&mut h, &mut io::sink()).map_err(BlobSinkError::Read)?;
                    let (_, actual, _) = h.finish();
                    if &actual != d {
                        return Err(BlobSinkError::DigestMismatch {
                            expected: d.clone(),
                            actual,
                        }
                        .into());
                    }
                    return Ok(BlobInfo {
                        digest: d.clone(),
                        size: m.len(),
                    });
                }
            }
        }
        let mut w = self.blob_writer()?;
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BlobSinkError::Read(e).into()),
            };
            w.write_all(&buf[..n])
                .map_err(|source| BlobSinkError::Write {
                    path: w.tmp.clone(),
                    source,
                })?;
        }
        w.commit(expected)
    }

    /// Serialises `value` canonically, stores it, and returns its descriptor.
    pub fn put_json<T: Serialize>(
        &self,
        media_type: &str,
        value: &T,
        what: &'static str,
    ) -> Result<Descriptor> {
        let bytes =
            image::to_json(value).map_err(|source| StoreError::Serialise { what, source })?;
        let info = self.put_blob(&mut &bytes[..], None)?;
        Ok(image::descriptor(media_type, &info.digest, info.size))
    }

    // ---- index.json ----

    /// Reads `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex> {
        Ok(self.layout.index()?)
    }

    /// Runs `f` on the index's manifest list under the index lock and writes the result
    /// back atomically (through `tmp/`) if it changed. Holds a lease meanwhile, so a
    /// garbage collection never sweeps the staged `index.json`.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _lease = self.lease()?;
        let _guard = self.lock_index()?;
        let mut index = match self.layout.index() {
            Ok(i) => i,
            Err(forge_oci::layout::LayoutError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                empty_index()
            }
            Err(e) => return Err(e.into()),
        };
        let before = index.manifests().clone();
        let mut manifests = before.clone();
        let out = f(&mut manifests)?;
        if manifests != before {
            index.set_manifests(manifests);
            self.layout.write_index(&index)?;
        }
        Ok(out)
    }
}

/// A blob being written into `tmp/`; see [`Store::blob_writer`]. Dropped without
/// [`BlobWriter::commit`], its temp file is removed.
pub struct BlobWriter {
    out: Option<HashingWriter<BufWriter<File>>>,
    tmp: PathBuf,
    blobs: PathBuf,
}

impl BlobWriter {
    /// The temp file being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.as_ref().map_or(0, HashingWriter::written)
    }

    /// Finishes the blob: flush, fsync, check the digest against `expected` (if given),
    /// rename into `blobs/sha256/`, fsync the directory. If the blob already exists (another
    /// writer got there first), the existing one is kept.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<BlobInfo> {
        let out = self.out.take().ok_or_else(|| StoreError::Io {
            op: "commit",
            path: self.tmp.clone(),
            source: io::Error::other("blob writer already finished"),
        })?;
        let (buf, digest, size) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &self.tmp)(e.into_error()))?;
        if let Some(e) = expected {
            if e != &digest {
                let _ = fs::remove_file(&self.tmp);
                return Err(BlobSinkError::DigestMismatch {
                    expected: e.clone(),
                    actual: digest,
                }
                .into());
            }
        }
        file.sync_all().map_err(io_err("fsync", &self.tmp))?;
        drop(file);
        let dest = self.blobs.join(digest.hex());
        fs::rename(&self.tmp, &dest).map_err(io_err("rename", &dest))?;
        sync_dir(&self.blobs)?;
        Ok(BlobInfo { digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob writer already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// fsync of a directory, so a rename into it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

impl BlobSink for Store {
    fn put(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, BlobSinkError> {
        match self.put_blob(reader, expected) {
            Ok(i) => Ok(i),
            Err(StoreError::Blob(e)) => Err(e),
            Err(StoreError::Io { path, source, .. }) => Err(BlobSinkError::Write { path, source }),
            Err(other) => Err(BlobSinkError::Write {
                path: self.root.clone(),
                source: io::Error::other(other.to_string()),
            }),
        }
    }
}

impl BlobSource for Store {
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + '_>, u64), BlobSourceError> {
        BlobSource::open(&self.layout, digest)
    }
}
