//! Overlay rootfs, mounted *detached*: the result is a mount descriptor
//! that belongs to no mount namespace, so nothing shows in any mountinfo,
//! and if forge dies the descriptor closes and the mount is gone. Pid 1
//! attaches it inside its own namespace with `move_mount(2)`.
//!
//! Two ways to build it:
//!
//! - The new mount API (Linux ≥ 6.8 for `lowerdir+`): `fsopen("overlay")`,
//!   one `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", dir)` per layer,
//!   `FSCONFIG_CMD_CREATE`, `fsmount`. Each value is limited to 255 bytes
//!   (`strndup_user(_value, 256)`), but their number is not: images of
//!   hundreds of layers mount.
//! - Fallback when `lowerdir+` is unknown: the classic option string
//!   `lowerdir=a:b:c,…`, limited to one page, mounted by `mount(2)` in a
//!   short-lived thread that has unshared its mount namespace, then cloned
//!   out detached with `open_tree(OPEN_TREE_CLONE)`. (`fsconfig` cannot take
//!   the string: 255 bytes hold two or three store paths.)
//!
//! Options as docker's overlay2 driver, so the upper dir stays a plain,
//! self-contained diff: `index=off`, `redirect_dir=off`, `metacopy=off`
//! (no renamed directories or metadata-only copies pointing into lower
//! layers) and `xino=off`.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::SandboxError;
use crate::sys;

/// The layers of one overlay mount.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layers<'a> {
    /// Top-most first.
    pub lower: &'a [PathBuf],
    pub upper: Option<&'a Path>,
    pub work: Option<&'a Path>,
    /// Mount the upper dir `volatile` (see [`SandboxSpec::volatile_upper`](crate::SandboxSpec::volatile_upper)).
    pub volatile: bool,
}

const FIXED_OPTIONS: [(&CStr, &CStr); 4] = [
    (c"index", c"off"),
    (c"redirect_dir", c"off"),
    (c"metacopy", c"off"),
    (c"xino", c"off"),
];

/// How to build it; `Auto` tries the new API and falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Auto,
    #[allow(dead_code)] // forced by tests of the fallback
    OptionString,
}

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SandboxError::InvalidSpec {
        what: "overlay layer path",
        reason: format!("{} contains a NUL byte", p.display()),
    })
}

fn overlay_err(step: &str, layers: &Layers<'_>, source: Errno) -> SandboxError {
    SandboxError::Overlay {
        step: step.to_owned(),
        layers: layers.lower.len(),
        source,
    }
}

/// Mount the overlay detached; `scratch` is an empty directory the
/// fallback may mount on inside its private namespace.
pub(crate) fn mount_detached(
    layers: &Layers<'_>,
    method: Method,
    scratch: &Path,
) -> Result<OwnedFd, SandboxError> {
    if layers.lower.is_empty() {
        return Err(SandboxError::InvalidSpec {
            what: "rootfs",
            reason: "an overlay needs at least one lower dir".to_owned(),
        });
    }
    if layers.upper.is_some() != layers.work.is_some() {
        return Err(SandboxError::InvalidSpec {
            what: "rootfs",
            reason: "an overlay's upperdir and workdir go together".to_owned(),
        });
    }
    if method == Method::Auto {
        // None: lowerdir+ unknown (Linux < 6.8), use the option string.
        if let Some(fd) = with_fsconfig(layers)? {
            return Ok(fd);
        }
    }
    with_option_string(layers, scratch)
}

