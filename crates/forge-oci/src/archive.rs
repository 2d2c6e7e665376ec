//! Image archives: oci-archive (a tar of an OCI layout), docker-archive (`docker save`),
//! and OCI layout directories, read and written as streams.
//!
//! Reading is one pass over the tar, whatever the order of its entries (skopeo and docker
//! put `manifest.json` last): every blob-sized entry goes straight to the caller's
//! [`BlobSink`] (which verifies `blobs/<alg>/<hex>` entries against their names), small
//! entries are held in memory until the index or `manifest.json` says what they are, and
//! at the end the images are assembled and every referenced blob is checked to be there.
//! Which format an archive is comes from its content (`manifest.json`, `oci-layout`,
//! `index.json`) and its compression from magic bytes, never from the file name.
//!
//! docker-archive layers are uncompressed tars whose digests are the config's diffIDs; we
//! check them. Images read from a docker-archive get a docker v2 schema 2 manifest built
//! from the config and layers, as skopeo does. docker ≥ 25 archives are also OCI layouts;
//! for those we use `index.json`, which keeps the original manifests byte for byte.
//!
//! Writing copies blobs as bytes from a [`BlobSource`], verifying each digest on the way.
//! Tar headers are fixed (mode 0644/0755, uid/gid 0, mtime from [`WriteOptions`]), so the
//! same images always give the same archive.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError, HashingReader, HashingWriter};
use crate::image::{
    self, build_manifest, descriptor, Descriptor, ImageConfig, ImageIndex, ImageManifest,
    ANNOTATION_CONTAINERD_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use crate::layer::tarfmt::{self, EntrySpec};
use crate::layer::{peek, sniff, Compression, Decoder, Sniffed, SNIFF_LEN};
use crate::layout::{LayoutError, OciLayout};
use crate::media_types;
use crate::reference::Reference;
use crate::sink::{BlobSink, BlobSinkError, BlobSource, BlobSourceError, VerifyingReader};

/// Entries up to this size are also kept in memory while reading, so JSON documents can be
/// parsed whatever their position in the archive.
const SMALL: u64 = 4 << 20;
/// Cap on what is kept in memory in total; past it, entries are streamed to the sink.
const SMALL_TOTAL: u64 = 256 << 20;

/// What kind of image archive something is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout directory.
    OciLayout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// `docker save` output (with `manifest.json`), including docker ≥ 25's, which is also
    /// an OCI layout.
    DockerArchive,
    /// An unpacked `docker save` directory.
    DockerDir,
}

/// What [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// The format.
    pub format: ArchiveFormat,
    /// The compression of the file (`None` for directories).
    pub compression: Compression,
}

/// One image read from an archive; every blob it names is in the sink.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The image manifest (built, for docker-archive).
    pub manifest: Descriptor,
    /// The config blob: its digest is the image id.
    pub config: Descriptor,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
    /// The names the archive gives the image, as written (`RepoTags`, or the
    /// `io.containerd.image.name` / `org.opencontainers.image.ref.name` annotation).
    pub names: Vec<String>,
    /// The multi-platform index this manifest was reached through, if any (the names then
    /// belong to the index).
    pub index: Option<Descriptor>,
}

/// Everything read from an archive.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The format found.
    pub format: ArchiveFormat,
    /// The compression found.
    pub compression: Compression,
    /// The images, in archive order.
    pub images: Vec<LoadedImage>,
}

/// One image to write.
#[derive(Debug, Clone)]
pub struct ExportImage {
    /// Its manifest (or, for OCI formats, an index).
    pub manifest: Descriptor,
    /// Names to give it: `ref.name` annotations in OCI formats, `RepoTags` (in docker's
    /// familiar form when the name parses as a reference) in docker-archive.
    pub names: Vec<String>,
}

/// How to write archives.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The mtime of every tar entry (e.g. `SOURCE_DATE_EPOCH`); 0 when unset.
    pub mtime: Option<u64>,
}

