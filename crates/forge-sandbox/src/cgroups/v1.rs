//! cgroup v1: one hierarchy per controller (or per group of controllers).
//!
//! Limits follow runc's `fs` driver: `memory.limit_in_bytes` then
//! `memory.memsw.limit_in_bytes` (memory + swap; it must never be below the
//! memory limit, so it is written second), `cpu.cfs_quota_us` over a
//! 100 ms `cpu.cfs_period_us`, `pids.max`. OOM kills are counted by the
//! `oom_kill` line of `memory.oom_control` (Linux ≥ 4.13).

use std::fs;

use super::{cg_err, read_key, read_u64, write_file, Dir, Usage};
use crate::error::SandboxError;
use crate::spec::Limits;

/// CFS period, as docker's `--cpus`.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

pub(crate) fn cpu_quota_us(cpus: f64) -> u64 {
    // The kernel refuses quotas under 1 ms.
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

fn limit_value(v: u64) -> String {
    if v == u64::MAX {
        "-1".to_owned()
    } else {
        v.to_string()
    }
}

pub(crate) fn create(dir: &Dir, limits: &Limits) -> Result<(), SandboxError> {
    fs::create_dir_all(&dir.path).map_err(cg_err(&dir.path))?;
    if dir.has("memory") {
        if let Some(mem) = limits.memory {
            write_file(&dir.path.join("memory.limit_in_bytes"), &limit_value(mem))?;
        }
        // memsw exists only with swap accounting; without it there is no
        // swap to limit.
        let memsw = dir.path.join("memory.memsw.limit_in_bytes");
        if let Some(total) = limits.memory_swap.or(limits.memory) {
            if memsw.exists() {
                write_file(&memsw, &limit_value(total))?;
            }
        }
    }
    if dir.has("cpu") {
        if let Some(cpus) = limits.cpus {
            write_file(
                &dir.path.join("cpu.cfs_period_us"),
                &CPU_PERIOD_US.to_string(),
            )?;
            write_file(
                &dir.path.join("cpu.cfs_quota_us"),
                &cpu_quota_us(cpus).to_string(),
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
        u.memory_current = read_u64(&dir.path.join("memory.usage_in_bytes"));
        u.memory_peak = read_u64(&dir.path.join("memory.max_usage_in_bytes"));
        u.oom_kills += read_key(&dir.path.join("memory.oom_control"), "oom_kill").unwrap_or(0);
    }
    if dir.has("cpuacct") {
        u.cpu = read_u64(&dir.path.join("cpuacct.usage")).map(std::time::Duration::from_nanos);
    }
    if dir.has("pids") {
        u.pids_current = read_u64(&dir.path.join("pids.current"));
    }
}
