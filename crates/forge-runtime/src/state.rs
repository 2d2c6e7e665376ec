//! A container's changing state (`containers/<id>/state.json`) and how its
//! liveness is told from outside: the monitor's pid *and* start time, so a
//! recycled pid is never taken for a live monitor.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::PortConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Exited,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
        }
    }

    /// Running or paused: a monitor holds the container.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// A process identified for good: pid plus its start time in clock ticks
/// since boot (`/proc/<pid>/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    pub fn of(pid: u32) -> Option<ProcessId> {
        start_time(pid).map(|start| ProcessId { pid, start })
    }

    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// Still the same process, and not a zombie.
    pub fn alive(&self) -> bool {
        self.pid != 0 && start_time(self.pid) == Some(self.start)
    }
}

/// Field 22 of `/proc/<pid>/stat`; `None` for a dead or zombie process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // `after` starts at field 3 (state).
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: Status,
    /// The monitor holding the container (for an attached `run`, forge itself).
    pub monitor: Option<ProcessId>,
    /// The sandbox's pid 1, on the host.
    pub pid: Option<ProcessId>,
    /// The sandbox's cgroup directories (pause, stats, exec).
    pub cgroups: Vec<PathBuf>,
    /// The host ports actually bound (random ones resolved).
    pub ports: Vec<PortConfig>,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Why the last start failed, or how the container ended if not by itself.
    pub error: String,
    /// RFC 3339; empty when never.
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: u32,
}

/// Where a container lives under the store.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    pub dir: PathBuf,
}

impl ContainerPaths {
    pub fn new(containers: &Path, id: &str) -> ContainerPaths {
        ContainerPaths {
            dir: containers.join(id),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    /// The sandbox's state dir (its lock file and cgroup records).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}