/// Why reading or writing an archive failed. `file` fields name entries inside the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive file or directory could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading, decompressing or parsing the tar failed.
    #[error("reading archive{}: {source}", after.as_ref().map(|e| format!(" after entry {e:?}")).unwrap_or_default())]
    Stream {
        /// The last entry read, if any.
        after: Option<String>,
        /// The underlying error.
        source: io::Error,
    },
    /// bzip2 or xz.
    #[error("unsupported archive compression {0}")]
    UnsupportedCompression(&'static str),
    /// Neither `manifest.json` nor `oci-layout` + `index.json` is there.
    #[error("not an image archive: no manifest.json (docker-archive) or oci-layout and index.json (OCI)")]
    NotAnImageArchive,
    /// An entry's data is shorter than its header says.
    #[error("archive entry {file:?} is truncated")]
    Truncated {
        /// The entry.
        file: String,
    },
    /// A JSON document does not parse.
    #[error("parsing {file}: {source}")]
    Json {
        /// The entry or blob.
        file: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A digest in a document is invalid or unsupported.
    #[error("bad digest in {file}: {source}")]
    Digest {
        /// The document.
        file: String,
        /// Why.
        source: DigestError,
    },
    /// The sink refused a blob (digest mismatch, I/O).
    #[error("storing {file}: {source}")]
    Blob {
        /// The entry.
        file: String,
        /// The sink's error.
        source: BlobSinkError,
    },
    /// A document names a file or blob that is not in the archive.
    #[error("{referenced_by} refers to {file}, which is not in the archive")]
    Missing {
        /// What is missing (path or digest).
        file: String,
        /// The document that refers to it.
        referenced_by: String,
    },
    /// A JSON document too large to hold in memory.
    #[error("{file} is {size} bytes, too large for a manifest or config")]
    TooLarge {
        /// The entry.
        file: String,
        /// Its size.
        size: u64,
    },
    /// A docker-archive layer does not hash to its config's diffID.
    #[error("layer {file} has diffID {actual}, config says {expected}")]
    DiffIdMismatch {
        /// The layer entry.
        file: String,
        /// From the config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// Config and manifest disagree on the number of layers.
    #[error("{file} lists {layers} layers but the config has {diff_ids} diffIDs")]
    LayerCount {
        /// The manifest.
        file: String,
        /// Layers listed.
        layers: usize,
        /// diffIDs in the config.
        diff_ids: usize,
    },
    /// Reading a blob to export failed.
    #[error(transparent)]
    Source(#[from] BlobSourceError),
    /// A blob to export does not match its digest or size.
    #[error("blob {digest} is corrupt: {source}")]
    Corrupt {
        /// The blob.
        digest: Digest,
        /// What was wrong.
        source: io::Error,
    },
    /// docker-archive holds single-platform images only.
    #[error("{digest} is a {media_type}, docker-archive needs an image manifest")]
    NotAManifest {
        /// The descriptor's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// Writing the output failed.
    #[error("writing archive: {0}")]
    Write(#[source] io::Error),
    /// An OCI layout operation failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

fn stream_err(after: Option<&str>) -> impl FnOnce(io::Error) -> ArchiveError {
    let after = after.map(str::to_string);
    move |source| ArchiveError::Stream { after, source }
}

/// Normalises a path inside an archive: no leading `./` or `/`, no empty or `.`
/// components, `..` resolved lexically (never above the archive root).
fn norm(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

/// `blobs/<alg>/<hex>` → the digest it names.
fn blob_path_digest(p: &str) -> Option<Digest> {
    let rest = p.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// A blob that went to the sink while reading.
#[derive(Debug, Clone)]
struct Stored {
    digest: Digest,
    size: u64,
    compression: Compression,
    /// The uncompressed digest, when computed.
    diff_id: Option<Digest>,
}

/// Push-side decompressor computing a diffID while a layer streams to the sink.
enum DiffTee {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<HashingWriter<io::Sink>>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, HashingWriter<io::Sink>>>),
    /// Decompression failed: not a layer, or a corrupt one (checked later if it matters).
    Failed,
}

impl DiffTee {
    fn new(c: Compression) -> DiffTee {
        match c {
            Compression::None => DiffTee::Plain,
            Compression::Gzip => DiffTee::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                HashingWriter::new(io::sink()),
            ))),
            Compression::Zstd => {
                match zstd::stream::write::Decoder::new(HashingWriter::new(io::sink())) {
                    Ok(d) => DiffTee::Zstd(Box::new(d)),
                    Err(_) => DiffTee::Failed,
                }
            }
        }
    }

    fn feed(&mut self, buf: &[u8]) {
        let ok = match self {
            DiffTee::Gzip(d) => d.write_all(buf).is_ok(),
            DiffTee::Zstd(d) => d.write_all(buf).is_ok(),
            DiffTee::Plain | DiffTee::Failed => true,
        };
        if !ok {
            *self = DiffTee::Failed;
        }
    }

    fn finish(self, digest: &Digest) -> Option<Digest> {
        match self {
            DiffTee::Plain => Some(digest.clone()),
            DiffTee::Gzip(d) => d.finish().ok().map(|h| h.finish().1),
            DiffTee::Zstd(mut d) => {
                d.flush().ok()?;
                Some(d.into_inner().finish().1)
            }
            DiffTee::Failed => None,
        }
    }
}

/// A reader that feeds a [`DiffTee`] with what passes through.
struct TeeReader<'a, R> {
    inner: R,
    tee: &'a mut DiffTee,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tee.feed(&buf[..n]);
        Ok(n)
    }
}

/// A reader that fails if its source ends before `want` bytes (a truncated entry) instead
/// of ending quietly.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = usize::try_from(self.left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "entry data ends early",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Collects a stream of archive entries, then assembles images.
struct Collector<'s> {
    sink: &'s mut dyn BlobSink,
    /// Entries kept in memory, by normalised path.
    small: HashMap<String, Vec<u8>>,
    small_total: u64,
    /// Entries already in the sink, by normalised path.
    stored: HashMap<String, Stored>,
    /// Symlinks and hardlinks: path → normalised target path.
    links: HashMap<String, String>,
    /// Digests in the sink.
    have: HashSet<Digest>,
}

impl<'s> Collector<'s> {
    fn new(sink: &'s mut dyn BlobSink) -> Collector<'s> {
        Collector {
            sink,
            small: HashMap::new(),
            small_total: 0,
            stored: HashMap::new(),
            links: HashMap::new(),
            have: HashSet::new(),
        }
    }

    fn is_metadata(path: &str) -> bool {
        matches!(
            path,
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        )
    }

    /// One regular file of `size` bytes at `path`.
    fn file(&mut self, path: String, size: u64, r: &mut dyn Read) -> Result<(), ArchiveError> {
        let expected = blob_path_digest(&path);
        let keep =
            size <= SMALL && (Self::is_metadata(&path) || self.small_total + size <= SMALL_TOTAL);
        if keep {
            let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            Exact {
                inner: r,
                left: size,
            }
            .read_to_end(&mut buf)
            .map_err(|source| match source.kind() {
                io::ErrorKind::UnexpectedEof => ArchiveError::Truncated { file: path.clone() },
                _ => ArchiveError::Stream {
                    after: Some(path.clone()),
                    source,
                },
            })?;
            self.small_total += size;
            if let Some(d) = expected {
                // Verified and stored now; kept for parsing.
                self.put_bytes(&path, &buf, Some(&d), false)?;
            }
            self.small.insert(path, buf);
            return Ok(());
        }
        // Large: stream to the sink. Outside blobs/ (docker-archive layers) also compute
        // the diffID on the way, decompressing if needed.
        let (prefix, chained) = peek(
            Exact {
                inner: r,
                left: size,
            },
            SNIFF_LEN,
        )
        .map_err(stream_err(Some(&path)))?;
        let compression = match sniff(&prefix) {
            Sniffed::Known(c) => c,
            _ => Compression::None,
        };
        let mut tee = if expected.is_none() {
            DiffTee::new(compression)
        } else {
            DiffTee::Failed
        };
        let info = {
            let mut reader = TeeReader {
                inner: chained,
                tee: &mut tee,
            };
            self.sink
                .put(&mut reader, expected.as_ref())
                .map_err(|source| Self::sink_err(&path, source))?
        };
        let diff_id = if expected.is_none() {
            tee.finish(&info.digest)
        } else {
            None
        };
        self.have.insert(info.digest.clone());
        self.stored.insert(
            path,
            Stored {
                digest: info.digest,
                size: info.size,
                compression,
                diff_id,
            },
        );
        Ok(())
    }

    fn sink_err(path: &str, source: BlobSinkError) -> ArchiveError {
        match source {
            BlobSinkError::Read(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                ArchiveError::Truncated {
                    file: path.to_string(),
                }
            }
            source => ArchiveError::Blob {
                file: path.to_string(),
                source,
            },
        }
    }

    fn put_bytes(
        &mut self,
        path: &str,
        bytes: &[u8],
        expected: Option<&Digest>,
        layer: bool,
    ) -> Result<Stored, ArchiveError> {
        let info = self
            .sink
            .put(&mut &bytes[..], expected)
            .map_err(|source| Self::sink_err(path, source))?;
        let compression = match sniff(bytes) {
            Sniffed::Known(c) => c,
            _ => Compression::None,
        };
        let diff_id = if !layer || compression == Compression::None {
            Some(info.digest.clone())
        } else {
            let mut h = HashingReader::new(
                Decoder::new(bytes, compression).map_err(stream_err(Some(path)))?,
            );
            match io::copy(&mut h, &mut io::sink()) {
                Ok(_) => Some(h.finish().1),
                Err(_) => None,
            }
        };
        let s = Stored {
            digest: info.digest.clone(),
            size: info.size,
            compression,
            diff_id,
        };
        self.have.insert(info.digest);
        self.stored.insert(path.to_string(), s.clone());
        Ok(s)
    }

    fn link(&mut self, path: String, target: String) {
        self.links.insert(path, target);
    }

    /// Follows links (bounded, so a cycle ends).
    fn resolve(&self, path: &str) -> String {
        let mut p = norm(path);
        for _ in 0..40 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    fn bytes(&self, path: &str, referenced_by: &str) -> Result<&[u8], ArchiveError> {
        let p = self.resolve(path);
        if let Some(b) = self.small.get(&p) {
            return Ok(b);
        }
        if let Some(s) = self.stored.get(&p) {
            return Err(ArchiveError::TooLarge {
                file: p,
                size: s.size,
            });
        }
        Err(ArchiveError::Missing {
            file: p,
            referenced_by: referenced_by.to_string(),
        })
    }

    /// The blob at `path`, putting it into the sink now if it was held in memory.
    fn blob(
        &mut self,
        path: &str,
        referenced_by: &str,
        layer: bool,
    ) -> Result<Stored, ArchiveError> {
        let p = self.resolve(path);
        if let Some(s) = self.stored.get(&p) {
            if layer && s.diff_id.is_none() && s.compression == Compression::None {
                let mut s = s.clone();
                s.diff_id = Some(s.digest.clone());
                return Ok(s);
            }
            return Ok(s.clone());
        }
        let Some(bytes) = self.small.get(&p).cloned() else {
            return Err(ArchiveError::Missing {
                file: p,
                referenced_by: referenced_by.to_string(),
            });
        };
        let expected = blob_path_digest(&p);
        self.put_bytes(&p, &bytes, expected.as_ref(), layer)
    }

    /// A blob by digest (OCI formats), held in memory.
    fn blob_bytes(&self, d: &Digest, referenced_by: &str) -> Result<&[u8], ArchiveError> {
        self.bytes(
            &format!("blobs/{}/{}", d.algorithm().name(), d.hex()),
            referenced_by,
        )
    }

    fn has(&self, path: &str) -> bool {
        let p = self.resolve(path);
        self.small.contains_key(&p) || self.stored.contains_key(&p)
    }

    fn format(&self, dir: bool) -> Result<ArchiveFormat, ArchiveError> {
        if self.has("manifest.json") {
            Ok(if dir {
                ArchiveFormat::DockerDir
            } else {
                ArchiveFormat::DockerArchive
            })
        } else if self.has("oci-layout") && self.has("index.json") {
            Ok(if dir {
                ArchiveFormat::OciLayout
            } else {
                ArchiveFormat::OciArchive
            })
        } else {
            Err(ArchiveError::NotAnImageArchive)
        }
    }

    fn assemble(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
        if self.has("oci-layout") && self.has("index.json") {
            let mut images = self.assemble_oci()?;
            if self.has("manifest.json") {
                // docker ≥ 25: RepoTags live in manifest.json; match them by config.
                let tags = self.docker_tags()?;
                for img in &mut images {
                    if let Ok(d) = Digest::from_oci(img.config.digest()) {
                        if let Some(t) = tags.get(&d) {
                            for name in t {
                                if !img.names.contains(name) {
                                    img.names.push(name.clone());
                                }
                            }
                        }
                    }
                }
            }
            Ok(images)
        } else if self.has("manifest.json") {
            self.assemble_docker()
        } else {
            Err(ArchiveError::NotAnImageArchive)
        }
    }

    fn docker_manifest(&self) -> Result<Vec<DockerManifestItem>, ArchiveError> {
        let bytes = self.bytes("manifest.json", "archive")?;
        serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
            file: "manifest.json".into(),
            source,
        })
    }

    fn docker_tags(&self) -> Result<HashMap<Digest, Vec<String>>, ArchiveError> {
        let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
        for item in self.docker_manifest()? {
            let p = self.resolve(&item.config);
            let d = match self.stored.get(&p) {
                Some(s) => s.digest.clone(),
                None => Digest::sha256_of(self.bytes(&item.config, "manifest.json")?),
            };
            out.entry(d)
                .or_default()
                .extend(item.repo_tags.unwrap_or_default());
        }
        Ok(out)
    }

    fn assemble_docker(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
        let mut images = Vec::new();
        for item in self.docker_manifest()? {
            let config_bytes = self.bytes(&item.config, "manifest.json")?.to_vec();
            let config =
                ImageConfig::from_json(&config_bytes).map_err(|source| ArchiveError::Json {
                    file: item.config.clone(),
                    source,
                })?;
            let cfg = self.blob(&item.config, "manifest.json", false)?;
            let diff_ids = &config.rootfs.diff_ids;
            if diff_ids.len() != item.layers.len() {
                return Err(ArchiveError::LayerCount {
                    file: "manifest.json".into(),
                    layers: item.layers.len(),
                    diff_ids: diff_ids.len(),
                });
            }
            let mut layers = Vec::new();
            for (path, expected) in item.layers.iter().zip(diff_ids) {
                let s = self.blob(path, "manifest.json", true)?;
                match &s.diff_id {
                    Some(actual) if actual != expected => {
                        return Err(ArchiveError::DiffIdMismatch {
                            file: path.clone(),
                            expected: expected.clone(),
                            actual: actual.clone(),
                        })
                    }
                    Some(_) => {}
                    None => {
                        return Err(ArchiveError::Stream {
                            after: Some(path.clone()),
                            source: io::Error::new(
                                io::ErrorKind::InvalidData,
                                "layer does not decompress",
                            ),
                        })
                    }
                }
                layers.push(descriptor(
                    s.compression.docker_media_type(),
                    &s.digest,
                    s.size,
                ));
            }
            let cfg_desc = descriptor(media_types::DOCKER_CONFIG, &cfg.digest, cfg.size);
            let m = build_manifest(cfg_desc.clone(), layers.clone(), None, true);
            let mbytes = image::to_json(&m).map_err(|source| ArchiveError::Json {
                file: "manifest.json".into(),
                source,
            })?;
            let ms = self.put_bytes("(generated manifest)", &mbytes, None, false)?;
            images.push(LoadedImage {
                manifest: descriptor(media_types::DOCKER_MANIFEST, &ms.digest, ms.size),
                config: cfg_desc,
                layers,
                names: item.repo_tags.unwrap_or_default(),
                index: None,
            });
        }
        Ok(images)
    }

    fn assemble_oci(&mut self) -> Result<Vec<LoadedImage>, ArchiveError> {
        let index: ImageIndex = serde_json::from_slice(self.bytes("index.json", "archive")?)
            .map_err(|source| ArchiveError::Json {
                file: "index.json".into(),
                source,
            })?;
        let mut images: Vec<LoadedImage> = Vec::new();
        for top in index.manifests() {
            let name = top.annotations().as_ref().and_then(|a| {
                a.get(ANNOTATION_CONTAINERD_IMAGE_NAME)
                    .or_else(|| a.get(ANNOTATION_REF_NAME))
                    .cloned()
            });
            let d = self.digest_of(top, "index.json")?;
            // The same manifest listed under several names is one image with several names.
            if let Some(existing) = images.iter_mut().find(|i| {
                i.index.as_ref().map_or(i.manifest.digest(), |x| x.digest()) == top.digest()
            }) {
                if let Some(n) = name {
                    existing.names.push(n);
                }
                continue;
            }
            let mt = top.media_type().to_string();
            let names: Vec<String> = name.into_iter().collect();
            if media_types::is_index(&mt) {
                let bytes = self.blob_bytes(&d, "index.json")?;
                let sub: ImageIndex =
                    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
                        file: d.to_string(),
                        source,
                    })?;
                let mut top_clean = top.clone();
                top_clean.set_annotations(None);
                for child in sub.manifests() {
                    let cd = self.digest_of(child, d.as_str())?;
                    // skopeo copies one platform of an index; the others are absent.
                    if !self.have.contains(&cd) {
                        continue;
                    }
                    let mut img = self.oci_image(child, &cd)?;
                    img.names = names.clone();
                    img.index = Some(top_clean.clone());
                    images.push(img);
                }
                if !self.have.contains(&d) {
                    return Err(ArchiveError::Missing {
                        file: d.to_string(),
                        referenced_by: "index.json".into(),
                    });
                }
            } else {
                let mut img = self.oci_image(top, &d)?;
                img.names = names;
                images.push(img);
            }
        }
        Ok(images)
    }

    fn digest_of(&self, d: &Descriptor, file: &str) -> Result<Digest, ArchiveError> {
        Digest::from_oci(d.digest()).map_err(|source| ArchiveError::Digest {
            file: file.to_string(),
            source,
        })
    }

    fn oci_image(&self, m: &Descriptor, d: &Digest) -> Result<LoadedImage, ArchiveError> {
        let manifest: ImageManifest = serde_json::from_slice(self.blob_bytes(d, "index.json")?)
            .map_err(|source| ArchiveError::Json {
                file: d.to_string(),
                source,
            })?;
        for needed in std::iter::once(manifest.config()).chain(manifest.layers()) {
            let nd = self.digest_of(needed, d.as_str())?;
            if !self.have.contains(&nd) {
                return Err(ArchiveError::Missing {
                    file: nd.to_string(),
                    referenced_by: d.to_string(),
                });
            }
        }
        let mut md = m.clone();
        md.set_annotations(None);
        Ok(LoadedImage {
            manifest: md,
            config: manifest.config().clone(),
            layers: manifest.layers().clone(),
            names: Vec::new(),
            index: None,
        })
    }
}