/// `Ok(None)` when the kernel does not know `lowerdir+`.
fn with_fsconfig(layers: &Layers<'_>) -> Result<Option<OwnedFd>, SandboxError> {
    let fs = sys::fsopen(c"overlay").map_err(|e| overlay_err("fsopen(\"overlay\")", layers, e))?;
    for (i, dir) in layers.lower.iter().enumerate() {
        let c = cpath(dir)?;
        match sys::fsconfig_string(fs.as_fd(), c"lowerdir+", &c) {
            Ok(()) => {}
            Err(Errno::EINVAL) if i == 0 => {
                // EINVAL on the first layer: either "lowerdir+" is unknown
                // (kernel < 6.8) or this path is unusable. Decide by a
                // key every overlay knows taking the same path.
                let probe = sys::fsopen(c"overlay")
                    .map_err(|e| overlay_err("fsopen(\"overlay\")", layers, e))?;
                if dir.as_os_str().len() < 256
                    && sys::fsconfig_string(probe.as_fd(), c"lowerdir", &c).is_ok()
                {
                    return Ok(None);
                }
                return Err(overlay_err(
                    &format!("lowerdir+ {}", dir.display()),
                    layers,
                    Errno::EINVAL,
                ));
            }
            Err(e) => {
                return Err(overlay_err(
                    &format!("lowerdir+ {}", dir.display()),
                    layers,
                    e,
                ));
            }
        }
    }
    if let (Some(upper), Some(work)) = (layers.upper, layers.work) {
        sys::fsconfig_string(fs.as_fd(), c"upperdir", &cpath(upper)?)
            .map_err(|e| overlay_err(&format!("upperdir {}", upper.display()), layers, e))?;
        clear_volatile_marker(work);
        sys::fsconfig_string(fs.as_fd(), c"workdir", &cpath(work)?)
            .map_err(|e| overlay_err(&format!("workdir {}", work.display()), layers, e))?;
        // volatile: releasing the overlay does not sync the upper filesystem
        // (which costs tens of ms on a busy disk, for every step), for callers
        // that sync the upper dir themselves.
        if layers.volatile {
            sys::fsconfig_flag(fs.as_fd(), c"volatile")
                .map_err(|e| overlay_err("volatile", layers, e))?;
        }
    }
    for (key, value) in FIXED_OPTIONS {
        sys::fsconfig_string(fs.as_fd(), key, value).map_err(|e| {
            overlay_err(
                &format!("{}={}", key.to_string_lossy(), value.to_string_lossy()),
                layers,
                e,
            )
        })?;
    }
    sys::fsconfig_create(fs.as_fd())
        .map_err(|e| overlay_err("creating the superblock", layers, e))?;
    let mnt = sys::fsmount(fs.as_fd(), 0).map_err(|e| overlay_err("fsmount", layers, e))?;
    Ok(Some(mnt))
}

/// A volatile overlay leaves `work/work/incompat/volatile` behind, and the
/// kernel refuses to mount the same upper and work dirs again while it is
/// there (overlayfs.rst, "Volatile mount"); remove it, as podman does.
fn clear_volatile_marker(work: &Path) {
    let _ = std::fs::remove_dir_all(work.join("work").join("incompat").join("volatile"));
}

