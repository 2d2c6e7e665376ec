//! One error enum per operation; each variant names the file, URL, digest or reference
//! it is about.

use std::io;
use std::path::PathBuf;

use forge_oci::{Digest, ReferenceError};
use forge_store::StoreError;

/// Reading or writing forge's config file or the credentials file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not JSON.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file is JSON but not an object.
    #[error("{path}: the configuration must be a JSON object")]
    NotAnObject {
        /// The file.
        path: PathBuf,
    },
    /// A key has the wrong type.
    #[error("{path}: {key:?} must be {expected}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A `registry-mirrors` entry is not an http(s) base URL.
    #[error("{path}: invalid mirror {mirror:?}: expected http(s)://host[:port]")]
    BadMirror {
        /// The file.
        path: PathBuf,
        /// The entry.
        mirror: String,
    },
    /// An `auths` entry cannot be decoded.
    #[error("{path}: credentials for {registry}: {reason}")]
    BadAuth {
        /// The file.
        path: PathBuf,
        /// The `auths` key.
        registry: String,
        /// Why.
        reason: String,
    },
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Talking to a registry: one request, its authentication, its TLS.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request did not get an answer (after the retries).
    #[error("{method} {url}: {source}")]
    Transport {
        /// The HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// The registry's TLS certificate is not trusted.
    #[error("{url}: tls: the certificate of {host} is not trusted ({source}); add its CA as {hint}/{host}/ca.crt, or list {host} in insecure-registries")]
    Certificate {
        /// The URL.
        url: String,
        /// The registry host.
        host: String,
        /// Where a CA file would be read from.
        hint: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// Neither HTTPS nor (for insecure or loopback registries) plain HTTP worked.
    #[error("{host}: no registry answers over https ({https}) or http ({http})")]
    Unreachable {
        /// The registry host.
        host: String,
        /// The HTTPS error.
        https: Box<RegistryError>,
        /// The HTTP error.
        http: Box<RegistryError>,
    },
    /// The registry refused the credentials (or there were none).
    #[error("{method} {url}: unauthorized: {message}")]
    Unauthorized {
        /// The HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The registry's message.
        message: String,
    },
    /// An unexpected status.
    #[error("{method} {url}: {status} {message}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The registry's message (its error JSON, or the status text).
        message: String,
    },
    /// The token server's answer is unusable.
    #[error("token from {realm}: {reason}")]
    Token {
        /// The token endpoint.
        realm: String,
        /// Why.
        reason: String,
    },
    /// An answer that should be JSON is not the JSON expected.
    #[error("{url}: decoding the {what}: {source}")]
    Decode {
        /// The URL.
        url: String,
        /// What it should be.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// Reading a response body failed.
    #[error("{url}: reading the answer: {source}")]
    Body {
        /// The URL.
        url: String,
        /// Why.
        source: io::Error,
    },
    /// A CA file cannot be read or parsed.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration or credentials file.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// `forge pull`.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The name is not a reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry has no such manifest.
    #[error("manifest for {reference} not found: manifest unknown")]
    ManifestUnknown {
        /// What was asked for.
        reference: String,
    },
    /// The manifest's bytes do not hash to the digest asked for or announced.
    #[error("{reference}: manifest digest mismatch: expected {expected}, got {actual}")]
    ManifestDigest {
        /// What was asked for.
        reference: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A media type forge does not pull.
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedManifest {
        /// What was asked for.
        reference: String,
        /// The type.
        media_type: String,
    },
    /// An index without an entry for this platform.
    #[error("{reference}: no matching manifest for {platform} in the manifest list entries")]
    NoPlatform {
        /// What was asked for.
        reference: String,
        /// The platform asked for.
        platform: String,
    },
    /// A single-platform image of another platform than the one asked for.
    #[error("image with reference {reference} was found but its platform ({found}) does not match the specified platform ({wanted})")]
    PlatformMismatch {
        /// What was asked for.
        reference: String,
        /// The image's platform.
        found: String,
        /// The platform asked for.
        wanted: String,
    },
    /// A manifest or config that is not what it should be.
    #[error("{reference}: decoding the {what}: {source}")]
    Decode {
        /// What was pulled.
        reference: String,
        /// Which document.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A blob whose content does not match its digest or size: nothing of it is kept.
    #[error("blob {digest} from {url}: {reason}; nothing was stored")]
    BadBlob {
        /// The blob.
        digest: Digest,
        /// Where it came from.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob download that kept failing.
    #[error("blob {digest} from {url}: {source} (after {attempts} attempts)")]
    Download {
        /// The blob.
        digest: Digest,
        /// Where it came from.
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last error.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `forge push`.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A blob upload that did not get an upload location.
    #[error("{url}: the registry gave no upload location")]
    NoLocation {
        /// The upload URL.
        url: String,
    },
    /// A blob upload that kept failing.
    #[error("uploading blob {digest} to {url}: {reason} (after {attempts} attempts)")]
    Upload {
        /// The blob.
        digest: Digest,
        /// The upload URL.
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// The image has no tag and no digest to push under.
    #[error("{0}: nothing to push under (give a tag)")]
    NoTag(String),
    /// A descriptor whose digest forge cannot use.
    #[error("the {what} descriptor's digest: {source}")]
    Descriptor {
        /// Which descriptor.
        what: &'static str,
        /// Why.
        source: forge_oci::DigestError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
