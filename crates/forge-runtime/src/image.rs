//! The image a container runs: a store reference, or an `oci:DIR[:TAG]`
//! layout, `oci-archive:FILE[:TAG]` or `docker-archive:FILE[:TAG]` read into
//! the store's blobs and snapshots *without tagging it* (an unnamed image,
//! as `docker load` of an untagged archive; the container's config pins it
//! by id), with skopeo's transport names.

use std::path::Path;

use forge_oci::archive::read_archive_path;
use forge_store::{ImageRecord, Store};

use crate::error::{Result, RuntimeError};

/// Find (or read in) the image `name` names.
pub fn resolve_image(store: &Store, name: &str) -> Result<ImageRecord> {
    for transport in ["oci:", "oci-archive:", "docker-archive:"] {
        if let Some(rest) = name.strip_prefix(transport) {
            return read_in(store, name, rest);
        }
    }
    let resolved = store.resolve(name)?;
    Ok(resolved.image)
}

/// `PATH[:TAG]`: the tag is what follows the last `:` if it has no `/`
/// and `PATH` alone does not exist.
fn split_tag(rest: &str) -> (&str, Option<&str>) {
    if Path::new(rest).exists() {
        return (rest, None);
    }
    match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !tag.is_empty() => (path, Some(tag)),
        _ => (rest, None),
    }
}

fn read_in(store: &Store, name: &str, rest: &str) -> Result<ImageRecord> {
    let (path, tag) = split_tag(rest);
    let image_err = |reason: String| RuntimeError::Image {
        image: name.to_owned(),
        reason,
    };
    let _lease = store.lease()?;
    let mut sink = store.clone();
    let loaded =
        read_archive_path(Path::new(path), &mut sink).map_err(|e| image_err(e.to_string()))?;
    let chosen = match tag {
        None => loaded.images.first(),
        Some(t) => loaded.images.iter().find(|li| {
            li.names.iter().any(|n| {
                n == t
                    || n.rsplit_once(':').is_some_and(|(_, tag)| tag == t)
                    || forge_oci::Reference::parse(n)
                        .ok()
                        .and_then(|r| r.tag().map(|x| x == t))
                        .unwrap_or(false)
            })
        }),
    }
    .ok_or_else(|| {
        image_err(format!(
            "no image{} in {path}",
            tag.map(|t| format!(" tagged {t}")).unwrap_or_default()
        ))
    })?;
    let image = store.image_for(&chosen.manifest)?;
    store.unpack(&image)?;
    // Listed without a name (docker's dangling `<none>`), so that garbage
    // collection, which keeps what index.json reaches, keeps its blobs.
    store.add_image(&image.target, &[])?;
    Ok(image)
}
