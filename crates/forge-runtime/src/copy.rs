//! `docker cp`: files between a container and the host, or a tar stream.
//!
//! Both directions are one pipeline: the layer writer tars the source (one
//! path under the name it gets at the destination, or a directory's
//! contents) and the applier extracts it into the destination directory,
//! with its containment rules. Container paths are resolved inside the
//! container's root (`openat2(RESOLVE_IN_ROOT)`), so `..` and absolute
//! symlinks never leave it: the root is `/proc/PID/root` of a running
//! container (volumes included, writes seen at once), else a detached
//! overlay of its image and its upper dir.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use forge_oci::layer::{
    unpack_rootfs, ApplyError, ApplyMode, ApplyOptions, Compression, LayerOptions, LayerWriteError,
    LayerWriter,
};
use forge_sandbox::RootFsView;

use crate::config::MountConfig;
use crate::error::{Result, RuntimeError};
use crate::runtime::Runtime;

/// How `docker cp` treats links and owners.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-L`: copy what a symlink source points to, not the link.
    pub follow_link: bool,
    /// `-a`: keep the source's uid/gid; otherwise the files belong to the
    /// user copying (root), as docker's.
    pub archive: bool,
}

/// A `docker cp` path as written: where it points and what its spelling
/// asks for (`dir/.` = the directory's contents, `dir/` = must be one).
struct Spelled {
    path: PathBuf,
    contents: bool,
    must_be_dir: bool,
}

fn spelled(s: &str) -> Spelled {
    let contents = s.ends_with("/.") || s == ".";
    let trimmed = s.strip_suffix('.').filter(|_| contents).unwrap_or(s);
    let must_be_dir = trimmed.ends_with('/');
    let path = trimmed.trim_end_matches('/');
    Spelled {
        path: PathBuf::from(if path.is_empty() && s.starts_with('/') {
            "/"
        } else if path.is_empty() {
            "."
        } else {
            path
        }),
        contents,
        must_be_dir,
    }
}

/// A source ready to tar: `path` is read with lstat semantics.
struct Source {
    path: PathBuf,
    is_dir: bool,
    /// The name a copy gets inside an existing destination directory.
    base: String,
    contents: bool,
}

/// Where the tar is extracted, and under which name the source goes.
struct Target {
    dir: PathBuf,
    /// The destination as the user wrote it, for errors.
    shown: String,
    /// `None`: the source directory's contents go straight into `dir`.
    name: Option<String>,
}

fn cp_err(path: impl std::fmt::Display, reason: &str) -> RuntimeError {
    RuntimeError::Copy {
        path: path.to_string(),
        reason: reason.to_owned(),
    }
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn base_name(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// One side of the copy inside a container.
struct ContainerRoot {
    view: RootFsView,
    /// Descriptors the paths below go through; they must outlive the copy.
    held: Vec<OwnedFd>,
}

impl ContainerRoot {
    /// The parent directory of `p` resolved in the root, as a path usable
    /// from here, and `p`'s last component.
    /// A path without a last component (`/`) is its own "parent".
    fn parent_of(&mut self, p: &Path) -> Result<(PathBuf, Option<String>)> {
        let name = base_name(p).filter(|n| n != "." && n != "..");
        let dir = match name {
            Some(_) => p.parent().unwrap_or(Path::new("/")),
            None => p,
        };
        let fd = self.view.open_path(dir, true)?;
        let path = fd_path(&fd);
        self.held.push(fd);
        Ok((path, name))
    }

    /// `p` as a path from here, its last symlink followed (inside the
    /// root) when `follow`.
    fn resolve(&mut self, p: &Path, follow: bool) -> Result<PathBuf> {
        let mut p = p.to_path_buf();
        for _ in 0..40 {
            let (parent, name) = self.parent_of(&p)?;
            let Some(name) = name else {
                return Ok(parent);
            };
            let here = parent.join(&name);
            match fs::symlink_metadata(&here) {
                Ok(m) if follow && m.file_type().is_symlink() => {
                    let target = fs::read_link(&here).map_err(io_at(&p))?;
                    let logical = p.parent().unwrap_or(Path::new("/")).to_path_buf();
                    p = if target.is_absolute() {
                        target
                    } else {
                        logical.join(target)
                    };
                }
                _ => return Ok(here),
            }
        }
        Err(cp_err(p.display(), "too many levels of symbolic links"))
    }
}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        op: "copying",
        path: p.to_path_buf(),
        source,
    }
}

fn not_found(container: &str, p: &Path) -> RuntimeError {
    cp_err(
        format!("{container}:{}", p.display()),
        "No such container:path",
    )
}

/// The source: its metadata (of what `path` names, or of its target when
/// `follow`) decides what the destination rules do.
fn source_at(path: PathBuf, spelled: &Spelled, follow: bool, shown: &str) -> Result<Source> {
    let meta = if follow {
        fs::metadata(&path)
    } else {
        fs::symlink_metadata(&path)
    };
    let meta = meta.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => cp_err(shown, "no such file or directory"),
        _ => io_at(&path)(e),
    })?;
    if (spelled.must_be_dir || spelled.contents) && !meta.is_dir() {
        return Err(cp_err(shown, "not a directory"));
    }
    Ok(Source {
        base: base_name(&spelled.path).unwrap_or_else(|| "root".to_owned()),
        is_dir: meta.is_dir(),
        contents: spelled.contents || spelled.path == Path::new("/"),
        path,
    })
}

