//! cgroup v2: one unified hierarchy.
//!
//! Controllers must be enabled in `cgroup.subtree_control` of every
//! ancestor (the root and `<parent>`); `<parent>` holds no process, so the
//! "no internal processes" rule is kept. Limits: `memory.max`,
//! `memory.swap.max` (swap only, so memory-swap minus memory), `cpu.max`
//! (`quota period`), `pids.max`. OOM kills: `oom_kill` in `memory.events`.

use std::fs;

use super::v1::{cpu_quota_us, CPU_PERIOD_US};
use super::{cg_err, read_key, read_u64, write_file, Dir, Usage};
use crate::error::SandboxError;
use crate::spec::Limits;

fn max_value(v: u64) -> String {
    if v == u64::MAX {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

pub(crate) fn create(dir: &Dir, limits: &Limits) -> Result<(), SandboxError> {
    let parent = dir.path.parent().unwrap_or(&dir.path);
    let mount = parent.parent().unwrap_or(parent);
    fs::create_dir_all(parent).map_err(cg_err(parent))?;
    // Enabling a controller that is already enabled is a no-op; one that
    // cannot be enabled shows up below as a missing limit file.
    for ancestor in [mount, parent] {
        let ctl = ancestor.join("cgroup.subtree_control");
        for c in &dir.controllers {
            let _ = fs::write(&ctl, format!("+{c}"));
        }
    }
    match fs::create_dir(&dir.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(cg_err(&dir.path)(e)),
    }
    if dir.has("memory") {
        if let Some(mem) = limits.memory {
            write_file(&dir.path.join("memory.max"), &max_value(mem))?;
        }
        let swap = dir.path.join("memory.swap.max");
        if let Some(mem) = limits.memory {
            if swap.exists() {
                let total = limits.memory_swap.unwrap_or(mem);
                let v = if total == u64::MAX {
                    u64::MAX
                } else {
                    total.saturating_sub(mem)
                };
                write_file(&swap, &max_value(v))?;
            }
        }
    }
    if dir.has("cpu") {
        if let Some(cpus) = limits.cpus {
            write_file(
                &dir.path.join("cpu.max"),
                &format!("{} {}", cpu_quota_us(cpus), CPU_PERIOD_US),
            )?;
        }
    }
    if dir.has("pids") {
        if let Some(pids) = limits.pids {
            write_file(&dir.path.join("pids.max"), &pids.to_string())?;
        }
    }
    Ok(())
}

pub(crate) fn usage(dir: &Dir, u: &mut Usage) {
    if dir.has("memory") {
        u.memory_current = read_u64(&dir.path.join("memory.current"));
        u.memory_peak = read_u64(&dir.path.join("memory.peak"));
        u.oom_kills += read_key(&dir.path.join("memory.events"), "oom_kill").unwrap_or(0);
    }
    if dir.has("cpu") {
        u.cpu = read_key(&dir.path.join("cpu.stat"), "usage_usec")
            .map(std::time::Duration::from_micros);
    }
    if dir.has("pids") {
        u.pids_current = read_u64(&dir.path.join("pids.current"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Dir, Version};
    use super::*;

    /// The files v2 writes and reads, on a plain directory standing in for
    /// a cgroup2 mount (this VM's controllers are all on v1).
    #[test]
    fn limits_and_usage_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir {
            path: tmp.path().join("forge/abc"),
            version: Version::V2,
            controllers: vec!["memory", "cpu", "pids"],
        };
        fs::create_dir_all(&dir.path).expect("mkdir");
        fs::write(dir.path.join("memory.swap.max"), "max\n").expect("swap file");
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: None,
            cpus: Some(0.5),
            pids: Some(32),
            freezer: false,
            rlimits: Vec::new(),
        };
        create(&dir, &limits).expect("create");
        let read = |f: &str| fs::read_to_string(dir.path.join(f)).expect(f);
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "32");
        assert_eq!(
            fs::read_to_string(tmp.path().join("cgroup.subtree_control")).expect("root control"),
            "+pids"
        );

        fs::write(dir.path.join("memory.current"), "1000\n").expect("write");
        fs::write(dir.path.join("memory.peak"), "5000\n").expect("write");
        fs::write(
            dir.path.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("write");
        fs::write(
            dir.path.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .expect("write");
        fs::write(dir.path.join("pids.current"), "4\n").expect("write");
        let mut u = Usage::default();
        usage(&dir, &mut u);
        assert_eq!(u.memory_current, Some(1000));
        assert_eq!(u.memory_peak, Some(5000));
        assert_eq!(u.oom_kills, 1);
        assert_eq!(u.cpu, Some(std::time::Duration::from_micros(1500)));
        assert_eq!(u.pids_current, Some(4));
    }
}
