//! Pushing an image from the store.
//!
//! Every blob (layers and config) is checked with `HEAD` first and skipped when the
//! registry has it; else mounted from another repository of the same registry the image
//! is also named in; else uploaded, several at once, straight from `blobs/` (the bytes
//! are the stored ones, so digests do not change): monolithic (`POST` then one `PUT`), or
//! in `PATCH` chunks for blobs larger than the chunk size. A failed upload starts again
//! with a new upload session. The manifest goes last, as stored, under the tag.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use forge_oci::image::Descriptor;
use forge_oci::{media_types, Digest, Reference};
use forge_store::{ImageRecord, Store, StoreError};

use crate::client::{header, percent_encode, status_error, Client, Payload, Session};
use crate::error::{PushError, RegistryError};
use crate::pull::{LayerStatus, Progress};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// Blobs larger than this go up in `PATCH` chunks of this size; `None`: always
    /// monolithic.
    pub chunk_size: Option<u64>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            jobs: 4,
            chunk_size: None,
        }
    }
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `tag`, or the digest for a push by digest.
    pub tag: String,
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest size.
    pub size: u64,
}

/// Pushes `image` to `dest` (`host/path:tag`).
pub fn push(
    client: &Client,
    store: &Store,
    image: &ImageRecord,
    dest: &Reference,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed, PushError> {
    let _lease = store.lease()?;
    let tag = match (dest.tag(), dest.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(PushError::NoTag(dest.familiar())),
    };
    let endpoint = client.endpoint(dest.domain())?;
    // Other names of the image on the same registry may hold its blobs already.
    let mut mount_from: Vec<String> = image
        .names
        .iter()
        .filter(|n| n.domain() == dest.domain() && n.path() != dest.path())
        .map(|n| n.path().to_string())
        .collect();
    mount_from.dedup();
    let session = client.session(&endpoint, dest.path(), "pull,push", &mount_from)?;

    let mut blobs: Vec<Descriptor> = image.layers.clone();
    blobs.push(image.config_descriptor.clone());
    let digests: Vec<Digest> = blobs
        .iter()
        .map(|d| {
            Digest::from_oci(d.digest()).map_err(|source| StoreError::Digest {
                what: format!("manifest {}", image.manifest.digest()),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    for d in &digests {
        progress.layer(d, LayerStatus::Preparing);
    }
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let first_error: Mutex<Option<PushError>> = Mutex::new(None);
    let jobs = opts.jobs.clamp(1, digests.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= digests.len() {
                    break;
                }
                let d = &digests[i];
                if let Err(e) = push_blob(&session, store, d, &mount_from, opts, progress) {
                    abort.store(true, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert(e);
                    break;
                }
            });
        }
    });
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }

    let manifest_digest =
        Digest::from_oci(image.manifest.digest()).map_err(|source| StoreError::Digest {
            what: "index.json".into(),
            source,
        })?;
    let bytes = store.read_blob(&manifest_digest, "manifest")?;
    let media_type = match image.manifest.media_type().to_string() {
        mt if media_types::is_manifest(&mt) => mt,
        _ => media_types::OCI_MANIFEST.to_string(),
    };
    let url = session.url(&format!("manifests/{tag}"));
    let response = session.send(
        "PUT",
        &url,
        &[("Content-Type", media_type)],
        &Payload::Bytes(&bytes),
    )?;
    match response.status().as_u16() {
        200..=299 => {}
        status => return Err(status_error("PUT", url, status, response).into()),
    }
    Ok(Pushed {
        tag,
        digest: manifest_digest,
        size: bytes.len() as u64,
    })
}

fn push_blob(
    session: &Session<'_>,
    store: &Store,
    digest: &Digest,
    mount_from: &[String],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<(), PushError> {
    let blob_url = session.url(&format!("blobs/{digest}"));
    let response = session.send("HEAD", &blob_url, &[], &Payload::Empty)?;
    if response.status().as_u16() == 200 {
        progress.layer(digest, LayerStatus::LayerAlreadyExists);
        return Ok(());
    }
    let path = store.blob_path(digest);
    let size = std::fs::metadata(&path)
        .map_err(|source| StoreError::Io {
            op: "stat",
            path: path.clone(),
            source,
        })?
        .len();
    let retry = session.retry();
    let mut attempt = 1;
    loop {
        match upload_once(session, digest, &path, size, mount_from, opts, progress) {
            Ok(()) => return Ok(()),
            Err(e) if attempt < retry.attempts && retryable(&e) => {
                attempt += 1;
                progress.layer(
                    digest,
                    LayerStatus::Retrying {
                        attempt,
                        reason: e.to_string(),
                    },
                );
                std::thread::sleep(retry.pause(attempt));
            }
            Err(e) => {
                return Err(PushError::Upload {
                    digest: digest.clone(),
                    url: session.url("blobs/uploads/"),
                    attempts: attempt,
                    reason: e.to_string(),
                })
            }
        }
    }
}

fn retryable(e: &PushError) -> bool {
    match e {
        PushError::Registry(RegistryError::Transport { .. }) | PushError::NoLocation { .. } => true,
        PushError::Registry(RegistryError::Status { status, .. }) => {
            // 400/404/416: the upload session went bad (a half-sent body); a new one helps.
            matches!(status, 400 | 404 | 416) || *status >= 500
        }
        _ => false,
    }
}

fn upload_once(
    session: &Session<'_>,
    digest: &Digest,
    path: &std::path::Path,
    size: u64,
    mount_from: &[String],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<(), PushError> {
    let mut location = None;
    for from in mount_from {
        let url = session.url(&format!(
            "blobs/uploads/?mount={digest}&from={}",
            percent_encode(from)
        ));
        let response = session.send("POST", &url, &[], &Payload::Empty)?;
        match response.status().as_u16() {
            201 => {
                progress.layer(digest, LayerStatus::Mounted { from: from.clone() });
                return Ok(());
            }
            202 => {
                // Not mountable: the registry opened an ordinary upload instead.
                location = header(&response, "location").map(|l| session.absolute(l));
                if location.is_some() {
                    break;
                }
            }
            _ => {}
        }
    }
    let mut location = match location {
        Some(l) => l,
        None => start_upload(session)?,
    };
    let sent = AtomicU64::new(0);
    let report = |n: u64| {
        let done = sent.fetch_add(n, Ordering::Relaxed) + n;
        progress.layer(digest, LayerStatus::Pushing { done, total: size });
    };
    let chunked = opts.chunk_size.filter(|&c| c > 0 && size > c);
    if let Some(chunk) = chunked {
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let response = session.send(
                "PATCH",
                &location,
                &[
                    ("Content-Type", "application/octet-stream".to_string()),
                    ("Content-Range", format!("{offset}-{}", offset + len - 1)),
                ],
                &Payload::File {
                    path,
                    offset,
                    len,
                    progress: &report,
                },
            )?;
            match response.status().as_u16() {
                202 => {}
                status => {
                    return Err(status_error("PATCH", location, status, response).into());
                }
            }
            location = next_location(session, &response, &location)?;
            offset += len;
        }
        let url = with_digest(&location, digest);
        finish(session, url, &Payload::Empty)?;
    } else {
        let url = with_digest(&location, digest);
        finish(
            session,
            url,
            &Payload::File {
                path,
                offset: 0,
                len: size,
                progress: &report,
            },
        )?;
    }
    progress.layer(digest, LayerStatus::Pushed);
    Ok(())
}

fn start_upload(session: &Session<'_>) -> Result<String, PushError> {
    let url = session.url("blobs/uploads/");
    let response = session.send("POST", &url, &[], &Payload::Empty)?;
    match response.status().as_u16() {
        202 => next_location(session, &response, &url),
        status => Err(status_error("POST", url, status, response).into()),
    }
}

fn next_location(
    session: &Session<'_>,
    response: &ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<String, PushError> {
    header(response, "location")
        .map(|l| session.absolute(l))
        .ok_or_else(|| PushError::NoLocation {
            url: url.to_string(),
        })
}

fn finish(session: &Session<'_>, url: String, payload: &Payload<'_>) -> Result<(), PushError> {
    let response = session.send(
        "PUT",
        &url,
        &[("Content-Type", "application/octet-stream".to_string())],
        payload,
    )?;
    match response.status().as_u16() {
        201 | 204 => Ok(()),
        status => Err(status_error("PUT", url, status, response).into()),
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", percent_encode(digest.as_str()))
}