/// docker's destination rules, given whether the destination exists and
/// is a directory, and its parent directory when it does not.
fn target_for(
    src: &Source,
    dest_shown: &str,
    dest: &Spelled,
    existing: Option<(PathBuf, bool)>,
    parent: impl FnOnce() -> Result<(PathBuf, Option<String>)>,
) -> Result<Target> {
    match existing {
        Some((dir, true)) => Ok(Target {
            dir,
            shown: dest_shown.to_owned(),
            name: (!(src.is_dir && src.contents)).then(|| src.base.clone()),
        }),
        Some((_, false)) if src.is_dir => {
            Err(cp_err(dest_shown, "cannot copy a directory to a file"))
        }
        Some((_, false)) if dest.must_be_dir => Err(cp_err(dest_shown, "not a directory")),
        Some((_, false)) | None => {
            if existing.is_none() && dest.must_be_dir && !src.is_dir {
                return Err(cp_err(dest_shown, "no such directory"));
            }
            let (dir, name) = parent()?;
            let name = name.ok_or_else(|| cp_err(dest_shown, "no such directory"))?;
            match fs::metadata(&dir) {
                Ok(m) if m.is_dir() => Ok(Target {
                    dir,
                    shown: dest_shown.to_owned(),
                    name: Some(name),
                }),
                _ => Err(cp_err(dest_shown, "no such directory")),
            }
        }
    }
}

/// Extract the tar `r` into the directory `dir` with the applier's
/// containment rules; `.wh.` names are plain files.
fn extract<R: Read>(r: R, dir: &Path, opts: CopyOptions) -> Result<(), ApplyError> {
    let how = ApplyOptions {
        mode: ApplyMode::Extract,
        same_owner: Some(opts.archive),
    };
    unpack_rootfs(r, dir, &how).map(drop)
}

/// Tar `src` in a thread and extract it into `target` here.
fn pipe_copy(src: &Source, target: &Target, opts: CopyOptions) -> Result<()> {
    let (reader, writer) = io::pipe().map_err(io_at(&src.path))?;
    std::thread::scope(|s| {
        // The writer end is dropped when the tar is done: the applier's EOF.
        let producer = s.spawn(move || write_tar(src, target.name.as_deref(), writer).map(drop));
        let applied = extract(reader, &target.dir, opts);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(cp_err(src.path.display(), "the archive writer panicked")));
        let applied = applied.map_err(|e| cp_err(&target.shown, &e.to_string()));
        // The side that failed first tells why: a writer cut off by the
        // pipe only says the extraction stopped, an extraction cut short
        // only says the archive ended.
        match (produced, applied) {
            (Err(RuntimeError::Archive(LayerWriteError::Write(_))), Err(e)) => Err(e),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    })
}

fn write_tar<W: Write>(src: &Source, name: Option<&str>, w: W) -> Result<W> {
    let mut lw = LayerWriter::new(w, LayerOptions::with_compression(Compression::None))?;
    match name {
        Some(name) => lw.append_as(&src.path, name)?,
        None => lw.append_tree(&src.path)?,
    }
    Ok(lw.finish()?.0)
}

impl Runtime {
    /// The root to copy `abs` through, and `abs` within it: the live root
    /// of a running container (its volumes mounted in it); for a stopped
    /// one the volume or bind mount holding `abs`, else its image plus its
    /// upper dir (`writable`: mounted with it, for `cp` into the container).
    fn copy_root(&self, id: &str, abs: &Path, writable: bool) -> Result<(ContainerRoot, PathBuf)> {
        let c = self.get(id)?;
        if writable && c.config.read_only {
            return Err(cp_err(
                &c.config.name,
                "container rootfs is marked read-only",
            ));
        }
        let held = Vec::new();
        if let Some(pid) = c.state.pid.filter(|_| c.state.status.is_live()) {
            let view = RootFsView::of_process(pid.pid)?;
            return Ok((ContainerRoot { view, held }, abs.to_path_buf()));
        }
        let mounted = c
            .config
            .mounts
            .iter()
            .filter_map(|m| match m {
                MountConfig::Bind {
                    source,
                    target,
                    readonly,
                } => Some((PathBuf::from(source), target, *readonly)),
                MountConfig::Volume {
                    name,
                    target,
                    readonly,
                    ..
                } => Some((self.volumes().get(name).ok()?.mountpoint, target, *readonly)),
                MountConfig::Tmpfs { .. } => None,
            })
            .filter_map(|(dir, target, ro)| Some((dir, abs.strip_prefix(target).ok()?, ro)))
            .min_by_key(|(_, rest, _)| rest.components().count());
        if let Some((dir, rest, readonly)) = mounted {
            if writable && readonly {
                return Err(cp_err(abs.display(), "mounted volume is marked read-only"));
            }
            let view = RootFsView::open(&forge_sandbox::RootFs::Bind {
                path: dir,
                readonly,
            })?;
            return Ok((ContainerRoot { view, held }, Path::new("/").join(rest)));
        }
        let view = if writable {
            let paths = self.paths(id);
            fs::create_dir_all(paths.work()).map_err(io_at(&paths.work()))?;
            RootFsView::open_writable(
                &self.image_lowerdirs(&c.config)?,
                &paths.upper(),
                &paths.work(),
            )?
        } else {
            self.merged_view(&c.config)?
        };
        Ok((ContainerRoot { view, held }, abs.to_path_buf()))
    }

