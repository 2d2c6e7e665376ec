//! `forge system df`: TYPE TOTAL ACTIVE SIZE RECLAIMABLE, as docker.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::human::{fail, human_size, open_runtime, table};

#[derive(clap::Args)]
pub struct Args {}

fn reclaimable(reclaimable: u64, total: u64) -> String {
    if total == 0 {
        return human_size(reclaimable);
    }
    format!(
        "{} ({}%)",
        human_size(reclaimable),
        (reclaimable as f64 / total as f64 * 100.0) as i64
    )
}

pub fn run(root: Option<PathBuf>, _args: Args) -> anyhow::Result<ExitCode> {
    let runtime = match open_runtime(root) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let du = match runtime.disk_usage() {
        Ok(d) => d,
        Err(e) => return Ok(fail(e)),
    };
    let t = vec![
        vec![
            "TYPE".to_string(),
            "TOTAL".into(),
            "ACTIVE".into(),
            "SIZE".into(),
            "RECLAIMABLE".into(),
        ],
        vec![
            "Images".into(),
            du.images.to_string(),
            du.images_active.to_string(),
            human_size(du.images_size),
            reclaimable(du.images_reclaimable, du.images_size),
        ],
        vec![
            "Containers".into(),
            du.containers.to_string(),
            du.containers_active.to_string(),
            human_size(du.containers_size),
            reclaimable(du.containers_reclaimable, du.containers_size),
        ],
        vec![
            "Local Volumes".into(),
            du.volumes.to_string(),
            du.volumes_active.to_string(),
            human_size(du.volumes_size),
            reclaimable(du.volumes_reclaimable, du.volumes_size),
        ],
        vec![
            "Build Cache".into(),
            du.cache_entries.to_string(),
            "0".into(),
            human_size(du.cache_size),
            human_size(du.cache_size),
        ],
    ];
    std::io::stdout().lock().write_all(table(&t).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
