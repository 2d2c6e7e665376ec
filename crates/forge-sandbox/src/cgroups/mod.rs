//! cgroups: limits (memory, cpu, pids) and accounting for one sandbox.
//!
//! Each sandbox gets `<parent>/<id>` (default `forge/<id>`) in every
//! hierarchy that carries a controller it uses, found in
//! `/proc/self/mountinfo`:
//!
//! - unified (v2) when `/sys/fs/cgroup` is cgroup2, or when a cgroup2 mount
//!   lists the controller in its `cgroup.controllers` (module `v2`);
//! - otherwise the v1 hierarchy mounted with that controller (module `v1`), as on
//!   hybrid systems where cgroup2 (`/sys/fs/cgroup/unified`) carries none
//!   of them.
//!
//! The intermediate process writes pid 1 into every `cgroup.procs` before
//! pid 1 forks the command, so all of the sandbox is inside from its
//! start. After the run the directories are removed (they are empty by
//! then: the whole pid namespace has exited); if forge is killed first,
//! their paths are in the state dir and [`cleanup_stale`](crate::cleanup_stale)
//! removes them.

pub(crate) mod control;
pub(crate) mod v1;
pub(crate) mod v2;

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::SandboxError;
use crate::spec::Limits;

/// Resource usage of a sandbox, from its cgroups. `None`: not accounted
/// here (no hierarchy has the controller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_current: Option<u64>,
    /// Highest memory use seen (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub memory_peak: Option<u64>,
    /// CPU time used by all processes of the sandbox.
    pub cpu: Option<Duration>,
    pub pids_current: Option<u64>,
    /// Processes the kernel killed for lack of memory in this sandbox.
    pub oom_kills: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Hierarchy {
    pub mount: PathBuf,
    pub version: Version,
    /// v1: the controllers in the mount options; v2: `cgroup.controllers`.
    pub controllers: Vec<String>,
}

/// The controllers a sandbox uses. `cpuacct` is v1 only (v2 has `cpu.stat`);
/// `freezer` too (v2 freezes any cgroup through `cgroup.freeze`), for
/// [`freeze`](crate::freeze) of a sandbox that asked for it ([`Limits::freezer`]).
const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];

fn unescape_mountinfo(s: &str) -> String {
    // Octal escapes for space, tab, newline and backslash.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup hierarchies in `mountinfo` text: v1 mounts of their root
/// with the controllers in their super options, and cgroup2 mounts.
pub(crate) fn parse_mountinfo(mountinfo: &str) -> Vec<(PathBuf, Version, Vec<String>)> {
    let mut out: Vec<(PathBuf, Version, Vec<String>)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        if *root != "/" {
            continue; // a bind of a sub-cgroup, not the hierarchy
        }
        let mount = PathBuf::from(unescape_mountinfo(mount));
        if out.iter().any(|(m, _, _)| *m == mount) {
            continue;
        }
        match *fstype {
            "cgroup" => {
                let opts = post.get(2).copied().unwrap_or("");
                let controllers: Vec<String> = opts
                    .split(',')
                    .filter(|o| {
                        CONTROLLERS.contains(o)
                            || ["freezer", "devices", "cpuset", "blkio", "hugetlb"].contains(o)
                    })
                    .map(str::to_owned)
                    .collect();
                // The same hierarchy may be mounted twice: keep the first.
                if controllers.is_empty()
                    || out
                        .iter()
                        .any(|(_, v, c)| *v == Version::V1 && c == &controllers)
                {
                    continue;
                }
                out.push((mount, Version::V1, controllers));
            }
            "cgroup2" => out.push((mount, Version::V2, Vec::new())),
            _ => {}
        }
    }
    out
}

/// The hierarchies of this machine, read once.
pub(crate) fn hierarchies() -> &'static [Hierarchy] {
    static CACHE: OnceLock<Vec<Hierarchy>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        parse_mountinfo(&text)
            .into_iter()
            .map(|(mount, version, controllers)| {
                let controllers = match version {
                    Version::V1 => controllers,
                    Version::V2 => fs::read_to_string(mount.join("cgroup.controllers"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                };
                Hierarchy {
                    mount,
                    version,
                    controllers,
                }
            })
            .collect()
    })
}

/// For each controller, the hierarchy that has it (v2 preferred).
pub(crate) fn select(hierarchies: &[Hierarchy]) -> Vec<(&Hierarchy, Vec<&'static str>)> {
    let mut chosen: Vec<(&Hierarchy, Vec<&'static str>)> = Vec::new();
    for controller in CONTROLLERS {
        let v2 = hierarchies
            .iter()
            .find(|h| h.version == Version::V2 && h.controllers.iter().any(|c| c == controller));
        let pick = v2.or_else(|| {
            // v2 accounts CPU in cpu.stat: cpuacct is only looked for in v1
            // when cpu itself is not on v2.
            hierarchies
                .iter()
                .find(|h| h.version == Version::V1 && h.controllers.iter().any(|c| c == controller))
        });
        let Some(h) = pick else { continue };
        if controller == "cpuacct"
            && chosen
                .iter()
                .any(|(c, ctl)| c.version == Version::V2 && ctl.contains(&"cpu"))
        {
            continue;
        }
        match chosen.iter_mut().find(|(c, _)| c.mount == h.mount) {
            Some((_, list)) => list.push(controller),
            None => chosen.push((h, vec![controller])),
        }
    }
    chosen
}

/// One directory of a sandbox's cgroup, in one hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Dir {
    pub path: PathBuf,
    pub version: Version,
    pub controllers: Vec<&'static str>,
}

