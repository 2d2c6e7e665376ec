//! Directory → layer tar → compressed blob, in one streaming pass.
//!
//! The writer stack is `tar blocks → HashingWriter (diffID) → Encoder → BlobHash (blob
//! digest; skipped when uncompressed, as the blob is then the tar) → caller's writer`, so
//! each byte is produced, hashed and compressed once and nothing is buffered beyond a read
//! buffer.
//!
//! Reproducibility: children are visited in bytewise name order (directory first, then its
//! contents, as Go's `filepath.Walk` does), owners are numeric, no atime/ctime/uname/gname,
//! mtimes optionally clamped to `SOURCE_DATE_EPOCH`, gzip without name or mtime, and PAX
//! records sorted. The same tree always gives the same bytes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::tarfmt::{self, EntrySpec};
use super::{
    is_overlay_xattr, Compression, Encoder, Xattrs, OVERLAY_OPAQUE_USER_XATTR,
    OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};
use crate::digest::{Algorithm, Digest, Hasher, HashingWriter};
use crate::image::{descriptor, Descriptor};

/// What the source directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// Every file is content (a fresh tree, e.g. the result of COPY into an empty dir).
    #[default]
    Directory,
    /// An overlayfs upper dir: 0/0 character devices are whiteouts (written as
    /// `.wh.<name>`), directories with `trusted.overlay.opaque=y` (or `user.overlay.opaque`)
    /// get a `.wh..wh..opq` entry, and overlay xattrs are not emitted.
    OverlayUpper,
}

/// How to write a layer.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// Blob compression (gzip by default).
    pub compression: Compression,
    /// gzip 0-9 or zstd 1-22; `None` for the default (6 / 3).
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are clamped to it. Passed in by the
    /// caller; the library never reads the environment.
    pub source_date_epoch: Option<i64>,
    /// Plain directory or overlay upper dir.
    pub source: SourceKind,
}

impl LayerOptions {
    /// gzip, the default for images.
    pub fn gzip() -> LayerOptions {
        LayerOptions::default()
    }