/// One element of docker-archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Reads an image archive (oci-archive or docker-archive, plain or compressed) from a
/// stream, putting every blob into `sink`.
pub fn read_archive<R: Read>(r: R, sink: &mut dyn BlobSink) -> Result<Loaded, ArchiveError> {
    let (prefix, chained) = peek(r, SNIFF_LEN).map_err(stream_err(None))?;
    let compression = match sniff(&prefix) {
        Sniffed::Known(c) => c,
        Sniffed::Bzip2 => return Err(ArchiveError::UnsupportedCompression("bzip2")),
        Sniffed::Xz => return Err(ArchiveError::UnsupportedCompression("xz")),
    };
    let mut ar = tar::Archive::new(Decoder::new(chained, compression).map_err(stream_err(None))?);
    let mut c = Collector::new(sink);
    let mut last: Option<String> = None;
    for entry in ar.entries().map_err(stream_err(None))? {
        let mut entry = entry.map_err(stream_err(last.as_deref()))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = norm(&raw);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                c.file(path, size, &mut entry)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let resolved = if target.starts_with('/') {
                    norm(&target)
                } else {
                    norm(&format!("{}/{target}", parent_of(&path)))
                };
                c.link(path, resolved);
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                c.link(path, norm(&target));
            }
            _ => {}
        }
        last = Some(raw);
    }
    let format = c.format(false)?;
    let images = c.assemble()?;
    Ok(Loaded {
        format,
        compression,
        images,
    })
}