impl Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.contains(&controller)
    }
}

/// A sandbox's cgroup across hierarchies.
#[derive(Debug)]
pub(crate) struct Cgroup {
    pub dirs: Vec<Dir>,
}

pub(crate) fn cg_err(path: &Path) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Cgroup {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(cg_err(path))
}

pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`memory.events`, `cpu.stat`, …).
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroup {
    /// No cgroup at all: nothing to create, join or remove.
    pub fn none() -> Cgroup {
        Cgroup { dirs: Vec::new() }
    }

    /// The directories a sandbox would get (nothing created yet); a v1
    /// freezer hierarchy only with `freezer`.
    pub fn plan(parent: &str, id: &str, freezer: bool) -> Cgroup {
        let dirs = select(hierarchies())
            .into_iter()
            .map(|(h, mut controllers)| {
                if !freezer {
                    controllers.retain(|c| *c != "freezer");
                }
                (h, controllers)
            })
            .filter(|(_, controllers)| !controllers.is_empty())
            .map(|(h, controllers)| Dir {
                path: h.mount.join(parent).join(id),
                version: h.version,
                controllers,
            })
            .collect();
        Cgroup { dirs }
    }

    /// Refuse limits no hierarchy can enforce.
    pub fn check(&self, limits: &Limits) -> Result<(), SandboxError> {
        let need = [
            (
                limits.memory.is_some() || limits.memory_swap.is_some(),
                "memory",
                "memory",
            ),
            (limits.cpus.is_some(), "cpu", "cpu"),
            (limits.pids.is_some(), "pids", "pids"),
        ];
        for (wanted, controller, limit) in need {
            if wanted && !self.dirs.iter().any(|d| d.has(controller)) {
                return Err(SandboxError::MissingController { limit, controller });
            }
        }
        Ok(())
    }

    /// Create the directories and write the limits.
    pub fn create(&self, limits: &Limits) -> Result<(), SandboxError> {
        for dir in &self.dirs {
            match dir.version {
                Version::V1 => v1::create(dir, limits)?,
                Version::V2 => v2::create(dir, limits)?,
            }
        }
        Ok(())
    }

    pub fn procs_files(&self) -> Result<Vec<OwnedFd>, SandboxError> {
        self.dirs
            .iter()
            .map(|d| {
                let p = d.path.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map(OwnedFd::from)
                    .map_err(cg_err(&p))
            })
            .collect()
    }

    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for dir in &self.dirs {
            match dir.version {
                Version::V1 => v1::usage(dir, &mut u),
                Version::V2 => v2::usage(dir, &mut u),
            }
        }
        u
    }

    /// Remove the directories. They must be empty: call after every process
    /// of the sandbox has been reaped.
    pub fn remove(&self) -> Result<(), SandboxError> {
        let mut first_err = None;
        for dir in &self.dirs {
            if let Err(e) = remove_dir(&dir.path) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `rmdir` a cgroup, tolerating its absence. A cgroup whose last task was
/// just reaped can report EBUSY for a moment on v1; retry briefly then.
pub(crate) fn remove_dir(path: &Path) -> Result<(), SandboxError> {
    for attempt in 0..50 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                return Err(SandboxError::Cgroup {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 20 0:32 /docker /mnt/x rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_uses_v1_controllers() {
        let parsed = parse_mountinfo(HYBRID);
        let hs: Vec<Hierarchy> = parsed
            .into_iter()
            .map(|(mount, version, controllers)| Hierarchy {
                controllers: if version == Version::V2 {
                    vec!["hugetlb".into()]
                } else {
                    controllers
                },
                mount,
                version,
            })
            .collect();
        assert_eq!(hs.len(), 5);
        let sel = select(&hs);
        let names: Vec<(String, Vec<&str>)> = sel
            .iter()
            .map(|(h, c)| (h.mount.to_string_lossy().into_owned(), c.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("/sys/fs/cgroup/memory".to_owned(), vec!["memory"]),
                ("/sys/fs/cgroup/cpu".to_owned(), vec!["cpu"]),
                ("/sys/fs/cgroup/cpuacct".to_owned(), vec!["cpuacct"]),
                ("/sys/fs/cgroup/pids".to_owned(), vec!["pids"]),
            ]
        );
    }

    #[test]
    fn unified_uses_one_directory() {
        let hs = vec![Hierarchy {
            mount: "/sys/fs/cgroup".into(),
            version: Version::V2,
            controllers: ["cpuset", "cpu", "io", "memory", "pids"]
                .map(String::from)
                .to_vec(),
        }];
        let sel = select(&hs);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].1, vec!["memory", "cpu", "pids"]);
    }

    #[test]
    fn combined_v1_mounts_share_a_directory() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let hs: Vec<Hierarchy> = parse_mountinfo(text)
            .into_iter()
            .map(|(mount, version, controllers)| Hierarchy {
                mount,
                version,
                controllers,
            })
            .collect();
        let sel = select(&hs);
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].1, vec!["cpu", "cpuacct"]);
    }
}
