//! Layer tars: writing them from a directory and applying them to one.
//!
//! [`write_layer`] walks a directory (or an overlayfs upper dir, converting its whiteouts)
//! into a reproducible tar, compresses it and computes both the blob digest and the diffID
//! in the same pass, streaming into any `Write`. [`apply_layer`] reads a layer (gzip, zstd or
//! plain, told apart by magic bytes) and unpacks it into a directory, either resolving
//! whiteouts (plain mode) or recording them as overlayfs does (snapshot mode), refusing any
//! entry that would touch something outside the target.
//!
//! Whiteout vocabulary (OCI image spec, "Representing Changes"): `.wh.<name>` deletes
//! `<name>` from lower layers; `.wh..wh..opq` in a directory hides everything lower layers
//! put there. overlayfs spells the first as a 0/0 character device and the second as the
//! xattr `trusted.overlay.opaque=y` on the directory.

use std::io::{self, Read, Write};

mod apply;
pub(crate) mod tarfmt;
mod writer;

pub use apply::{
    apply_layer, unpack_rootfs, Applied, ApplyError, ApplyMode, ApplyOptions, Unpacked,
    UnsafeReason,
};
pub use writer::{write_layer, LayerInfo, LayerOptions, LayerWriteError, LayerWriter, SourceKind};

use crate::media_types;

/// Prefix of a whiteout entry's base name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Base name of the opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// Names starting with this are aufs metadata (`.wh..wh.plnk`, …) and are never content.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// overlayfs marks opaque directories with this xattr set to `y`.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same for overlayfs mounted with `userxattr` (rootless).
pub const OVERLAY_OPAQUE_USER_XATTR: &str = "user.overlay.opaque";

/// Whether an xattr belongs to overlayfs' own bookkeeping (never layer content).
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip: the default for image layers, as docker and BuildKit write them.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => media_types::OCI_LAYER_TAR,
            Compression::Gzip => media_types::OCI_LAYER_GZIP,
            Compression::Zstd => media_types::OCI_LAYER_ZSTD,
        }
    }

    /// The docker schema 2 layer media type (docker has none for zstd; the OCI one is what
    /// docker itself uses there).
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::None => media_types::DOCKER_LAYER_TAR,
            Compression::Gzip => media_types::DOCKER_LAYER_GZIP,
            Compression::Zstd => media_types::OCI_LAYER_ZSTD,
        }
    }

    /// The compression a layer media type implies, if it names one we know.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// What the first bytes of a stream say about its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// One we can decode.
    Known(Compression),
    /// bzip2 (`BZh`): recognised so the error can say so.
    Bzip2,
    /// xz (`FD 37 7A 58 5A 00`): recognised so the error can say so.
    Xz,
}

/// Bytes needed by [`sniff`].
pub const SNIFF_LEN: usize = 6;

/// Tells the compression from the first bytes of a stream (at least [`SNIFF_LEN`] when the
/// stream is that long). Anything unrecognised is taken as a plain tar; the tar reader then
/// rejects it if it is not one.
pub fn sniff(prefix: &[u8]) -> Sniffed {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Sniffed::Known(Compression::Gzip)
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Sniffed::Known(Compression::Zstd)
    } else if prefix.starts_with(b"BZh") {
        Sniffed::Bzip2
    } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Sniffed::Xz
    } else {
        Sniffed::Known(Compression::None)
    }
}

/// A stream whose first bytes were read by [`peek`] and are replayed.
pub type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Extended attributes as (name, value), sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads up to `n` bytes from `r` for sniffing, and returns them with a reader that yields
/// the whole stream again (the peeked bytes first).
pub fn peek<R: Read>(mut r: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok((buf.clone(), io::Cursor::new(buf).chain(r)))
}

/// A decompressing reader over a layer stream.
pub enum Decoder<R: Read> {
    /// Plain tar.
    Plain(R),
    /// gzip; multi-member streams are read to the end as Go's gzip reader does.
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    /// zstd.
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<R>>>),
}

impl<R: Read> Decoder<R> {
    /// Wraps `r`, which holds data compressed with `c`.
    pub fn new(r: R, c: Compression) -> io::Result<Decoder<R>> {
        Ok(match c {
            Compression::None => Decoder::Plain(r),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(r))),
            Compression::Zstd => Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(r)?)),
        })
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// A compressing writer.
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// `level` is gzip's 0-9 (default 6) or zstd's 1-22 (default 3).
    pub(crate) fn new(w: W, c: Compression, level: Option<i32>) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::None => Encoder::Plain(w),
            // No file name and mtime 0 in the gzip header (GzBuilder's defaults): the same
            // tar always compresses to the same bytes.
            Compression::Gzip => Encoder::Gzip(flate2::GzBuilder::new().write(
                w,
                flate2::Compression::new(level.unwrap_or(6).clamp(0, 9).unsigned_abs()),
            )),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(w, level.unwrap_or(3))?)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}
