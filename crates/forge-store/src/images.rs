//! Images: `index.json` entries grouped by manifest, their names, and lookup by name or id.
//!
//! `index.json` holds one descriptor per (name, manifest): the annotation
//! `org.opencontainers.image.ref.name` carries docker's familiar name (`app:1.0`,
//! `localhost:5000/a/b:t`), so `skopeo inspect oci:$FORGE_ROOT:app:1.0` and umoci find it,
//! and `io.containerd.image.name` the fully normalised one (`docker.io/library/app:1.0`),
//! which is what forge matches on. An image without names (imported or loaded untagged, or
//! whose last name moved to another image) keeps one descriptor without annotations, so it
//! stays listed (docker's `<none>:<none>` dangling image) until removed or pruned.
//!
//! An image's id is its config's digest, as docker's. A descriptor may point at an image
//! index (a multi-platform image); the image is then the manifest for this host's platform,
//! or the first one present.

use std::collections::{BTreeMap, HashMap};

use forge_oci::image::{
    Descriptor, ImageIndex, ImageManifest, ANNOTATION_CONTAINERD_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use forge_oci::{media_types, Digest, ImageConfig, Reference};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// One image: a manifest, its config and the names pointing at it.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// What `index.json` points at (a manifest, or an index for multi-platform images),
    /// without annotations.
    pub target: Descriptor,
    /// The image manifest (the same as `target` unless that is an index).
    pub manifest: Descriptor,
    /// The config digest: the image id.
    pub id: Digest,
    /// The config's descriptor.
    pub config_descriptor: Descriptor,
    /// The parsed config.
    pub config: ImageConfig,
    /// The layer descriptors, base first.
    pub layers: Vec<Descriptor>,
    /// Names, in `index.json` order.
    pub names: Vec<Reference>,
}

impl ImageRecord {
    /// The digest of what `index.json` points at (docker's `RepoDigests` digest).
    pub fn target_digest(&self) -> Digest {
        descriptor_digest(&self.target).unwrap_or_else(|_| self.id.clone())
    }

    /// The layer blob digests, base first.
    pub fn layer_digests(&self) -> Result<Vec<Digest>> {
        self.layers
            .iter()
            .map(|l| {
                Digest::from_oci(l.digest()).map_err(|source| StoreError::Digest {
                    what: format!("manifest {}", self.manifest.digest()),
                    source,
                })
            })
            .collect()
    }

    /// The `created` timestamp as Unix seconds, if the config has a parseable one.
    pub fn created_unix(&self) -> Option<i64> {
        self.config.created.as_deref().and_then(parse_rfc3339)
    }
}

/// The name an `index.json` descriptor carries: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name`, when it parses as a reference.
pub fn entry_name(d: &Descriptor) -> Option<Reference> {
    let ann = d.annotations().as_ref()?;
    if let Some(r) = ann
        .get(ANNOTATION_CONTAINERD_IMAGE_NAME)
        .and_then(|n| Reference::parse(n).ok())
    {
        return Some(r);
    }
    ann.get(ANNOTATION_REF_NAME)
        .and_then(|n| Reference::parse(n).ok())
}

/// The `index.json` descriptor for `target` named `name`.
pub fn named_entry(target: &Descriptor, name: &Reference) -> Descriptor {
    let mut d = bare(target);
    let mut ann = std::collections::HashMap::new();
    ann.insert(ANNOTATION_REF_NAME.to_string(), name.familiar());
    ann.insert(
        ANNOTATION_CONTAINERD_IMAGE_NAME.to_string(),
        name.to_string(),
    );
    d.set_annotations(Some(ann));
    d
}

/// `d` without annotations.
pub fn bare(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    d.set_annotations(None);
    d
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::from_oci(d.digest()).map_err(|source| StoreError::Digest {
        what: "index.json".into(),
        source,
    })
}

/// Whether two descriptors point at the same blob.
fn same_target(a: &Descriptor, b: &Descriptor) -> bool {
    a.digest() == b.digest()
}

/// An `index.json` entry that could not be read as an image.
#[derive(Debug)]
pub struct BrokenEntry {
    /// The entry.
    pub descriptor: Descriptor,
    /// Its name, if any.
    pub name: Option<Reference>,
    /// Why.
    pub error: StoreError,
}

/// Every image, plus entries that could not be read.
#[derive(Debug, Default)]
pub struct ImageList {
    /// Readable images, in `index.json` order of their first entry.
    pub images: Vec<ImageRecord>,
    /// Entries whose blobs are missing or corrupt.
    pub broken: Vec<BrokenEntry>,
}

/// How a lookup string matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// By a name (the normalised reference).
    Name(Reference),
    /// By full or short id.
    Id,
    /// By `name@digest` (the image is the one with that manifest digest).
    Digest(Reference),
}

/// The result of [`Store::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The image.
    pub image: ImageRecord,
    /// How it matched.
    pub matched: Matched,
}