/// Reads an archive file or an image directory (OCI layout or unpacked docker-archive).
pub fn read_archive_path(path: &Path, sink: &mut dyn BlobSink) -> Result<Loaded, ArchiveError> {
    let open_err = |source| ArchiveError::Open {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(open_err)?;
    if !meta.is_dir() {
        let f = File::open(path).map_err(open_err)?;
        return read_archive(io::BufReader::with_capacity(256 * 1024, f), sink);
    }
    if path.join("oci-layout").is_file()
        && path.join("index.json").is_file()
        && !path.join("manifest.json").exists()
    {
        return read_layout_dir(path, sink);
    }
    // An unpacked docker save: walk it as if it were the tar.
    let mut c = Collector::new(sink);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = path.join(&rel);
        let rd = fs::read_dir(&dir).map_err(|source| ArchiveError::Open {
            path: dir.clone(),
            source,
        })?;
        for e in rd {
            let e = e.map_err(|source| ArchiveError::Open {
                path: dir.clone(),
                source,
            })?;
            let r = rel.join(e.file_name());
            let name = r.to_string_lossy().into_owned();
            let full = path.join(&r);
            let m = fs::symlink_metadata(&full).map_err(|source| ArchiveError::Open {
                path: full.clone(),
                source,
            })?;
            if m.is_dir() {
                stack.push(r);
            } else if m.file_type().is_symlink() {
                let t = fs::read_link(&full).map_err(|source| ArchiveError::Open {
                    path: full.clone(),
                    source,
                })?;
                let t = t.to_string_lossy().into_owned();
                let resolved = if t.starts_with('/') {
                    // Absolute links cannot be followed inside the archive.
                    String::new()
                } else {
                    norm(&format!("{}/{t}", parent_of(&name)))
                };
                c.link(norm(&name), resolved);
            } else if m.is_file() {
                let mut f = File::open(&full).map_err(|source| ArchiveError::Open {
                    path: full.clone(),
                    source,
                })?;
                c.file(norm(&name), m.len(), &mut f)?;
            }
        }
    }
    let format = c.format(true)?;
    let images = c.assemble()?;
    Ok(Loaded {
        format,
        compression: Compression::None,
        images,
    })
}