    /// The container path `src` to tar, and the root its path goes through.
    fn container_source(
        &self,
        id: &str,
        name: &str,
        src: &str,
        opts: CopyOptions,
    ) -> Result<(ContainerRoot, Source)> {
        let sp = spelled(src);
        let shown = Path::new("/").join(&sp.path);
        let (mut root, abs) = self.copy_root(id, &shown, false)?;
        // `dir/` and `dir/.` name the directory a link points to, as `-L` does.
        let follow = opts.follow_link || sp.must_be_dir || sp.contents;
        let path = match root.resolve(&abs, follow) {
            Ok(p) => p,
            Err(RuntimeError::Sandbox(_)) => return Err(not_found(name, &shown)),
            Err(e) => return Err(e),
        };
        if fs::symlink_metadata(&path).is_err() {
            return Err(not_found(name, &shown));
        }
        // Only a root itself is reached through a link (its descriptor's);
        // anything else is looked at, never followed, here.
        let is_root = abs == Path::new("/");
        let source = source_at(path, &sp, is_root, &format!("{name}:{src}"))?;
        Ok((root, source))
    }

    /// `docker cp CONTAINER:SRC -`: a tar of SRC into `w`.
    pub fn copy_out_tar<W: Write>(
        &self,
        id: &str,
        name: &str,
        src: &str,
        opts: CopyOptions,
        w: W,
    ) -> Result<W> {
        let (_root, source) = self.container_source(id, name, src, opts)?;
        write_tar(
            &source,
            (!source.contents).then_some(source.base.as_str()),
            w,
        )
    }

    /// `docker cp CONTAINER:SRC DEST`: to a host path.
    pub fn copy_out(
        &self,
        id: &str,
        name: &str,
        src: &str,
        dest: &Path,
        opts: CopyOptions,
    ) -> Result<()> {
        let (_root, source) = self.container_source(id, name, src, opts)?;
        let dest_str = dest.to_string_lossy().into_owned();
        let sp = spelled(&dest_str);
        let existing = fs::metadata(&sp.path)
            .ok()
            .map(|m| (sp.path.clone(), m.is_dir()));
        let target = target_for(&source, &dest_str, &sp, existing, || {
            let parent = sp.path.parent().filter(|p| !p.as_os_str().is_empty());
            Ok((
                parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                base_name(&sp.path),
            ))
        })?;
        pipe_copy(&source, &target, opts)
    }

    /// `docker cp SRC CONTAINER:DEST`: from a host path.
    pub fn copy_in(
        &self,
        id: &str,
        name: &str,
        src: &Path,
        dest: &str,
        opts: CopyOptions,
    ) -> Result<()> {
        let src_str = src.to_string_lossy().into_owned();
        let sp = spelled(&src_str);
        let follow = opts.follow_link || sp.must_be_dir || sp.contents;
        let source = source_at(sp.path.clone(), &sp, follow, &src_str)?;
        let _guard = self.lock(id)?;
        let dsp = spelled(dest);
        let (mut root, abs) = self.copy_root(id, &Path::new("/").join(&dsp.path), true)?;
        let shown = format!("{name}:{dest}");
        let existing = match root.resolve(&abs, true) {
            Ok(p) => fs::metadata(&p).ok().map(|m| (p, m.is_dir())),
            Err(_) => None,
        };
        let target = target_for(&source, &shown, &dsp, existing, || {
            root.parent_of(&abs)
                .map_err(|_| cp_err(&shown, "no such directory"))
        })?;
        pipe_copy(&source, &target, opts)
    }

    /// `docker cp - CONTAINER:DEST`: extract a tar read from `r` into the
    /// directory DEST.
    pub fn copy_in_tar<R: Read>(
        &self,
        id: &str,
        name: &str,
        r: R,
        dest: &str,
        opts: CopyOptions,
    ) -> Result<()> {
        let _guard = self.lock(id)?;
        let (mut root, abs) = self.copy_root(id, &Path::new("/").join(spelled(dest).path), true)?;
        let shown = format!("{name}:{dest}");
        let dir = root
            .resolve(&abs, true)
            .map_err(|_| cp_err(&shown, "no such directory"))?;
        if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(cp_err(&shown, "not a directory"));
        }
        extract(r, &dir, opts).map_err(|e| cp_err(&shown, &e.to_string()))
    }
}