    /// With `compression`.
    pub fn with_compression(compression: Compression) -> LayerOptions {
        LayerOptions {
            compression,
            ..LayerOptions::default()
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the (compressed) blob: the layer's descriptor digest.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

impl LayerInfo {
    /// An OCI layer descriptor for the blob.
    pub fn descriptor(&self) -> Descriptor {
        descriptor(self.compression.oci_media_type(), &self.digest, self.size)
    }
}

/// Why writing a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerWriteError {
    /// Reading a source file, directory or link failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The source path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Listing or reading extended attributes failed.
    #[error("reading extended attributes of {path}: {source}")]
    Xattr {
        /// The source path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A regular file's size changed while it was being read, so the header would lie.
    #[error("{path} changed while it was being archived (expected {expected} bytes)")]
    FileChanged {
        /// The source path.
        path: PathBuf,
        /// The size from `lstat`.
        expected: u64,
    },
    /// Writing or compressing the output failed.
    #[error("writing layer output: {0}")]
    Write(#[source] io::Error),
}

type Stack<W> = HashingWriter<Encoder<BlobHash<W>>>;

/// Hashes and counts the blob under the encoder, unless it is uncompressed: then the blob
/// is the tar, whose digest and size the diffID hasher above already computes.
struct BlobHash<W> {
    inner: W,
    hasher: Option<Hasher>,
    written: u64,
}

impl<W: Write> Write for BlobHash<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            // Only what the inner writer accepted, so a short write is not hashed twice.
            h.update(&buf[..n]);
            self.written += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer being written. Use [`write_layer`] for the common case of one directory.
pub struct LayerWriter<W: Write> {
    out: Stack<W>,
    opts: LayerOptions,
    /// (dev, ino) → name of the first entry for that inode, for hardlinks.
    inodes: HashMap<(u64, u64), Vec<u8>>,
    /// Copy buffer, reused for every file.
    buf: Vec<u8>,
}

/// One child of a directory being walked, under the name it will have in the tar.
struct Child {
    tar_base: Vec<u8>,
    src: Option<OsString>,
    kind: ChildKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChildKind {
    Normal,
    /// An overlay whiteout device, written as `.wh.<name>`.
    Whiteout,
    /// The `.wh..wh..opq` marker of an opaque directory (no source file).
    Opaque,
}

struct Frame {
    /// Source directory.
    dir: PathBuf,
    /// Tar name prefix for its children (`""` or `a/b/`).
    prefix: Vec<u8>,
    /// Metadata of the directory, for the opaque marker's owner/mode/mtime.
    meta: fs::Metadata,
    children: std::vec::IntoIter<Child>,
}

impl<W: Write> LayerWriter<W> {
    /// Starts a layer that streams into `w`.
    pub fn new(w: W, opts: LayerOptions) -> Result<LayerWriter<W>, LayerWriteError> {
        let blob = BlobHash {
            inner: w,
            hasher: (opts.compression != Compression::None).then(|| Hasher::new(Algorithm::Sha256)),
            written: 0,
        };
        let enc =
            Encoder::new(blob, opts.compression, opts.level).map_err(LayerWriteError::Write)?;
        Ok(LayerWriter {
            out: HashingWriter::new(enc),
            opts,
            inodes: HashMap::new(),
            buf: vec![0u8; 128 * 1024],
        })
    }

    /// Appends everything under `root` (not `root` itself), named relative to it.
    pub fn append_tree(&mut self, root: &Path) -> Result<(), LayerWriteError> {
        let meta = lstat(root)?;
        let children = self.list(root, false)?;
        self.walk(vec![Frame {
            dir: root.to_path_buf(),
            prefix: Vec::new(),
            meta,
            children: children.into_iter(),
        }])
    }

    /// Appends `src` itself under the tar name `name` (`dir` or `a/file`,
    /// no trailing slash) and, for a directory, everything under it below
    /// that name: `docker cp`'s archive of one path.
    pub fn append_as(&mut self, src: &Path, name: &str) -> Result<(), LayerWriteError> {
        let meta = lstat(src)?;
        let mut name = name.trim_end_matches('/').as_bytes().to_vec();
        let Some(opaque) = self.append_path(src, &name, &meta)? else {
            return Ok(());
        };
        name.push(b'/');
        let children = self.list(src, opaque)?;
        self.walk(vec![Frame {
            dir: src.to_path_buf(),
            prefix: name,
            meta,
            children: children.into_iter(),
        }])
    }

    /// Depth-first over the frames' children, sorted as [`Self::list`] gives them.
    fn walk(&mut self, mut stack: Vec<Frame>) -> Result<(), LayerWriteError> {
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.children.next() else {
                stack.pop();
                continue;
            };
            let mut name = frame.prefix.clone();
            name.extend_from_slice(&child.tar_base);
            match child.kind {
                ChildKind::Opaque => {
                    let m = &frame.meta;
                    let e = self.marker(&name, m.mode(), m.uid(), m.gid(), m.mtime());
                    self.emit(&e, None)?;
                }
                ChildKind::Whiteout | ChildKind::Normal => {
                    let src = frame.dir.join(child.src.as_deref().unwrap_or_default());
                    let meta = lstat(&src)?;
                    if child.kind == ChildKind::Whiteout {
                        let e =
                            self.marker(&name, meta.mode(), meta.uid(), meta.gid(), meta.mtime());
                        self.emit(&e, None)?;
                        continue;
                    }
                    if let Some(opaque) = self.append_path(&src, &name, &meta)? {
                        name.push(b'/');
                        let children = self.list(&src, opaque)?;
                        stack.push(Frame {
                            dir: src,
                            prefix: name,
                            meta,
                            children: children.into_iter(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Finishes the tar and the compression; returns the writer and what was written.
    pub fn finish(mut self) -> Result<(W, LayerInfo), LayerWriteError> {
        tarfmt::write_end(&mut self.out).map_err(LayerWriteError::Write)?;
        let (enc, diff_id, uncompressed_size) = self.out.finish();
        let blob = enc.finish().map_err(LayerWriteError::Write)?;
        let (digest, size) = match blob.hasher {
            Some(h) => (h.finish(), blob.written),
            None => (diff_id.clone(), uncompressed_size),
        };
        let mut w = blob.inner;
        w.flush().map_err(LayerWriteError::Write)?;
        Ok((
            w,
            LayerInfo {
                digest,
                size,
                diff_id,
                uncompressed_size,
                compression: self.opts.compression,
            },
        ))
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = match self.opts.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        };
        // Pre-1970 mtimes would need PAX; no layer needs them.
        u64::try_from(t).unwrap_or(0)
    }

    /// A whiteout or opaque marker: an empty regular file with the source's permissions
    /// and owner, as docker's overlay whiteout converter writes it.
    fn marker<'a>(
        &self,
        name: &'a [u8],
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
    ) -> EntrySpec<'a> {
        EntrySpec {
            name,
            kind: EntryType::Regular,
            mode: mode & 0o777,
            uid: uid.into(),
            gid: gid.into(),
            mtime: self.clamp(mtime),
            size: 0,
            link: None,
            dev: None,
            xattrs: &[],
        }
    }

    /// Lists `dir`'s children sorted by their tar names, converting overlay whiteouts.
    fn list(&self, dir: &Path, opaque: bool) -> Result<Vec<Child>, LayerWriteError> {
        let overlay = self.opts.source == SourceKind::OverlayUpper;
        let mut out = Vec::new();
        let rd = fs::read_dir(dir).map_err(|source| LayerWriteError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        for ent in rd {
            let ent = ent.map_err(|source| LayerWriteError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            let name = ent.file_name();
            let mut kind = ChildKind::Normal;
            let mut tar_base = name.as_bytes().to_vec();
            if overlay {
                let ft = ent.file_type().map_err(|source| LayerWriteError::Read {
                    path: ent.path(),
                    source,
                })?;
                if ft.is_char_device() && lstat(&ent.path())?.rdev() == 0 {
                    kind = ChildKind::Whiteout;
                    tar_base = [WHITEOUT_PREFIX.as_bytes(), name.as_bytes()].concat();
                }
            }
            out.push(Child {
                tar_base,
                src: Some(name),
                kind,
            });
        }
        if opaque {
            out.push(Child {
                tar_base: WHITEOUT_OPAQUE.as_bytes().to_vec(),
                src: None,
                kind: ChildKind::Opaque,
            });
        }
        out.sort_by(|a, b| a.tar_base.cmp(&b.tar_base));
        Ok(out)
    }

    /// Emits one filesystem object. Returns `Some(opaque)` for a directory to descend into.
    fn append_path(
        &mut self,
        src: &Path,
        name: &[u8],
        meta: &fs::Metadata,
    ) -> Result<Option<bool>, LayerWriteError> {
        let ft = meta.file_type();
        if ft.is_socket() {
            // Sockets are not content: docker and containerd skip them too.
            return Ok(None);
        }
        let (xattrs, opaque) = self.xattrs(src)?;
        let mut spec = EntrySpec {
            name,
            kind: EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: meta.uid().into(),
            gid: meta.gid().into(),
            mtime: self.clamp(meta.mtime()),
            size: 0,
            link: None,
            dev: None,
            xattrs: &xattrs,
        };
        if ft.is_dir() {
            let mut dname = name.to_vec();
            dname.push(b'/');
            spec.name = &dname;
            spec.kind = EntryType::Directory;
            self.emit(&spec, None)?;
            return Ok(Some(opaque));
        }
        if ft.is_symlink() {
            let target = fs::read_link(src).map_err(|source| LayerWriteError::Read {
                path: src.to_path_buf(),
                source,
            })?;
            let target = target.into_os_string().into_vec();
            spec.kind = EntryType::Symlink;
            spec.link = Some(&target);
            self.emit(&spec, None)?;
            return Ok(None);
        }
        // Every other type may be hardlinked; the first name in walk order carries the
        // content and later ones link to it (as docker/containerd do).
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.inodes.get(&key) {
                let first = first.clone();
                spec.kind = EntryType::Link;
                spec.link = Some(&first);
                self.emit(&spec, None)?;
                return Ok(None);
            }
            self.inodes.insert(key, name.to_vec());
        }
        if ft.is_file() {
            spec.size = meta.len();
            // O_NOFOLLOW: the path was a regular file at lstat time; never follow a link
            // swapped in since.
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(src)
                .map_err(|source| LayerWriteError::Read {
                    path: src.to_path_buf(),
                    source,
                })?;
            self.emit(&spec, Some((file, src)))?;
        } else if ft.is_char_device() || ft.is_block_device() {
            spec.kind = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let rdev = meta.rdev();
            spec.dev = Some((
                u64::from(nix::sys::stat::major(rdev) as u32),
                u64::from(nix::sys::stat::minor(rdev) as u32),
            ));
            self.emit(&spec, None)?;
        } else if ft.is_fifo() {
            spec.kind = EntryType::Fifo;
            self.emit(&spec, None)?;
        }
        Ok(None)
    }

    /// The xattrs to write for `path`, sorted, and whether it is an opaque overlay dir.
    fn xattrs(&self, path: &Path) -> Result<(Xattrs, bool), LayerWriteError> {
        let err = |source| LayerWriteError::Xattr {
            path: path.to_path_buf(),
            source,
        };
        let overlay = self.opts.source == SourceKind::OverlayUpper;
        let mut out = Vec::new();
        let mut opaque = false;
        // xattr::list/get use llistxattr/lgetxattr: a symlink's own attributes.
        let names = match xattr::list(path) {
            Ok(n) => n,
            // A filesystem without xattr support simply has none.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok((out, false)),
            Err(e) => return Err(err(e)),
        };
        for name in names {
            let nb = name.as_bytes();
            if overlay
                && (nb == OVERLAY_OPAQUE_XATTR.as_bytes()
                    || nb == OVERLAY_OPAQUE_USER_XATTR.as_bytes())
            {
                opaque = xattr::get(path, &name).map_err(err)?.as_deref() == Some(b"y");
                continue;
            }
            // overlayfs bookkeeping is not content, and SELinux labels belong to the host
            // that built the image, not to the image.
            if is_overlay_xattr(nb) || nb == b"security.selinux" {
                continue;
            }
            if let Some(value) = xattr::get(path, &name).map_err(err)? {
                out.push((nb.to_vec(), value));
            }
        }
        out.sort();
        Ok((out, opaque))
    }

    fn emit(
        &mut self,
        spec: &EntrySpec<'_>,
        data: Option<(File, &Path)>,
    ) -> Result<(), LayerWriteError> {
        tarfmt::write_header(&mut self.out, spec).map_err(LayerWriteError::Write)?;
        let Some((mut file, path)) = data else {
            return Ok(());
        };
        let mut remaining = spec.size;
        let cap = self.buf.len();
        while remaining > 0 {
            let want = usize::try_from(remaining.min(cap as u64)).unwrap_or(cap);
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(LayerWriteError::FileChanged {
                        path: path.to_path_buf(),
                        expected: spec.size,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerWriteError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(LayerWriteError::Write)?;
            remaining -= n as u64;
        }
        tarfmt::write_padding(&mut self.out, spec.size).map_err(LayerWriteError::Write)
    }
}

fn lstat(p: &Path) -> Result<fs::Metadata, LayerWriteError> {
    fs::symlink_metadata(p).map_err(|source| LayerWriteError::Read {
        path: p.to_path_buf(),
        source,
    })
}

/// Writes the tree under `root` as one layer into `w`. Returns `w` and the digests.
pub fn write_layer<W: Write>(
    root: &Path,
    opts: &LayerOptions,
    w: W,
) -> Result<(W, LayerInfo), LayerWriteError> {
    let mut lw = LayerWriter::new(w, opts.clone())?;
    lw.append_tree(root)?;
    lw.finish()
}
