//! Volumes: `volumes/<name>/_data` (what containers mount) and
//! `volumes/<name>/meta.json`, as docker's local driver lays them out.
//! They outlive containers; an anonymous one (image `VOLUME`, `-v /path`)
//! is named by a random id and removed with `rm -v` or `run --rm`.
//!
//! A volume is created by renaming a complete staging directory into
//! place, so concurrent creators of one name agree on a single volume.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result, RuntimeError};
use crate::names::valid_name;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeMeta {
    pub name: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub anonymous: bool,
}

/// A volume as `volume inspect` shows it.
#[derive(Debug, Clone)]
pub struct Volume {
    pub meta: VolumeMeta,
    pub mountpoint: PathBuf,
}

/// The volumes directory of a store.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn new(dir: PathBuf) -> Volumes {
        Volumes { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Create `name` unless it exists; returns it and whether it is new.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool)> {
        if !valid_name(name) {
            return Err(RuntimeError::InvalidVolumeName(name.to_owned()));
        }
        if let Ok(v) = self.get(name) {
            return Ok((v, false));
        }
        fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let staging = self.dir.join(format!(".new-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let data = staging.join("_data");
        fs::create_dir_all(&data).map_err(io_err("creating", &data))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &data))?;
        let meta = VolumeMeta {
            name: name.to_owned(),
            created_at: forge_store::import::now_rfc3339(),
            labels,
            anonymous,
        };
        let bytes = serde_json::to_vec_pretty(&meta).map_err(|source| RuntimeError::Json {
            what: "writing",
            path: staging.join("meta.json"),
            source,
        })?;
        fs::write(staging.join("meta.json"), bytes)
            .map_err(io_err("writing", staging.join("meta.json")))?;
        let dest = self.path(name);
        match fs::rename(&staging, &dest) {
            Ok(()) => Ok((self.get(name)?, true)),
            // Someone else created it meanwhile: theirs wins.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTEMPTY)
                    || e.raw_os_error() == Some(libc::EEXIST) =>
            {
                let _ = fs::remove_dir_all(&staging);
                Ok((self.get(name)?, false))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                Err(io_err("creating", &dest)(e))
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(RuntimeError::NoSuchVolume(name.to_owned()));
        }
        let dir = self.path(name);
        let meta_path = dir.join("meta.json");
        let bytes = match fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RuntimeError::NoSuchVolume(name.to_owned()))
            }
            Err(e) => return Err(io_err("reading", &meta_path)(e)),
        };
        let meta: VolumeMeta =
            serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
                what: "reading",
                path: meta_path,
                source,
            })?;
        Ok(Volume {
            meta,
            mountpoint: dir.join("_data"),
        })
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("reading", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io_err("reading", &self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(v) = self.get(&name) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        Ok(out)
    }

    /// Remove `name` (the caller has checked no container uses it). The
    /// directory is renamed aside first, so a half-removed volume never
    /// shows under its name.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let dir = self.path(name);
        let doomed = self
            .dir
            .join(format!(".removing-{name}-{}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(io_err("removing", &dir))?;
        forge_store::snapshot::remove_tree(&doomed).map_err(io_err("removing", &doomed))
    }
}

/// Seed a new, empty volume with what the image has at the mount point,
/// as docker does: `src` is that directory seen through the image's
/// read-only root. Ownership, modes, symlinks and hard-link-free regular
/// files are copied; special files are skipped.
pub fn seed(src: &Path, dest: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(src) {
        Ok(m) if m.is_dir() => m,
        _ => return Ok(()),
    };
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", dest))?;
    copy_tree(src, dest)
}

fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    for e in fs::read_dir(src).map_err(io_err("reading", src))? {
        let e = e.map_err(io_err("reading", src))?;
        let from = e.path();
        let to = dest.join(e.file_name());
        let m = fs::symlink_metadata(&from).map_err(io_err("stat", &from))?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(io_err("creating", &to))?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from).map_err(io_err("readlink", &from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io_err("symlink", &to))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(io_err("copying", &from))?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))
            .map_err(io_err("chown", &to))?;
        if !ft.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(io_err("chmod", &to))?;
        }
    }
    Ok(())
}
