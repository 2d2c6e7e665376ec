//! A sandbox's cgroups seen from another process (the one that did not
//! spawn it): usage figures and the freezer, given the directories
//! [`Sandbox::cgroup_paths`](crate::Sandbox::cgroup_paths) listed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{hierarchies, write_file, Dir, Usage, Version};
use crate::error::SandboxError;

/// The [`Dir`] of a cgroup path: its hierarchy's version and the
/// controllers a sandbox uses there.
fn dir_of(path: &Path) -> Option<Dir> {
    let h = hierarchies().iter().find(|h| path.starts_with(&h.mount))?;
    let controllers = ["memory", "cpu", "cpuacct", "pids", "freezer"]
        .into_iter()
        .filter(|c| h.controllers.iter().any(|have| have == c))
        .collect();
    Some(Dir {
        path: path.to_path_buf(),
        version: h.version,
        controllers,
    })
}

/// Current usage of the sandbox whose cgroup directories are `paths`.
pub fn usage_of(paths: &[PathBuf]) -> Usage {
    let mut u = Usage::default();
    for dir in paths.iter().filter_map(|p| dir_of(p)) {
        match dir.version {
            Version::V1 => super::v1::usage(&dir, &mut u),
            Version::V2 => super::v2::usage(&dir, &mut u),
        }
    }
    u
}

/// Freeze (`true`) or thaw every process of the sandbox whose cgroup
/// directories are `paths`, and wait until the kernel says it is done:
/// v1 `freezer.state` goes `FREEZING` → `FROZEN`; v2 `cgroup.events`
/// shows `frozen 1`. Errors when no directory has a freezer.
pub fn freeze(paths: &[PathBuf], frozen: bool) -> Result<(), SandboxError> {
    let mut done = false;
    for dir in paths.iter().filter_map(|p| dir_of(p)) {
        let (file, value, check, want) = match dir.version {
            Version::V1 if dir.has("freezer") => (
                dir.path.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
                dir.path.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Version::V2 => (
                dir.path.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
                dir.path.join("cgroup.events"),
                if frozen { "frozen 1" } else { "frozen 0" },
            ),
            Version::V1 => continue,
        };
        write_file(&file, value)?;
        // The kernel freezes tasks one by one; a task in an uninterruptible
        // sleep delays it. runc re-writes FROZEN while waiting, as below.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(&check).map_err(super::cg_err(&check))?;
            if now.lines().any(|l| l.trim() == want) {
                break;
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Cgroup {
                    path: check,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("still not {want} after 5 s"),
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
            if dir.version == Version::V1 {
                write_file(&file, value)?;
            }
        }
        done = true;
    }
    if done {
        Ok(())
    } else {
        Err(SandboxError::MissingController {
            limit: "pause",
            controller: "freezer",
        })
    }
}