/// Reads an OCI layout directory: only the blobs its index reaches go to the sink.
fn read_layout_dir(path: &Path, sink: &mut dyn BlobSink) -> Result<Loaded, ArchiveError> {
    let layout = OciLayout::open(path)?;
    let index = layout.index()?;
    let mut c = Collector::new(sink);
    c.small.insert("oci-layout".into(), Vec::new());
    let index_bytes = fs::read(path.join("index.json")).map_err(|source| ArchiveError::Open {
        path: path.join("index.json"),
        source,
    })?;
    c.small.insert("index.json".into(), index_bytes);
    // Breadth-first over indexes and manifests; layers and configs are streamed.
    let mut todo: Vec<Descriptor> = index.manifests().clone();
    let mut seen = HashSet::new();
    while let Some(d) = todo.pop() {
        let digest = c.digest_of(&d, "index.json")?;
        if !seen.insert(digest.clone()) {
            continue;
        }
        let mt = d.media_type().to_string();
        let file = format!("blobs/{}/{}", digest.algorithm().name(), digest.hex());
        let (mut r, size) = layout.open_blob(&digest)?;
        if media_types::is_index(&mt) || media_types::is_manifest(&mt) {
            if size > SMALL {
                return Err(ArchiveError::TooLarge { file, size });
            }
            c.file(file.clone(), size, &mut r)?;
            let bytes = c.bytes(&file, "index.json")?;
            if media_types::is_index(&mt) {
                let sub: ImageIndex =
                    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
                        file: file.clone(),
                        source,
                    })?;
                // Only the platforms present in the layout.
                for child in sub.manifests() {
                    if let Ok(cd) = Digest::from_oci(child.digest()) {
                        if layout.has_blob(&cd) {
                            todo.push(child.clone());
                        }
                    }
                }
            } else {
                let m: ImageManifest =
                    serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
                        file: file.clone(),
                        source,
                    })?;
                todo.push(m.config().clone());
                todo.extend(m.layers().iter().cloned());
            }
        } else {
            let mut r = Exact {
                inner: r,
                left: size,
            };
            let info = c
                .sink
                .put(&mut r, Some(&digest))
                .map_err(|source| Collector::sink_err(&file, source))?;
            c.have.insert(info.digest);
        }
    }
    let images = c.assemble_oci()?;
    Ok(Loaded {
        format: ArchiveFormat::OciLayout,
        compression: Compression::None,
        images,
    })
}

