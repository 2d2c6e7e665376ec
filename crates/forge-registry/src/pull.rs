//! Pulling an image into the store.
//!
//! The manifest is fetched (from each docker.io mirror in turn, then the origin), its
//! digest checked, an index narrowed to `linux/<host arch>`; the config and the layers are
//! streamed into the store's `tmp/` through [`forge_store::BlobWriter`] and committed only
//! once their digest matches, several at once; a download that breaks resumes with a
//! `Range` request. Layers are unpacked in order as soon as each and those below it are
//! in, so unpacking overlaps the downloads. The image is named last, in one `index.json`
//! update: a pull that fails leaves at most verified, unreferenced blobs.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};

use forge_oci::image::{self, Descriptor, ImageIndex, ImageManifest};
use forge_oci::{media_types, BlobSinkError, Digest, Reference};
use forge_store::images::host_architecture;
use forge_store::{chain_ids, BlobWriter, ImageRecord, Store, StoreError};

use crate::client::{header, read_small, status_error, Client, Payload, Session, MANIFEST_ACCEPT};
use crate::error::PullError;

/// What happens to one layer (or config) during a pull or a push, as docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerStatus {
    /// Queued for download.
    Waiting,
    /// Already in the store.
    AlreadyExists,
    /// Bytes received so far.
    Downloading {
        /// Received.
        done: u64,
        /// Total.
        total: u64,
    },
    /// Downloaded and verified.
    DownloadComplete,
    /// Being unpacked.
    Extracting,
    /// Unpacked.
    PullComplete,
    /// Queued for upload.
    Preparing,
    /// Bytes sent so far.
    Pushing {
        /// Sent.
        done: u64,
        /// Total.
        total: u64,
    },
    /// The upload failed and starts again.
    Retrying {
        /// Which try comes next.
        attempt: u32,
        /// What went wrong.
        reason: String,
    },
    /// Uploaded.
    Pushed,
    /// Mounted from another repository of the registry.
    Mounted {
        /// The repository it came from.
        from: String,
    },
    /// The registry already had it.
    LayerAlreadyExists,
}

/// Where pull and push report what they do.
pub trait Progress: Sync {
    /// A layer's status changed.
    fn layer(&self, digest: &Digest, status: LayerStatus);
    /// Something worth telling (a mirror skipped).
    fn note(&self, message: &str);
}

/// A [`Progress`] that reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn layer(&self, _: &Digest, _: LayerStatus) {}
    fn note(&self, _: &str) {}
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Blobs downloaded at once.
    pub jobs: usize,
    /// The entry to take from an index; `None`: this host's. When given, a
    /// single-platform image must be of that platform too.
    pub platform: Option<PlatformSpec>,
}