/// Escape `\`, `:` and `,` in a path for the option string.
fn escape(path: &Path, out: &mut Vec<u8>) {
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The classic `mount(2)` data string.
pub(crate) fn option_string(layers: &Layers<'_>) -> Vec<u8> {
    let mut s = b"lowerdir=".to_vec();
    for (i, dir) in layers.lower.iter().enumerate() {
        if i > 0 {
            s.push(b':');
        }
        escape(dir, &mut s);
    }
    if let (Some(upper), Some(work)) = (layers.upper, layers.work) {
        clear_volatile_marker(work);
        s.extend_from_slice(b",upperdir=");
        escape(upper, &mut s);
        s.extend_from_slice(b",workdir=");
        escape(work, &mut s);
        if layers.volatile {
            s.extend_from_slice(b",volatile");
        }
    }
    for (key, value) in FIXED_OPTIONS {
        s.push(b',');
        s.extend_from_slice(key.to_bytes());
        s.push(b'=');
        s.extend_from_slice(value.to_bytes());
    }
    s
}

fn with_option_string(layers: &Layers<'_>, scratch: &Path) -> Result<OwnedFd, SandboxError> {
    let data = option_string(layers);
    // mount(2) copies at most one page of options.
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    if data.len() >= page {
        return Err(SandboxError::TooManyLayers {
            layers: layers.lower.len(),
            bytes: data.len(),
            limit: page - 1,
        });
    }
    let data = CString::new(data).map_err(|_| SandboxError::InvalidSpec {
        what: "overlay layer path",
        reason: "contains a NUL byte".to_owned(),
    })?;
    let target = cpath(scratch)?;
    let lower_count = layers.lower.len();
    // A thread of our own: unshare(CLONE_NEWNS) gives it (and only it) a
    // private copy of the mount table. The overlay is mounted there, cloned
    // out detached, and the namespace dies with the thread.
    let result = std::thread::Builder::new()
        .name("forge-overlay".to_owned())
        .spawn(move || -> Result<OwnedFd, (&'static str, Errno)> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| ("unshare(CLONE_NEWNS)", e))?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| ("making the thread's mounts private", e))?;
            nix::mount::mount(
                Some(c"overlay"),
                target.as_c_str(),
                Some(c"overlay"),
                nix::mount::MsFlags::empty(),
                Some(data.as_c_str()),
            )
            .map_err(|e| ("mount(2) with the lowerdir option string", e))?;
            sys::open_tree_clone(&target).map_err(|e| ("open_tree(OPEN_TREE_CLONE)", e))
        })
        .map_err(|e| SandboxError::Io {
            op: "spawning the overlay mount thread",
            path: scratch.to_path_buf(),
            source: e,
        })?
        .join()
        .map_err(|_| SandboxError::Overlay {
            step: "overlay mount thread panicked".to_owned(),
            layers: lower_count,
            source: Errno::EIO,
        })?;
    result.map_err(|(step, e)| overlay_err(step, layers, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// Both methods give the same merged view, and nothing shows in mountinfo.
    #[test]
    fn both_methods_mount_detached() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let mut lower = Vec::new();
        for i in 0..3 {
            let l = d.join(format!("l{i}"));
            fs::create_dir(&l).expect("mkdir");
            fs::write(l.join(format!("f{i}")), format!("{i}")).expect("write");
            fs::write(l.join("top"), format!("{i}")).expect("write");
            lower.push(l);
        }
        for (n, method) in [Method::Auto, Method::OptionString].into_iter().enumerate() {
            let upper = d.join(format!("upper{n}"));
            let work = d.join(format!("work{n}"));
            let scratch = d.join(format!("scratch{n}"));
            for p in [&upper, &work, &scratch] {
                fs::create_dir(p).expect("mkdir");
            }
            let layers = Layers {
                lower: &lower,
                upper: Some(&upper),
                work: Some(&work),
                volatile: true,
            };
            let fd = mount_detached(&layers, method, &scratch).expect("mount");
            let read = |name: &std::ffi::CStr| {
                let f = nix::fcntl::openat(
                    fd.as_fd(),
                    name,
                    nix::fcntl::OFlag::O_RDONLY,
                    nix::sys::stat::Mode::empty(),
                )
                .expect("open in overlay");
                let mut s = String::new();
                std::io::Read::read_to_string(&mut fs::File::from(f), &mut s).expect("read");
                s
            };
            assert_eq!(read(c"f0") + &read(c"f2") + &read(c"top"), "020");
            let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
            assert!(
                !info.contains(&*d.to_string_lossy()),
                "{method:?}: visible in mountinfo"
            );
            // Writes go to the upper dir.
            let f = nix::fcntl::openat(
                fd.as_fd(),
                c"new",
                nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY,
                nix::sys::stat::Mode::from_bits_truncate(0o644),
            )
            .expect("create");
            drop(f);
            assert!(upper.join("new").exists());
        }
    }

    #[test]
    fn too_many_layers_for_the_option_string_is_a_clear_error() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let long = dir.path().join("x".repeat(200));
        fs::create_dir(&long).expect("mkdir");
        let lower = vec![long; 30];
        let layers = Layers {
            lower: &lower,
            upper: None,
            work: None,
            volatile: false,
        };
        match mount_detached(&layers, Method::OptionString, dir.path()) {
            Err(SandboxError::TooManyLayers { layers: 30, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn option_string_escapes_separators() {
        let lower = vec![PathBuf::from("/a:b"), PathBuf::from("/c,d")];
        let mut l = Layers {
            lower: &lower,
            upper: Some(Path::new("/u")),
            work: Some(Path::new("/w")),
            volatile: true,
        };
        assert_eq!(
            String::from_utf8(option_string(&l)).expect("utf8"),
            "lowerdir=/a\\:b:/c\\,d,upperdir=/u,workdir=/w,volatile,index=off,redirect_dir=off,metacopy=off,xino=off"
        );
        l.volatile = false;
        assert_eq!(
            String::from_utf8(option_string(&l)).expect("utf8"),
            "lowerdir=/a\\:b:/c\\,d,upperdir=/u,workdir=/w,index=off,redirect_dir=off,metacopy=off,xino=off"
        );
    }
}
