//! OCI image layout directories: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
//!
//! Writes are atomic: a blob goes to a temporary file, is fsynced, verified and renamed into
//! place, so a reader never sees half a blob; `index.json` is replaced the same way. The
//! temporary files live in the blob's final directory by default (a plain layout has no
//! other place on the same filesystem); [`OciLayout::with_tmp_dir`] puts them in a staging
//! directory instead, so that no partial file is ever visible under `blobs/` (what the
//! store does with its `tmp/`). Reads verify digests. Tagging sets the
//! `org.opencontainers.image.ref.name` annotation, which `skopeo … oci:DIR:NAME` and
//! `umoci … --image DIR:NAME` look up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError, HashingReader};
use crate::image::{self, Descriptor, ImageIndex, MediaType, ANNOTATION_REF_NAME};
use crate::media_types;
use crate::sink::{
    check, BlobInfo, BlobSink, BlobSinkError, BlobSource, BlobSourceError, VerifyingReader,
};

/// The `oci-layout` file's content.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// Why a layout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `oci-layout` is missing or names another version.
    #[error("{path} is not an OCI image layout: {reason}")]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document does not parse.
    #[error("parsing {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A blob's content does not match its name.
    #[error("blob {path} is corrupt: content hashes to {actual}")]
    Corrupt {
        /// The blob file.
        path: PathBuf,
        /// What it hashes to.
        actual: Digest,
    },
    /// A descriptor's digest is not one we support.
    #[error("bad digest in {path}: {source}")]
    Digest {
        /// The document naming it.
        path: PathBuf,
        /// Why.
        source: DigestError,
    },
    /// Storing a blob failed.
    #[error(transparent)]
    Blob(#[from] BlobSinkError),
    /// No manifest has that name.
    #[error("no image named {name:?} in {path}")]
    NotFound {
        /// The layout.
        path: PathBuf,
        /// The name looked up.
        name: String,
    },
}

#[derive(Serialize, Deserialize)]
struct LayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
    /// Where temporary files go; `None`: next to their final name.
    tmp: Option<PathBuf>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other writer (thread or process) uses at the same time.
fn tmp_name(prefix: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".tmp-{prefix}-{}-{n}-{nanos}", std::process::id())
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io { op, path, source }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    write_atomic_via(path, bytes, None)
}