/// Tells what an archive file or directory is, from its content. For a file this reads
/// the tar's headers (decompressing if needed) but not its blobs into memory.
pub fn detect(path: &Path) -> Result<Detected, ArchiveError> {
    let open_err = |source| ArchiveError::Open {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        let format = if path.join("manifest.json").is_file() {
            ArchiveFormat::DockerDir
        } else if path.join("oci-layout").is_file() && path.join("index.json").is_file() {
            ArchiveFormat::OciLayout
        } else {
            return Err(ArchiveError::NotAnImageArchive);
        };
        return Ok(Detected {
            format,
            compression: Compression::None,
        });
    }
    let f = File::open(path).map_err(open_err)?;
    let (prefix, chained) = peek(io::BufReader::new(f), SNIFF_LEN).map_err(stream_err(None))?;
    let compression = match sniff(&prefix) {
        Sniffed::Known(c) => c,
        Sniffed::Bzip2 => return Err(ArchiveError::UnsupportedCompression("bzip2")),
        Sniffed::Xz => return Err(ArchiveError::UnsupportedCompression("xz")),
    };
    let format = if compression == Compression::None {
        // Seek over entry data instead of reading it.
        drop(chained);
        let f = File::open(path).map_err(|source| ArchiveError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut ar = tar::Archive::new(io::BufReader::new(f));
        let entries = ar.entries_with_seek().map_err(stream_err(None))?;
        scan_format(entries)?
    } else {
        let mut ar =
            tar::Archive::new(Decoder::new(chained, compression).map_err(stream_err(None))?);
        let entries = ar.entries().map_err(stream_err(None))?;
        scan_format(entries)?
    };
    Ok(Detected {
        format,
        compression,
    })
}

/// The format from entry names: `manifest.json` means docker-archive (docker ≥ 25's is
/// also an OCI layout), else `oci-layout` and `index.json` mean oci-archive.
fn scan_format<R: Read>(entries: tar::Entries<'_, R>) -> Result<ArchiveFormat, ArchiveError> {
    let (mut oci_layout, mut index) = (false, false);
    let mut last: Option<String> = None;
    for entry in entries {
        let entry = entry.map_err(stream_err(last.as_deref()))?;
        let p = norm(&String::from_utf8_lossy(&entry.path_bytes()));
        match p.as_str() {
            "manifest.json" => return Ok(ArchiveFormat::DockerArchive),
            "oci-layout" => oci_layout = true,
            "index.json" => index = true,
            _ => {}
        }
        last = Some(p);
    }
    if oci_layout && index {
        Ok(ArchiveFormat::OciArchive)
    } else {
        Err(ArchiveError::NotAnImageArchive)
    }
}

/// Writes deterministic tar entries for archives.
struct TarOut<W: Write> {
    w: W,
    mtime: u64,
    dirs: HashSet<String>,
}

impl<W: Write> TarOut<W> {
    fn header(&mut self, name: &str, kind: tar::EntryType, size: u64) -> Result<(), ArchiveError> {
        let spec = EntrySpec {
            name: name.as_bytes(),
            kind,
            mode: if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: self.mtime,
            size,
            link: None,
            dev: None,
            xattrs: &[],
        };
        tarfmt::write_header(&mut self.w, &spec).map_err(ArchiveError::Write)
    }

    /// Directory entries for every parent of `path` not yet written.
    fn parents(&mut self, path: &str) -> Result<(), ArchiveError> {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            acc.push_str(p);
            acc.push('/');
            if self.dirs.insert(acc.clone()) {
                let name = acc.clone();
                self.header(&name, tar::EntryType::Directory, 0)?;
            }
        }
        Ok(())
    }

    fn bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ArchiveError> {
        self.parents(path)?;
        self.header(path, tar::EntryType::Regular, data.len() as u64)?;
        self.w.write_all(data).map_err(ArchiveError::Write)?;
        tarfmt::write_padding(&mut self.w, data.len() as u64).map_err(ArchiveError::Write)
    }

    /// Copies exactly `size` bytes from `r`; a short source is an error, not a bad tar.
    fn stream(
        &mut self,
        path: &str,
        size: u64,
        r: &mut dyn Read,
        digest: &Digest,
    ) -> Result<(), ArchiveError> {
        self.parents(path)?;
        self.header(path, tar::EntryType::Regular, size)?;
        let mut left = size;
        let mut buf = vec![0u8; 128 * 1024];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(ArchiveError::Corrupt {
                        digest: digest.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("ends {left} bytes early"),
                        ),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ArchiveError::Corrupt {
                        digest: digest.clone(),
                        source,
                    })
                }
            };
            self.w.write_all(&buf[..n]).map_err(ArchiveError::Write)?;
            left -= n as u64;
        }
        tarfmt::write_padding(&mut self.w, size).map_err(ArchiveError::Write)
    }

    fn finish(mut self) -> Result<W, ArchiveError> {
        tarfmt::write_end(&mut self.w).map_err(ArchiveError::Write)?;
        self.w.flush().map_err(ArchiveError::Write)?;
        Ok(self.w)
    }
}

