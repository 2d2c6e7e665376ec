//! The seam between format code and storage: where blobs go and where they come from.
//!
//! Archive readers hand every blob to a [`BlobSink`] as a stream; the sink hashes while it
//! writes and must not make the blob visible unless the digest matches (containerd's
//! "not visible until committed"). Archive writers read blobs from a [`BlobSource`].
//! [`crate::layout::OciLayout`] implements both (temp file + fsync + rename);
//! [`MemoryBlobs`] implements both in memory for tests and small tools. The store crate
//! plugs its own atomic blob store in here.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;

use crate::digest::{Algorithm, Digest, HashingReader};

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Why a sink could not store a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobSinkError {
    /// Reading the blob's content from the producer failed (a truncated archive, say).
    #[error("reading blob content: {0}")]
    Read(#[source] io::Error),
    /// Storing it failed.
    #[error("writing blob to {path}: {source}")]
    Write {
        /// Where the sink was writing.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The content does not hash to the expected digest; nothing was stored.
    #[error("blob digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the producer promised.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
}

/// Somewhere to put blobs.
pub trait BlobSink {
    /// Stores the blob read from `reader` to its end. With `expected`, the content must hash
    /// to it, or the blob is discarded and [`BlobSinkError::DigestMismatch`] returned. A
    /// sink may return early without reading when it already holds `expected`.
    fn put(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, BlobSinkError>;
}

/// Why a source could not give a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobSourceError {
    /// The source does not have it.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// Opening or reading it failed.
    #[error("reading blob {digest} at {path}: {source}")]
    Io {
        /// The blob.
        digest: Digest,
        /// Where it lives.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Somewhere to read blobs from.
pub trait BlobSource {
    /// Opens a blob: its content and size. Callers verify the digest while reading.
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + '_>, u64), BlobSourceError>;

    /// The uncompressed size of a compressed layer blob, when the source knows it (saves a
    /// decompression pass when writing docker-archive, whose layers are uncompressed).
    fn uncompressed_size(&self, _digest: &Digest) -> Option<u64> {
        None
    }
}

/// Blobs in memory, keyed by digest.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobs {
    /// The blobs.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}

impl MemoryBlobs {
    /// An empty store.
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    /// Stores `bytes`, returning its sha256 digest.
    pub fn insert(&mut self, bytes: Vec<u8>) -> BlobInfo {
        let digest = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        self.blobs.insert(digest.clone(), bytes);
        BlobInfo { digest, size }
    }

    /// A blob's bytes.
    pub fn get(&self, d: &Digest) -> Option<&[u8]> {
        self.blobs.get(d).map(Vec::as_slice)
    }
}

impl BlobSink for MemoryBlobs {
    fn put(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, BlobSinkError> {
        let alg = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let mut r = HashingReader::with_algorithm(reader, alg);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).map_err(BlobSinkError::Read)?;
        let (_, digest, size) = r.finish();
        check(expected, &digest)?;
        self.blobs.insert(digest.clone(), buf);
        Ok(BlobInfo { digest, size })
    }
}

impl BlobSource for MemoryBlobs {
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + '_>, u64), BlobSourceError> {
        let b = self
            .blobs
            .get(digest)
            .ok_or_else(|| BlobSourceError::NotFound(digest.clone()))?;
        Ok((Box::new(&b[..]), b.len() as u64))
    }
}

/// Compares a computed digest with the expected one.
pub(crate) fn check(expected: Option<&Digest>, actual: &Digest) -> Result<(), BlobSinkError> {
    match expected {
        Some(e) if e != actual => Err(BlobSinkError::DigestMismatch {
            expected: e.clone(),
            actual: actual.clone(),
        }),
        _ => Ok(()),
    }
}

/// A reader that checks, at its end, that what it read hashes to `expected` and has
/// `size` bytes; otherwise the final read fails with `InvalidData`, so a consumer that
/// reads to the end never accepts corrupt content.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    expected: Digest,
    size: Option<u64>,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which should hold the blob `expected` (of `size` bytes, if known).
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> VerifyingReader<R> {
        VerifyingReader {
            inner: HashingReader::with_algorithm(inner, expected.algorithm()),
            expected,
            size,
            done: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let actual = self.inner.digest();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {} hashes to {actual}", self.expected),
                ));
            }
            if let Some(s) = self.size {
                if s != self.inner.bytes_read() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "blob {} has {} bytes, descriptor says {s}",
                            self.expected,
                            self.inner.bytes_read()
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sink_verifies() {
        let mut m = MemoryBlobs::new();
        let good = Digest::sha256_of(b"abc");
        let info = m.put(&mut &b"abc"[..], Some(&good)).expect("put");
        assert_eq!(info.digest, good);
        let bad = Digest::sha256_of(b"xyz");
        let err = m.put(&mut &b"abc!"[..], Some(&bad)).expect_err("mismatch");
        assert!(matches!(err, BlobSinkError::DigestMismatch { .. }));
        assert_eq!(m.blobs.len(), 1, "mismatched blob not stored");
    }

    #[test]
    fn verifying_reader_rejects_corruption() {
        let d = Digest::sha256_of(b"abc");
        let mut ok = Vec::new();
        VerifyingReader::new(&b"abc"[..], d.clone(), Some(3))
            .read_to_end(&mut ok)
            .expect("good");
        let mut out = Vec::new();
        let err = VerifyingReader::new(&b"abd"[..], d.clone(), None)
            .read_to_end(&mut out)
            .expect_err("bad");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = VerifyingReader::new(&b"abc"[..], d, Some(4))
            .read_to_end(&mut out)
            .expect_err("size");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