/// What [`Store::add_image`] and [`Store::tag`] did to other images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retagged {
    /// The name that moved.
    pub name: Reference,
    /// The manifest (or index) it was taken from.
    pub previous: Digest,
    /// That image's id, when its blobs are readable.
    pub previous_id: Option<Digest>,
    /// Whether that image is now untagged (dangling).
    pub previous_dangling: bool,
}

/// The platform we run on, in GOARCH terms.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl Store {
    /// Reads the image `target` points at.
    pub fn image_for(&self, target: &Descriptor) -> Result<ImageRecord> {
        let top = bare(target);
        let td = descriptor_digest(&top)?;
        let mt = top.media_type().to_string();
        let manifest = if media_types::is_index(&mt) {
            let bytes = self.read_blob(&td, "image index")?;
            let idx: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                    what: "image index",
                    digest: td.clone(),
                    source,
                })?;
            pick_platform(self, &idx).ok_or(StoreError::EmptyIndex(td.clone()))?
        } else if media_types::is_manifest(&mt) {
            top.clone()
        } else {
            return Err(StoreError::NotAnImage {
                digest: td,
                media_type: mt,
            });
        };
        let md = descriptor_digest(&manifest)?;
        let bytes = self.read_blob(&md, "manifest")?;
        let m: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: "manifest",
                digest: md.clone(),
                source,
            })?;
        let cd = Digest::from_oci(m.config().digest()).map_err(|source| StoreError::Digest {
            what: format!("manifest {md}"),
            source,
        })?;
        let cbytes = self.read_blob(&cd, "config")?;
        let config = ImageConfig::from_json(&cbytes).map_err(|source| StoreError::Json {
            what: "config",
            digest: cd.clone(),
            source,
        })?;
        Ok(ImageRecord {
            target: top,
            manifest: bare(&manifest),
            id: cd,
            config_descriptor: m.config().clone(),
            config,
            layers: m.layers().clone(),
            names: Vec::new(),
        })
    }

    /// Every image in the store, grouped by what `index.json` points at.
    pub fn images(&self) -> Result<ImageList> {
        let index = self.read_index()?;
        let mut out = ImageList::default();
        let mut by_target: HashMap<String, usize> = HashMap::new();
        let mut broken_targets: HashMap<String, ()> = HashMap::new();
        for d in index.manifests() {
            let key = d.digest().to_string();
            let name = entry_name(d);
            if let Some(&i) = by_target.get(&key) {
                if let Some(n) = name {
                    if !out.images[i].names.contains(&n) {
                        out.images[i].names.push(n);
                    }
                }
                continue;
            }
            if broken_targets.contains_key(&key) {
                out.broken.push(BrokenEntry {
                    descriptor: d.clone(),
                    name,
                    error: StoreError::NoSuchImage(key),
                });
                continue;
            }
            match self.image_for(d) {
                Ok(mut img) => {
                    img.names.extend(name);
                    by_target.insert(key, out.images.len());
                    out.images.push(img);
                }
                Err(error) => {
                    broken_targets.insert(key, ());
                    out.broken.push(BrokenEntry {
                        descriptor: d.clone(),
                        name,
                        error,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Finds an image as docker does: by name (`app`, `app:1.0`, `host/a/b:t`,
    /// `app@sha256:…`), by full id (`sha256:<64 hex>` or the bare 64 hex), or by a unique
    /// id prefix (`3f57d9401f8d`, `sha256:3f57`). A string that is both a valid name and
    /// a hex prefix is tried as a name first.
    pub fn resolve(&self, s: &str) -> Result<Resolved> {
        let list = self.images()?;
        resolve_in(&list.images, s)
    }

    /// Adds (or re-points) names for `target`, all under one index lock. With no names,
    /// makes sure the image is listed (an unnamed entry) unless it already has a name.
    /// Returns the names taken from other images.
    pub fn add_image(&self, target: &Descriptor, names: &[Reference]) -> Result<Vec<Retagged>> {
        let target = bare(target);
        self.update_index(|entries| {
            let mut moved = Vec::new();
            for name in names {
                if let Some(m) = set_name(entries, &target, name) {
                    moved.push(m);
                }
            }
            if names.is_empty() && !entries.iter().any(|e| same_target(e, &target)) {
                entries.push(target.clone());
            }
            Ok(moved)
        })
        .map(|moved| self.with_ids(moved))
    }

    /// Fills in the ids of the images names were taken from.
    fn with_ids(&self, mut moved: Vec<Retagged>) -> Vec<Retagged> {
        if moved.is_empty() {
            return moved;
        }
        if let Ok(index) = self.read_index() {
            for m in &mut moved {
                m.previous_id = index
                    .manifests()
                    .iter()
                    .find(|d| d.digest().as_ref() == m.previous.as_str())
                    .and_then(|d| self.image_for(d).ok())
                    .map(|i| i.id);
            }
        }
        moved
    }

    /// Points `name` at `image` (docker tag). The image that had the name keeps its other
    /// names, or becomes dangling.
    pub fn tag(&self, image: &ImageRecord, name: &Reference) -> Result<Option<Retagged>> {
        let target = image.target.clone();
        let name = name.clone();
        let moved = self.update_index(move |entries| Ok(set_name(entries, &target, &name)))?;
        Ok(self.with_ids(moved.into_iter().collect()).pop())
    }

    /// Removes `name`. Returns the target it pointed at and whether that target has no
    /// entry left (so the image is gone from the index), or `None` if no image had it.
    pub fn untag(&self, name: &Reference) -> Result<Option<(Digest, bool)>> {
        self.update_index(|entries| {
            let Some(pos) = entries
                .iter()
                .position(|e| entry_name(e).as_ref() == Some(name))
            else {
                return Ok(None);
            };
            let removed = entries.remove(pos);
            let gone = !entries.iter().any(|e| same_target(e, &removed));
            Ok(Some((descriptor_digest(&removed)?, gone)))
        })
    }

    /// Removes every entry pointing at `target` (the image leaves the index; its blobs go
    /// at the next garbage collection). Returns the names it had.
    pub fn remove_image(&self, target: &Digest) -> Result<Vec<Reference>> {
        self.update_index(|entries| {
            let mut names = Vec::new();
            entries.retain(|e| {
                if e.digest().as_ref() == target.as_str() {
                    names.extend(entry_name(e));
                    false
                } else {
                    true
                }
            });
            Ok(names)
        })
    }
}

/// Sets `name` → `target` in `entries`; returns what it took the name from.
fn set_name(
    entries: &mut Vec<Descriptor>,
    target: &Descriptor,
    name: &Reference,
) -> Option<Retagged> {
    let mut moved = None;
    if let Some(pos) = entries
        .iter()
        .position(|e| entry_name(e).as_ref() == Some(name))
    {
        if same_target(&entries[pos], target) {
            // Already there; refresh the annotations (e.g. an entry written by a peer
            // with only ref.name).
            entries[pos] = named_entry(target, name);
            return None;
        }
        let old = entries.remove(pos);
        let dangling = !entries.iter().any(|e| same_target(e, &old));
        if dangling {
            entries.push(bare(&old));
        }
        moved = descriptor_digest(&old).ok().map(|previous| Retagged {
            name: name.clone(),
            previous,
            previous_id: None,
            previous_dangling: dangling,
        });
    }
    // A named entry replaces the unnamed one.
    entries.retain(|e| !(same_target(e, target) && e.annotations().is_none()));
    entries.push(named_entry(target, name));
    moved
}

/// The manifest of `idx` for this host (linux and our architecture), else the first whose
/// blob is present.
fn pick_platform(store: &Store, idx: &ImageIndex) -> Option<Descriptor> {
    let present: Vec<&Descriptor> = idx
        .manifests()
        .iter()
        .filter(|m| media_types::is_manifest(m.media_type().as_ref()))
        .filter(|m| {
            Digest::from_oci(m.digest())
                .map(|d| store.has_blob(&d))
                .unwrap_or(false)
        })
        .collect();
    present
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == host_architecture()
            })
        })
        .or_else(|| present.first())
        .map(|d| (*d).clone())
}

/// [`Store::resolve`] over a list already read.
pub fn resolve_in(images: &[ImageRecord], s: &str) -> Result<Resolved> {
    let not_found = || StoreError::NoSuchImage(s.to_string());
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let is_hex = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    // Full ids first: they cannot be names.
    if is_hex && hex.len() == 64 {
        return images
            .iter()
            .find(|i| i.id.hex() == hex)
            .map(|i| Resolved {
                image: i.clone(),
                matched: Matched::Id,
            })
            .ok_or_else(not_found);
    }
    if !s.starts_with("sha256:") {
        if let Ok(r) = Reference::parse(s) {
            if let Some(d) = r.digest() {
                let repo = r.repository();
                if let Some(i) = images.iter().find(|i| {
                    (i.target.digest().as_ref() == d.as_str()
                        || i.manifest.digest().as_ref() == d.as_str())
                        && (i.names.iter().any(|n| n.repository() == repo) || r.tag().is_none())
                }) {
                    return Ok(Resolved {
                        image: i.clone(),
                        matched: Matched::Digest(r),
                    });
                }
            } else if let Some(i) = images.iter().find(|i| i.names.contains(&r)) {
                return Ok(Resolved {
                    image: i.clone(),
                    matched: Matched::Name(r),
                });
            }
        }
    }
    if is_hex {
        let mut ids: BTreeMap<&str, &ImageRecord> = BTreeMap::new();
        for i in images.iter().filter(|i| i.id.hex().starts_with(hex)) {
            ids.entry(i.id.as_str()).or_insert(i);
        }
        return match ids.len() {
            0 => Err(not_found()),
            1 => {
                let (_, i) = ids.into_iter().next().ok_or_else(not_found)?;
                Ok(Resolved {
                    image: i.clone(),
                    matched: Matched::Id,
                })
            }
            count => Err(StoreError::AmbiguousId {
                prefix: s.to_string(),
                count,
            }),
        };
    }
    Err(not_found())
}

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05.123Z`, `…+02:00`) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        rest = &frac[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from civil (Howard Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for t in [0i64, 1_700_000_000, 951_782_400, 1_234_567_890] {
            let s = forge_oci::image::rfc3339_utc(t);
            assert_eq!(parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
