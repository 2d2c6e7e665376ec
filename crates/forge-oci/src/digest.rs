//! Content digests: the one id type used for blobs, configs, manifests and diffIDs.
//!
//! A [`Digest`] is `algorithm:hex`. sha256 is what forge writes; sha512 is accepted when
//! reading because the OCI spec and docker's reference grammar allow it. Hashing happens
//! while bytes stream through a [`HashingWriter`] or [`HashingReader`], so nothing has to be
//! held in memory to learn its digest.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A hash algorithm a [`Digest`] may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`, 64 hex digits: what forge computes by default.
    Sha256,
    /// `sha512`, 128 hex digits.
    Sha512,
}

impl Algorithm {
    /// The name as it appears before the `:`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex digits of an encoded digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("invalid digest {0:?}: missing algorithm prefix (expected sha256:<hex>)")]
    MissingAlgorithm(String),
    /// An algorithm we do not implement (go-digest's `ErrDigestUnsupported`).
    #[error("invalid digest {input:?}: unsupported digest algorithm {algorithm:?}")]
    Unsupported {
        /// The whole input.
        input: String,
        /// The algorithm named.
        algorithm: String,
    },
    /// Wrong number of hex digits (go-digest's `ErrDigestInvalidLength`).
    #[error("invalid digest {input:?}: {algorithm} needs {expected} hex digits, got {actual}")]
    InvalidLength {
        /// The whole input.
        input: String,
        /// The algorithm named.
        algorithm: Algorithm,
        /// Hex digits the algorithm needs.
        expected: usize,
        /// Characters found after the `:`.
        actual: usize,
    },
    /// A character outside `[0-9a-f]` (upper case is refused too, as go-digest does).
    #[error("invalid digest {0:?}: encoded part must be lower-case hex")]
    InvalidHex(String),
}

/// A content digest such as `sha256:e3b0c442…`.
///
/// The full string is stored once, so [`Digest::as_str`] and `Display` are free; the
/// type is `Ord` so digests can key sorted maps deterministically.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    full: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_string()))?;
        let algorithm = Algorithm::from_name(alg).ok_or_else(|| {
            // go-digest first checks the algorithm grammar; an empty one is "missing".
            if alg.is_empty() {
                DigestError::MissingAlgorithm(s.to_string())
            } else {
                DigestError::Unsupported {
                    input: s.to_string(),
                    algorithm: alg.to_string(),
                }
            }
        })?;
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::InvalidLength {
                input: s.to_string(),
                algorithm,
                expected: algorithm.hex_len(),
                actual: hex.len(),
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::InvalidHex(s.to_string()));
        }
        Ok(Digest {
            algorithm,
            full: s.to_string(),
        })
    }

    /// A sha256 digest from its 64 hex digits (e.g. a `blobs/sha256/<hex>` file name).
    pub fn from_sha256_hex(hex: &str) -> Result<Digest, DigestError> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(bytes);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part, after the `:`.
    pub fn hex(&self) -> &str {
        &self.full[self.algorithm.name().len() + 1..]
    }

    /// The whole `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// docker's short id: the first 12 hex digits (`docker images` IMAGE ID column).
    pub fn short_id(&self) -> &str {
        &self.hex()[..12]
    }

    /// The digest as oci-spec's type, for building descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        oci_spec::image::Digest::from_str(&self.full)
            .expect("a validated sha256/sha512 digest is a valid OCI digest")
    }

    /// Converts oci-spec's digest, validating it (oci-spec accepts any algorithm).
    pub fn from_oci(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
        Digest::parse(d.as_ref())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        d.to_oci()
    }
}

impl From<Digest> for oci_spec::image::Digest {
    fn from(d: Digest) -> Self {
        d.to_oci()
    }
}

/// An incremental hash producing a [`Digest`].
#[derive(Clone)]
pub struct Hasher(HasherInner);

#[derive(Clone)]
enum HasherInner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        Hasher(match algorithm {
            Algorithm::Sha256 => HasherInner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherInner::Sha512(sha2::Sha512::new()),
        })
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherInner::Sha256(h) => h.update(bytes),
            HasherInner::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self.0 {
            HasherInner::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            HasherInner::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let mut full = String::with_capacity(algorithm.name().len() + 1 + bytes.len() * 2);
        full.push_str(algorithm.name());
        full.push(':');
        for b in bytes {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            full.push(HEX[usize::from(b >> 4)] as char);
            full.push(HEX[usize::from(b & 0xf)] as char);
        }
        Digest { algorithm, full }
    }
}

/// A writer that hashes and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing with sha256.
    pub fn new(inner: W) -> Self {
        Self::with_algorithm(inner, Algorithm::Sha256)
    }

    /// Wraps `inner`, hashing with `algorithm`.
    pub fn with_algorithm(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(algorithm),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count. Does not flush.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash only what the inner writer accepted, so a short write is not hashed twice.
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, hashing with sha256.
    pub fn new(inner: R) -> Self {
        Self::with_algorithm(inner, Algorithm::Sha256)
    }

    /// Wraps `inner`, hashing with `algorithm` (use the expected digest's algorithm when
    /// verifying).
    pub fn with_algorithm(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algorithm),
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The digest of what was read so far, without consuming the reader.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// The inner reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Returns the inner reader, the digest and the byte count.
    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, self.hasher.finish(), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_display() {
        let d = Digest::parse(EMPTY).expect("valid");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(d.short_id(), "e3b0c44298fc");
        assert_eq!(Digest::sha256_of(b""), d);
        assert_eq!(d.to_oci().to_string(), EMPTY);
        assert_eq!(
            Digest::from_oci(&d.to_oci()).expect("round trip"),
            d,
            "oci-spec conversion round-trips"
        );
    }

    #[test]
    fn rejects_bad_digests() {
        type Check = fn(&DigestError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("e3b0c442", |e| {
                matches!(e, DigestError::MissingAlgorithm(_))
            }),
            (":abc", |e| matches!(e, DigestError::MissingAlgorithm(_))),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", |e| {
                matches!(e, DigestError::Unsupported { .. })
            }),
            ("sha256:ffffffffffffffffffffffffffffffffff", |e| {
                matches!(e, DigestError::InvalidLength { actual: 34, .. })
            }),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                |e| matches!(e, DigestError::InvalidHex(_)),
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                |e| matches!(e, DigestError::InvalidHex(_)),
            ),
        ];
        for (input, check) in cases {
            let err = Digest::parse(input).expect_err(input);
            assert!(check(&err), "{input}: unexpected error {err:?}");
        }
    }

    #[test]
    fn sha512_is_accepted() {
        let s = format!("sha512:{}", "f".repeat(128));
        let d = Digest::parse(&s).expect("valid sha512");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().as_str().starts_with("sha512:ddaf35a1"));
    }

    #[test]
    fn hashing_writer_and_reader_agree() {
        let data = vec![7u8; 100_000];
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).expect("write to vec");
        let (out, wd, wn) = w.finish();
        assert_eq!(out, data);
        assert_eq!(wn, 100_000);
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).expect("read slice");
        let (_, rd, rn) = r.finish();
        assert_eq!((wd.clone(), wn), (rd, rn));
        assert_eq!(wd, Digest::sha256_of(&data));
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::parse(EMPTY).expect("valid");
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{EMPTY}\""));
        let back: Digest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