/// `os/architecture[/variant]`, as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// GOARCH: `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, …; any when `None`.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// `linux/<this machine's architecture>`.
    pub fn host() -> PlatformSpec {
        PlatformSpec {
            os: "linux".into(),
            architecture: host_architecture().into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<PlatformSpec> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_string();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_string();
        let variant = parts.next().map(str::to_string);
        if parts.next().is_some() || variant.as_deref() == Some("") {
            return None;
        }
        Some(PlatformSpec {
            os,
            architecture,
            variant,
        })
    }

    fn matches(&self, p: &forge_oci::image::Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant().as_deref() == Some(v.as_str()))
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Default for PullOptions {
    /// Three downloads at once, docker's `max-concurrent-downloads` default (on the
    /// 2-core benchmark machine also the fastest of 2, 3, 4 and 6).
    fn default() -> Self {
        PullOptions {
            jobs: 3,
            platform: None,
        }
    }
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The name given to the image (none for a pull by digest only).
    pub name: Option<Reference>,
    /// The digest of what the reference resolved to (the index, for multi-platform
    /// images), as docker prints it.
    pub digest: Digest,
    /// The image as stored.
    pub image: ImageRecord,
    /// Whether anything was downloaded or the name moved (docker's "Downloaded newer
    /// image" against "Image is up to date").
    pub changed: bool,
    /// The registry (or mirror) base URL it came from.
    pub source: String,
}

/// A manifest as fetched.
pub(crate) struct Fetched {
    pub(crate) bytes: Vec<u8>,
    media_type: String,
    pub(crate) digest: Digest,
}

/// Pulls `reference` into `store`.
pub fn pull(
    client: &Client,
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled, PullError> {
    let _lease = store.lease()?;
    // As docker: a pull by digest names nothing, even with a tag beside the digest.
    let name = match (reference.tag(), reference.digest()) {
        (Some(t), None) => Some(reference.without_tag_or_digest().with_tag(t)?),
        _ => None,
    };
    let before = name
        .as_ref()
        .and_then(|n| store.resolve(&n.to_string()).ok())
        .map(|r| r.image.target_digest());

    let (session, top) = resolve_manifest(client, reference, progress)?;
    let platform = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
    let manifest = narrow_to_platform(&session, reference, &top, &platform)?;
    let manifest_bytes = &manifest.bytes;
    let parsed: ImageManifest =
        serde_json::from_slice(manifest_bytes).map_err(|source| PullError::Decode {
            reference: reference.to_string(),
            what: "manifest",
            source,
        })?;
    store.put_blob(&mut manifest_bytes.as_slice(), Some(&manifest.digest))?;

    let config = parsed.config();
    let config_digest = descriptor_digest(config, reference)?;
    let mut changed = false;
    if !store.has_blob(&config_digest) {
        download_blob(
            &session,
            store,
            &config_digest,
            config.size(),
            &|_| {},
            None,
        )?;
        changed = true;
    }
    let target = image::descriptor(&manifest.media_type, &manifest.digest, manifest.bytes_len());
    let image = store.image_for(&target)?;
    // An index entry says its platform; a single manifest only through its config.
    let single = media_types::is_manifest(&top.media_type);
    if let Some(wanted) = opts.platform.as_ref().filter(|_| single) {
        let found = format!("{}/{}", image.config.os, image.config.architecture);
        if image.config.os != wanted.os || image.config.architecture != wanted.architecture {
            return Err(PullError::PlatformMismatch {
                reference: reference.familiar(),
                found,
                wanted: wanted.to_string(),
            });
        }
    }
    changed |= fetch_layers(&session, store, &image, opts, progress)?;

    let names: Vec<Reference> = name.iter().cloned().collect();
    store.add_image(&target, &names)?;
    changed |= before.as_ref() != Some(&manifest.digest);
    let mut image = store.image_for(&target)?;
    image.names = names;
    Ok(Pulled {
        name,
        digest: top.digest,
        image,
        changed,
        source: session.endpoint().base.clone(),
    })
}

impl Fetched {
    fn bytes_len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Fetches the manifest from the first endpoint that has it: each mirror in turn for
/// docker.io references, then the registry itself.
pub(crate) fn resolve_manifest<'c>(
    client: &'c Client,
    reference: &Reference,
    progress: &dyn Progress,
) -> Result<(Session<'c>, Fetched), PullError> {
    let mirrors: &[String] = if reference.domain() == "docker.io" {
        &client.config().mirrors
    } else {
        &[]
    };
    for mirror in mirrors {
        let attempt = client
            .mirror_endpoint(mirror)
            .map_err(PullError::from)
            .and_then(|e| Ok(client.session(&e, reference.path(), "pull", &[])?))
            .and_then(|s| {
                let f = fetch_manifest(&s, reference, &manifest_ref(reference))?;
                Ok((s, f))
            });
        match attempt {
            Ok(found) => return Ok(found),
            Err(e) => progress.note(&format!("mirror {mirror}: {e}; trying the next source")),
        }
    }
    let endpoint = client.endpoint(reference.domain())?;
    let session = client.session(&endpoint, reference.path(), "pull", &[])?;
    let fetched = fetch_manifest(&session, reference, &manifest_ref(reference))?;
    Ok((session, fetched))
}

/// The tag or digest in the manifest URL (a digest wins, as docker does).
fn manifest_ref(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    }
}

fn fetch_manifest(
    session: &Session<'_>,
    reference: &Reference,
    what: &str,
) -> Result<Fetched, PullError> {
    let url = session.url(&format!("manifests/{what}"));
    let response = session.send(
        "GET",
        &url,
        &[("Accept", MANIFEST_ACCEPT.to_string())],
        &Payload::Empty,
    )?;
    match response.status().as_u16() {
        200 => {}
        404 => {
            return Err(PullError::ManifestUnknown {
                reference: reference.familiar(),
            })
        }
        status => return Err(status_error("GET", url, status, response).into()),
    }
    let announced = header(&response, "docker-content-digest").and_then(|d| Digest::parse(d).ok());
    let content_type = header(&response, "content-type")
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let bytes = read_small(response, &url)?;
    let digest = Digest::sha256_of(&bytes);
    let expected = Digest::parse(what)
        .ok()
        .or(announced.filter(|a| a.algorithm() == forge_oci::Algorithm::Sha256));
    if let Some(expected) = expected {
        if expected != digest {
            return Err(PullError::ManifestDigest {
                reference: reference.familiar(),
                expected,
                actual: digest,
            });
        }
    }
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let in_body = serde_json::from_slice::<Typed>(&bytes)
        .ok()
        .and_then(|t| t.media_type);
    let media_type = in_body
        .or(content_type)
        .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string());
    Ok(Fetched {
        bytes,
        media_type,
        digest,
    })
}

