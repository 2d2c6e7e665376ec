//! `docker diff`: what a container changed in its image's filesystem, read
//! from its overlay upper dir against the image's snapshot chain.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use forge_oci::layer::OVERLAY_OPAQUE_XATTR;

use crate::error::{io_err, Result};

/// docker's change kinds, printed as `C`, `A` and `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute in the container: `/etc/passwd`.
    pub path: String,
}

/// overlayfs' whiteout: a 0/0 character device.
fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    xattr::get(dir, OVERLAY_OPAQUE_XATTR)
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
}

/// Whether `rel` exists in the merged view of `lowers` (top-most first):
/// the first layer holding it or a whiteout of it decides; an opaque
/// directory above it in a layer hides the layers below.
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for lower in lowers {
        if let Ok(m) = fs::symlink_metadata(lower.join(rel)) {
            return !is_whiteout(&m);
        }
        let mut hidden = false;
        let mut ancestor = rel.parent();
        while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
            let dir = lower.join(a);
            match fs::symlink_metadata(&dir) {
                Ok(m) if is_whiteout(&m) || !m.is_dir() => hidden = true,
                Ok(_) if is_opaque(&dir) => hidden = true,
                _ => {}
            }
            if hidden {
                break;
            }
            ancestor = a.parent();
        }
        if hidden {
            return false;
        }
    }
    false
}

/// Every change in `upper` against `lowers`, sorted by path (docker's order
/// is its map's). Every upper entry the image has is changed (`C`), even a
/// directory copied up only because something below it changed, as docker's
/// overlay2 driver reports; a whiteout is a deletion (`D`), the rest added.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(upper).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_owned();
            io_err("reading", path)(e.into())
        })?;
        let rel = entry
            .path()
            .strip_prefix(upper)
            .unwrap_or(entry.path())
            .to_owned();
        let m = entry
            .metadata()
            .map_err(|e| io_err("reading", entry.path())(e.into()))?;
        let path = format!("/{}", rel.display());
        let kind = if is_whiteout(&m) {
            ChangeKind::Deleted
        } else if in_lowers(lowers, &rel) {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        out.push(Change { kind, path });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