fn read_all(source: &dyn BlobSource, d: &Digest) -> Result<Vec<u8>, ArchiveError> {
    let (r, size) = source.open(d)?;
    if size > SMALL {
        return Err(ArchiveError::TooLarge {
            file: d.to_string(),
            size,
        });
    }
    let mut out = Vec::new();
    VerifyingReader::new(r, d.clone(), Some(size))
        .read_to_end(&mut out)
        .map_err(|source| ArchiveError::Corrupt {
            digest: d.clone(),
            source,
        })?;
    Ok(out)
}

fn desc_digest(d: &Descriptor, file: &str) -> Result<Digest, ArchiveError> {
    Digest::from_oci(d.digest()).map_err(|source| ArchiveError::Digest {
        file: file.to_string(),
        source,
    })
}

/// Every blob an image needs, manifests first, each once.
fn closure(
    source: &dyn BlobSource,
    top: &Descriptor,
    out: &mut Vec<Digest>,
    seen: &mut HashSet<Digest>,
) -> Result<(), ArchiveError> {
    let d = desc_digest(top, "image")?;
    if !seen.insert(d.clone()) {
        return Ok(());
    }
    out.push(d.clone());
    let mt = top.media_type().to_string();
    if media_types::is_index(&mt) {
        let idx: ImageIndex = serde_json::from_slice(&read_all(source, &d)?).map_err(|source| {
            ArchiveError::Json {
                file: d.to_string(),
                source,
            }
        })?;
        for m in idx.manifests() {
            closure(source, m, out, seen)?;
        }
    } else if media_types::is_manifest(&mt) {
        let m: ImageManifest =
            serde_json::from_slice(&read_all(source, &d)?).map_err(|source| {
                ArchiveError::Json {
                    file: d.to_string(),
                    source,
                }
            })?;
        for b in std::iter::once(m.config()).chain(m.layers()) {
            let bd = desc_digest(b, d.as_str())?;
            if seen.insert(bd.clone()) {
                out.push(bd);
            }
        }
    }
    Ok(())
}

/// `index.json` for exported images: one descriptor per name.
fn export_index(images: &[ExportImage]) -> ImageIndex {
    let mut manifests = Vec::new();
    for img in images {
        if img.names.is_empty() {
            manifests.push(img.manifest.clone());
        }
        for n in &img.names {
            let mut d = img.manifest.clone();
            let mut ann = d.annotations().clone().unwrap_or_default();
            ann.insert(ANNOTATION_REF_NAME.to_string(), n.clone());
            d.set_annotations(Some(ann));
            manifests.push(d);
        }
    }
    let mut index = crate::layout::empty_index();
    index.set_manifests(manifests);
    index
}

/// Writes an oci-archive (a tar of an OCI layout) of `images` to `w`, copying blobs
/// verbatim from `source`.
pub fn write_oci_archive<W: Write>(
    w: W,
    images: &[ExportImage],
    source: &dyn BlobSource,
    opts: &WriteOptions,
) -> Result<W, ArchiveError> {
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    for img in images {
        closure(source, &img.manifest, &mut blobs, &mut seen)?;
    }
    let mut out = TarOut {
        w,
        mtime: opts.mtime.unwrap_or(0),
        dirs: HashSet::new(),
    };
    // Sorted, as a walk of the layout directory would give them.
    blobs.sort();
    for d in &blobs {
        let (r, size) = source.open(d)?;
        let mut vr = VerifyingReader::new(r, d.clone(), Some(size));
        out.stream(
            &format!("blobs/{}/{}", d.algorithm().name(), d.hex()),
            size,
            &mut vr,
            d,
        )?;
        // Reach the verifying reader's end so a corrupt blob is reported.
        let mut tail = [0u8; 1];
        vr.read(&mut tail).map_err(|source| ArchiveError::Corrupt {
            digest: d.clone(),
            source,
        })?;
    }
    let index = image::to_json(&export_index(images)).map_err(|source| ArchiveError::Json {
        file: "index.json".into(),
        source,
    })?;
    out.bytes("index.json", &index)?;
    out.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    out.finish()
}

/// Writes `images` into an OCI layout directory (created if needed), blobs copied and
/// verified through the layout's atomic sink, names set as `ref.name`.
pub fn write_oci_layout(
    dir: &Path,
    images: &[ExportImage],
    source: &dyn BlobSource,
) -> Result<OciLayout, ArchiveError> {
    let mut layout = OciLayout::create(dir)?;
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    for img in images {
        closure(source, &img.manifest, &mut blobs, &mut seen)?;
    }
    for d in &blobs {
        let (mut r, _) = source.open(d)?;
        layout
            .put(&mut r, Some(d))
            .map_err(|source| ArchiveError::Blob {
                file: d.to_string(),
                source,
            })?;
    }
    let mut index = layout.index()?;
    let mut manifests = index.manifests().clone();
    let names: HashSet<&str> = images
        .iter()
        .flat_map(|i| i.names.iter().map(String::as_str))
        .collect();
    manifests.retain(|d| crate::layout::ref_name(d).is_none_or(|n| !names.contains(n)));
    manifests.extend(export_index(images).manifests().iter().cloned());
    index.set_manifests(manifests);
    layout.write_index(&index)?;
    Ok(layout)
}