/// The image manifest to pull: `top` itself, or its index's entry for `platform`.
fn narrow_to_platform(
    session: &Session<'_>,
    reference: &Reference,
    top: &Fetched,
    platform: &PlatformSpec,
) -> Result<Fetched, PullError> {
    if media_types::is_manifest(&top.media_type) {
        return Ok(Fetched {
            bytes: top.bytes.clone(),
            media_type: top.media_type.clone(),
            digest: top.digest.clone(),
        });
    }
    if !media_types::is_index(&top.media_type) {
        return Err(PullError::UnsupportedManifest {
            reference: reference.familiar(),
            media_type: top.media_type.clone(),
        });
    }
    let index: ImageIndex =
        serde_json::from_slice(&top.bytes).map_err(|source| PullError::Decode {
            reference: reference.to_string(),
            what: "image index",
            source,
        })?;
    let entry = index
        .manifests()
        .iter()
        .filter(|m| media_types::is_manifest(m.media_type().as_ref()))
        .find(|m| m.platform().as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| PullError::NoPlatform {
            reference: reference.familiar(),
            platform: platform.to_string(),
        })?;
    let digest = descriptor_digest(entry, reference)?;
    let fetched = fetch_manifest(session, reference, digest.as_str())?;
    if !media_types::is_manifest(&fetched.media_type) {
        return Err(PullError::UnsupportedManifest {
            reference: reference.familiar(),
            media_type: fetched.media_type,
        });
    }
    Ok(fetched)
}

fn descriptor_digest(d: &Descriptor, reference: &Reference) -> Result<Digest, PullError> {
    Digest::from_oci(d.digest()).map_err(|source| {
        PullError::Store(StoreError::Digest {
            what: format!("manifest of {}", reference.familiar()),
            source,
        })
    })
}