/// [`write_atomic`] with the temp file in `tmp_dir` (which must be on the same filesystem)
/// instead of next to `path`.
fn write_atomic_via(path: &Path, bytes: &[u8], tmp_dir: Option<&Path>) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_dir.unwrap_or(dir).join(tmp_name("file"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
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

fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

impl OciLayout {
    /// Opens `root`, creating the layout (directories, `oci-layout`, an empty `index.json`)
    /// where missing.
    pub fn create(root: &Path) -> Result<OciLayout, LayoutError> {
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        let l = OciLayout {
            root: root.to_path_buf(),
            tmp: None,
        };
        let layout_file = root.join("oci-layout");
        if !layout_file.exists() {
            let body = serde_json::to_vec(&LayoutFile {
                image_layout_version: LAYOUT_VERSION.to_string(),
            })
            .map_err(|source| LayoutError::Json {
                path: layout_file.clone(),
                source,
            })?;
            write_atomic(&layout_file, &body)?;
        }
        if !root.join("index.json").exists() {
            l.write_index(&empty_index())?;
        }
        Ok(l)
    }

    /// Opens an existing layout, checking `oci-layout`.
    pub fn open(root: &Path) -> Result<OciLayout, LayoutError> {
        let path = root.join("oci-layout");
        let bytes = fs::read(&path).map_err(|e| LayoutError::NotALayout {
            path: root.to_path_buf(),
            reason: format!("reading oci-layout: {e}"),
        })?;
        let f: LayoutFile = serde_json::from_slice(&bytes).map_err(|source| LayoutError::Json {
            path: path.clone(),
            source,
        })?;
        if !f.image_layout_version.starts_with("1.") {
            return Err(LayoutError::NotALayout {
                path: root.to_path_buf(),
                reason: format!("unsupported imageLayoutVersion {}", f.image_layout_version),
            });
        }
        Ok(OciLayout {
            root: root.to_path_buf(),
            tmp: None,
        })
    }

    /// Opens `root` like [`OciLayout::create`], staging every temporary file (blobs and
    /// `index.json`) in `tmp` instead of next to its final name, so a partial file is
    /// never visible inside the layout. `tmp` is created if missing and must be on the
    /// same filesystem as `root` (files are renamed from it).
    pub fn with_tmp_dir(root: &Path, tmp: &Path) -> Result<OciLayout, LayoutError> {
        fs::create_dir_all(tmp).map_err(io_err("create", tmp))?;
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        let l = OciLayout {
            root: root.to_path_buf(),
            tmp: Some(tmp.to_path_buf()),
        };
        let layout_file = root.join("oci-layout");
        if !layout_file.exists() {
            let body = serde_json::to_vec(&LayoutFile {
                image_layout_version: LAYOUT_VERSION.to_string(),
            })
            .map_err(|source| LayoutError::Json {
                path: layout_file.clone(),
                source,
            })?;
            write_atomic_via(&layout_file, &body, Some(tmp))?;
        }
        if !root.join("index.json").exists() {
            l.write_index(&empty_index())?;
        }
        Ok(l)
    }

    /// The staging directory given to [`OciLayout::with_tmp_dir`], if any.
    pub fn tmp_dir(&self) -> Option<&Path> {
        self.tmp.as_deref()
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    /// Whether the blob is present (not verified).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex, LayoutError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::Json { path, source })
    }

    /// Replaces `index.json` atomically.
    pub fn write_index(&self, index: &ImageIndex) -> Result<(), LayoutError> {
        let path = self.root.join("index.json");
        let bytes = image::to_json(index).map_err(|source| LayoutError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic_via(&path, &bytes, self.tmp.as_deref())
    }

    /// Reads a whole blob, verifying its digest. For manifests, configs and indexes.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(d);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let mut h = crate::digest::Hasher::new(d.algorithm());
        h.update(&bytes);
        let actual = h.finish();
        if &actual != d {
            return Err(LayoutError::Corrupt { path, actual });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the reader fails at its end if the content does not
    /// match the digest.
    pub fn open_blob(&self, d: &Digest) -> Result<(VerifyingReader<File>, u64), LayoutError> {
        let path = self.blob_path(d);
        let f = File::open(&path).map_err(io_err("open", &path))?;
        let size = f.metadata().map_err(io_err("stat", &path))?.len();
        Ok((VerifyingReader::new(f, d.clone(), Some(size)), size))
    }

    /// Serialises `value` deterministically, stores it, and returns its descriptor.
    pub fn put_json<T: Serialize>(
        &mut self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, LayoutError> {
        let bytes = image::to_json(value).map_err(|source| LayoutError::Json {
            path: self.root.clone(),
            source,
        })?;
        self.put_bytes(media_type, &bytes)
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    pub fn put_bytes(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, LayoutError> {
        let info = self.put(&mut &bytes[..], None)?;
        Ok(image::descriptor(media_type, &info.digest, info.size))
    }

    /// Points `name` at `manifest` in `index.json` (replacing whatever had that name).
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), LayoutError> {
        let mut index = self.index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        let mut d = manifest.clone();
        let mut ann = d.annotations().clone().unwrap_or_default();
        ann.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        d.set_annotations(Some(ann));
        manifests.push(d);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// The descriptor named `name`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor, LayoutError> {
        self.index()?
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .cloned()
            .ok_or_else(|| LayoutError::NotFound {
                path: self.root.clone(),
                name: name.to_string(),
            })
    }
}

/// A descriptor's `org.opencontainers.image.ref.name`.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

/// An index with no manifests.
pub fn empty_index() -> ImageIndex {
    oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(media_types::OCI_INDEX))
        .manifests(Vec::<Descriptor>::new())
        .build()
        .expect("schemaVersion and manifests are set")
}

impl BlobSink for OciLayout {
    fn put(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, BlobSinkError> {
        if let Some(d) = expected {
            // Content addressing: an existing blob of that name was verified when written.
            if let Ok(m) = fs::metadata(self.blob_path(d)) {
                if m.is_file() {
                    return Ok(BlobInfo {
                        digest: d.clone(),
                        size: m.len(),
                    });
                }
            }
        }
        let alg = expected.map_or(crate::digest::Algorithm::Sha256, Digest::algorithm);
        let dir = self.root.join("blobs").join(alg.name());
        fs::create_dir_all(&dir).map_err(|source| BlobSinkError::Write {
            path: dir.clone(),
            source,
        })?;
        let tmp = self.tmp.as_deref().unwrap_or(&dir).join(tmp_name("blob"));
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobSinkError::Write { path, source }
        };
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(werr(&tmp))?;
            let mut r = HashingReader::with_algorithm(reader, alg);
            let mut buf = vec![0u8; 128 * 1024];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(BlobSinkError::Read(e)),
                };
                f.write_all(&buf[..n]).map_err(werr(&tmp))?;
            }
            let (_, digest, size) = r.finish();
            check(expected, &digest)?;
            f.sync_all().map_err(werr(&tmp))?;
            let dest = self.blob_path(&digest);
            fs::rename(&tmp, &dest).map_err(werr(&dest))?;
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(werr(&dir))?;
            Ok(BlobInfo { digest, size })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

impl BlobSource for OciLayout {
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + '_>, u64), BlobSourceError> {
        let path = self.blob_path(digest);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobSourceError::NotFound(digest.clone()))
            }
            Err(source) => {
                return Err(BlobSourceError::Io {
                    digest: digest.clone(),
                    path,
                    source,
                })
            }
        };
        let size = f
            .metadata()
            .map_err(|source| BlobSourceError::Io {
                digest: digest.clone(),
                path: path.clone(),
                source,
            })?
            .len();
        Ok((Box::new(f), size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_put_tag_resolve() {
        let dir = std::env::temp_dir().join(tmp_name("layout-test"));
        let mut l = OciLayout::create(&dir).expect("create");
        let d = l.put_bytes(media_types::OCI_CONFIG, b"{}").expect("put");
        assert!(l.has_blob(&Digest::from_oci(d.digest()).expect("digest")));
        l.tag("x", &d).expect("tag");
        l.tag("y", &d).expect("tag");
        l.tag("x", &d).expect("retag");
        assert_eq!(l.index().expect("index").manifests().len(), 2);
        assert_eq!(l.resolve("x").expect("x").digest(), d.digest());
        assert!(matches!(l.resolve("z"), Err(LayoutError::NotFound { .. })));
        let again = OciLayout::open(&dir).expect("open");
        let digest = Digest::from_oci(d.digest()).expect("digest");
        assert_eq!(again.read_blob(&digest).expect("read"), b"{}");
        // Corrupt it: reads now fail.
        fs::write(again.blob_path(&digest), b"{ }").expect("corrupt");
        assert!(matches!(
            again.read_blob(&digest),
            Err(LayoutError::Corrupt { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }

    /// With a staging dir, no temporary file ever appears inside the layout, even when a
    /// put fails half way.
    #[test]
    fn tmp_dir_keeps_partial_blobs_out_of_the_layout() {
        let base = std::env::temp_dir().join(tmp_name("layout-tmp-test"));
        let root = base.join("layout");
        let tmp = base.join("tmp");
        let mut l = OciLayout::with_tmp_dir(&root, &tmp).expect("create");
        assert_eq!(l.tmp_dir(), Some(tmp.as_path()));
        let d = l.put_bytes(media_types::OCI_CONFIG, b"{}").expect("put");
        l.tag("x", &d).expect("tag");
        // A producer that fails mid-blob: nothing is left anywhere.
        struct Failing(u8);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("producer died"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        assert!(l.put(&mut Failing(3), None).is_err());
        let names = |p: &Path| -> Vec<String> {
            fs::read_dir(p)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert!(names(&tmp).is_empty(), "staging dir cleaned");
        for n in names(&root.join("blobs/sha256")) {
            assert!(!n.starts_with('.'), "temp file {n} inside blobs/");
        }
        for n in names(&root) {
            assert!(!n.starts_with(".tmp"), "temp file {n} inside the layout");
        }
        let again = OciLayout::open(&root).expect("open");
        assert_eq!(again.resolve("x").expect("x").digest(), d.digest());
        let _ = fs::remove_dir_all(&base);
    }
}