/// Writes a docker-archive in the classic format `docker load` and skopeo read:
/// `<diffID hex>/layer.tar` (uncompressed), `<config hex>.json`, `manifest.json`.
pub fn write_docker_archive<W: Write>(
    w: W,
    images: &[ExportImage],
    source: &dyn BlobSource,
    opts: &WriteOptions,
) -> Result<W, ArchiveError> {
    let mut out = TarOut {
        w,
        mtime: opts.mtime.unwrap_or(0),
        dirs: HashSet::new(),
    };
    let mut items = Vec::new();
    let mut written: HashSet<String> = HashSet::new();
    for img in images {
        let md = desc_digest(&img.manifest, "image")?;
        let mt = img.manifest.media_type().to_string();
        if !media_types::is_manifest(&mt) {
            return Err(ArchiveError::NotAManifest {
                digest: md,
                media_type: mt,
            });
        }
        let m: ImageManifest =
            serde_json::from_slice(&read_all(source, &md)?).map_err(|source| {
                ArchiveError::Json {
                    file: md.to_string(),
                    source,
                }
            })?;
        let cd = desc_digest(m.config(), md.as_str())?;
        let config_bytes = read_all(source, &cd)?;
        let config =
            ImageConfig::from_json(&config_bytes).map_err(|source| ArchiveError::Json {
                file: cd.to_string(),
                source,
            })?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            return Err(ArchiveError::LayerCount {
                file: md.to_string(),
                layers: m.layers().len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let mut layer_paths = Vec::new();
        for (l, diff_id) in m.layers().iter().zip(&config.rootfs.diff_ids) {
            let path = format!("{}/layer.tar", diff_id.hex());
            if written.insert(path.clone()) {
                write_docker_layer(&mut out, source, l, diff_id, &path)?;
            }
            layer_paths.push(path);
        }
        let config_path = format!("{}.json", cd.hex());
        if written.insert(config_path.clone()) {
            out.bytes(&config_path, &config_bytes)?;
        }
        let repo_tags: Vec<String> = img
            .names
            .iter()
            .map(|n| {
                Reference::parse(n)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| n.clone())
            })
            .collect();
        items.push(DockerManifestItem {
            config: config_path,
            repo_tags: if repo_tags.is_empty() {
                None
            } else {
                Some(repo_tags)
            },
            layers: layer_paths,
        });
    }
    let manifest = serde_json::to_vec(&items).map_err(|source| ArchiveError::Json {
        file: "manifest.json".into(),
        source,
    })?;
    out.bytes("manifest.json", &manifest)?;
    out.finish()
}

/// One docker-archive layer: the uncompressed tar, verified against its diffID. A
/// compressed blob is decompressed twice (once for the size the tar header needs, once to
/// write) unless the source knows its uncompressed size.
fn write_docker_layer<W: Write>(
    out: &mut TarOut<W>,
    source: &dyn BlobSource,
    l: &Descriptor,
    diff_id: &Digest,
    path: &str,
) -> Result<(), ArchiveError> {
    let ld = desc_digest(l, path)?;
    let (r, size) = source.open(&ld)?;
    let (prefix, chained) = peek(r, SNIFF_LEN).map_err(|source| ArchiveError::Corrupt {
        digest: ld.clone(),
        source,
    })?;
    let compression = match sniff(&prefix) {
        Sniffed::Known(c) => c,
        _ => Compression::from_media_type(l.media_type().as_ref()).unwrap_or(Compression::None),
    };
    let corrupt = |source| ArchiveError::Corrupt {
        digest: ld.clone(),
        source,
    };
    if compression == Compression::None {
        let mut vr = VerifyingReader::new(chained, diff_id.clone(), Some(size));
        out.stream(path, size, &mut vr, &ld)?;
        let mut tail = [0u8; 1];
        vr.read(&mut tail).map_err(corrupt)?;
        return Ok(());
    }
    let usize_known = source.uncompressed_size(&ld);
    let uncompressed = match usize_known {
        Some(s) => s,
        None => {
            let mut h = HashingReader::new(Decoder::new(chained, compression).map_err(corrupt)?);
            let n = io::copy(&mut h, &mut io::sink()).map_err(|source| ArchiveError::Corrupt {
                digest: ld.clone(),
                source,
            })?;
            let (_, actual, _) = h.finish();
            if &actual != diff_id {
                return Err(ArchiveError::DiffIdMismatch {
                    file: ld.to_string(),
                    expected: diff_id.clone(),
                    actual,
                });
            }
            n
        }
    };
    let (r, _) = source.open(&ld)?;
    let dec = Decoder::new(r, compression).map_err(|source| ArchiveError::Corrupt {
        digest: ld.clone(),
        source,
    })?;
    let mut vr = VerifyingReader::new(dec, diff_id.clone(), Some(uncompressed));
    out.stream(path, uncompressed, &mut vr, &ld)?;
    let mut tail = [0u8; 1];
    vr.read(&mut tail).map_err(|source| ArchiveError::Corrupt {
        digest: ld.clone(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_normalisation() {
        assert_eq!(norm("./a//b/./c"), "a/b/c");
        assert_eq!(norm("/x/../y"), "y");
        assert_eq!(norm("../../z"), "z");
        assert_eq!(parent_of("a/b/c"), "a/b");
        assert!(blob_path_digest(&format!("blobs/sha256/{}", "a".repeat(64))).is_some());
        assert!(blob_path_digest("blobs/sha256/zz").is_none());
    }

    #[test]
    fn export_index_one_descriptor_per_name() {
        let d = descriptor(media_types::OCI_MANIFEST, &Digest::sha256_of(b"m"), 1);
        let idx = export_index(&[ExportImage {
            manifest: d,
            names: vec!["a".into(), "b".into()],
        }]);
        let names: std::collections::BTreeSet<_> = idx
            .manifests()
            .iter()
            .filter_map(|m| crate::layout::ref_name(m).map(str::to_string))
            .collect();
        assert_eq!(names.len(), 2);
    }
}