/// Downloads the layers the store lacks, `opts.jobs` at once, and unpacks each as soon as
/// it and every layer below it are in. Returns whether anything was downloaded.
fn fetch_layers(
    session: &Session<'_>,
    store: &Store,
    image: &ImageRecord,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<bool, PullError> {
    if image.layers.len() != image.config.rootfs.diff_ids.len() {
        // The store's own check gives the error.
        store.unpack(image)?;
    }
    let digests = image.layer_digests()?;
    let n = digests.len();
    let missing: Vec<bool> = digests.iter().map(|d| !store.has_blob(d)).collect();
    for (d, &m) in digests.iter().zip(&missing) {
        progress.layer(
            d,
            if m {
                LayerStatus::Waiting
            } else {
                LayerStatus::AlreadyExists
            },
        );
    }
    let chains = chain_ids(&image.config.rootfs.diff_ids);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<(), PullError>)>();
    let jobs = opts.jobs.clamp(1, n.max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, abort, digests, missing, chains) =
                (&next, &abort, &digests, &missing, &chains);
            s.spawn(move || loop {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let result = if missing[i] {
                    fetch_and_unpack(session, store, image, i, &digests[i], chains, progress)
                } else {
                    Ok(())
                };
                if tx.send((i, result)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done = vec![false; n];
        let mut unpacked = 0;
        let mut first_error = None;
        for (i, result) in rx {
            match result {
                Ok(()) => done[i] = true,
                Err(e) => {
                    abort.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
            while first_error.is_none() && unpacked < n && done[unpacked] {
                if let Err(e) = unpack_prefix(store, image, unpacked, missing[unpacked], progress) {
                    abort.store(true, Ordering::Relaxed);
                    first_error = Some(e);
                    break;
                }
                unpacked += 1;
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(missing.iter().any(|&m| m)),
        }
    })
}

/// Downloads layer `i` and, unless its snapshot exists, unpacks it from the same bytes
/// as they arrive. The snapshot is committed only when the tar matches the diffID; if
/// that streaming unpack fails for any reason, [`unpack_prefix`] unpacks the layer from
/// the store afterwards (and reports a real problem).
fn fetch_and_unpack(
    session: &Session<'_>,
    store: &Store,
    image: &ImageRecord,
    i: usize,
    digest: &Digest,
    chains: &[Digest],
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let total = image.layers[i].size();
    let on_progress = |done| progress.layer(digest, LayerStatus::Downloading { done, total });
    if store.has_snapshot(&chains[i]) {
        download_blob(session, store, digest, total, &on_progress, None)?;
    } else {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
        let diff_id = &image.config.rootfs.diff_ids[i];
        let parent = i.checked_sub(1).map(|p| chains[p].clone());
        std::thread::scope(|s| {
            let unpacker = s.spawn(move || {
                store.unpack_layer_from(ChannelReader::new(rx), digest, diff_id, &chains[i], parent)
            });
            let downloaded = download_blob(session, store, digest, total, &on_progress, Some(tx));
            // Its outcome only decides whether the layer is unpacked again later.
            let _ = unpacker.join();
            downloaded
        })?;
    }
    progress.layer(digest, LayerStatus::DownloadComplete);
    Ok(())
}

/// The receiving end of a [`download_blob`] tee, as a reader.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Unpacks layer `i` (the layers below are already unpacked).
fn unpack_prefix(
    store: &Store,
    image: &ImageRecord,
    i: usize,
    report: bool,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let mut prefix = image.clone();
    prefix.layers.truncate(i + 1);
    prefix.config.rootfs.diff_ids.truncate(i + 1);
    let digest = image.layer_digests()?.swap_remove(i);
    if report {
        progress.layer(&digest, LayerStatus::Extracting);
    }
    store.unpack(&prefix)?;
    if report {
        progress.layer(&digest, LayerStatus::PullComplete);
    }
    Ok(())
}

enum CopyError {
    Network(io::Error),
    TooLong,
    Write(io::Error),
}

/// Streams a blob into the store: staged in `tmp/`, resumed with `Range` after a broken
/// connection, committed only when `size` bytes hashing to `digest` are in.
///
/// With `tee`, every byte also goes to that channel as it arrives (a layer unpacking
/// while it downloads); the channel is dropped (its reader sees the end) when the
/// download finishes, or early if the download has to start over from zero.
pub fn download_blob(
    session: &Session<'_>,
    store: &Store,
    digest: &Digest,
    size: u64,
    on_progress: &(dyn Fn(u64) + Sync),
    mut tee: Option<SyncSender<Vec<u8>>>,
) -> Result<(), PullError> {
    let url = session.url(&format!("blobs/{digest}"));
    let retry = session.retry();
    let mut w = store.blob_writer()?;
    let mut failures = 0u32;
    let mut last_failure_at = 0u64;
    loop {
        let offset = w.written();
        let headers: Vec<(&str, String)> = if offset > 0 {
            vec![("Range", format!("bytes={offset}-"))]
        } else {
            Vec::new()
        };
        let response = session.send("GET", &url, &headers, &Payload::Empty)?;
        match response.status().as_u16() {
            200 if offset > 0 => {
                // The server ignored the Range: start again from zero.
                w = store.blob_writer()?;
                tee = None;
                on_progress(0);
            }
            200 => {}
            206 if offset > 0
                && content_range_start(header(&response, "content-range")) == Some(offset) => {}
            206 => {
                return Err(PullError::BadBlob {
                    digest: digest.clone(),
                    url,
                    reason: "the registry answered a range that was not asked for".into(),
                })
            }
            status => return Err(status_error("GET", url, status, response).into()),
        }
        let mut body = response.into_body().into_reader();
        let outcome: Result<(), io::Error> =
            match copy_limited(&mut body, &mut w, size, on_progress, &mut tee) {
                Ok(()) if w.written() == size => break,
                Ok(()) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the connection closed after {} of {size} bytes",
                        w.written()
                    ),
                )),
                Err(CopyError::Network(e)) => Err(e),
                Err(CopyError::TooLong) => {
                    return Err(PullError::BadBlob {
                        digest: digest.clone(),
                        url,
                        reason: format!("more than the {size} bytes the manifest gives"),
                    })
                }
                Err(CopyError::Write(source)) => {
                    return Err(StoreError::Io {
                        op: "write",
                        path: w.tmp_path().to_path_buf(),
                        source,
                    }
                    .into())
                }
            };
        if let Err(e) = outcome {
            // Only failures without progress since the last one count against the limit.
            if w.written() > last_failure_at {
                failures = 0;
            }
            last_failure_at = w.written();
            failures += 1;
            if failures >= retry.attempts {
                return Err(PullError::Download {
                    digest: digest.clone(),
                    url,
                    attempts: failures,
                    source: e,
                });
            }
            std::thread::sleep(retry.pause(failures + 1));
        }
    }
    commit_verified(w, digest, &url)
}

fn commit_verified(w: BlobWriter, digest: &Digest, url: &str) -> Result<(), PullError> {
    match w.commit(Some(digest)) {
        Ok(_) => Ok(()),
        Err(StoreError::Blob(BlobSinkError::DigestMismatch { actual, .. })) => {
            Err(PullError::BadBlob {
                digest: digest.clone(),
                url: url.to_string(),
                reason: format!("the content hashes to {actual}"),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `bytes START-END/TOTAL` → START.
fn content_range_start(v: Option<&str>) -> Option<u64> {
    let v = v?.trim().strip_prefix("bytes")?.trim();
    v.split('-').next()?.trim().parse().ok()
}

fn copy_limited(
    r: &mut dyn Read,
    w: &mut BlobWriter,
    size: u64,
    on_progress: &(dyn Fn(u64) + Sync),
    tee: &mut Option<SyncSender<Vec<u8>>>,
) -> Result<(), CopyError> {
    use std::io::Write as _;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Network(e)),
        };
        if w.written() + n as u64 > size {
            return Err(CopyError::TooLong);
        }
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        if tee
            .as_ref()
            .is_some_and(|t| t.send(buf[..n].to_vec()).is_err())
        {
            // The unpacker gave up; the layer is unpacked from the store later.
            *tee = None;
        }
        on_progress(w.written());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = PlatformSpec::parse("linux/arm/v7").expect("parses");
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            PlatformSpec::parse("linux/amd64").map(|p| p.to_string()),
            Some("linux/amd64".to_string())
        );
        for bad in ["linux", "linux/", "/amd64", "linux/arm/", "a/b/c/d"] {
            assert_eq!(PlatformSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_range() {
        assert_eq!(
            content_range_start(Some("bytes 200000-999/1000")),
            Some(200_000)
        );
        assert_eq!(content_range_start(Some("items 1-2/3")), None);
        assert_eq!(content_range_start(None), None);
    }
}
