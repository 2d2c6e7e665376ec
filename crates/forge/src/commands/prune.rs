//! `forge image prune [-a] [-f]`: removes dangling images (every image with `-a`), then
//! collects garbage: blobs and snapshots nothing reaches, and whatever killed or failed
//! commands left in `tmp/`.

use std::io::{self, BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use forge_store::Removal;

use super::human::{fail, human_size, open_runtime};

#[derive(clap::Args)]
pub struct Args {
    /// Remove all images not used by a container, not just dangling ones
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        io::stdout().flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let runtime = match open_runtime(root) {
        Ok(rt) => rt,
        Err(code) => return Ok(code),
    };
    let store = runtime.store();
    let in_use = match runtime.images_in_use() {
        Ok(u) => u,
        Err(e) => return Ok(fail(e)),
    };
    let removed = match store.prune_images(args.all, &in_use) {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    let roots = match runtime.gc_roots() {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    let report = match store.gc(&roots) {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for r in &removed {
            match r {
                Removal::Untagged(n) => writeln!(out, "untagged: {}", n.familiar())?,
                Removal::Deleted(id) => writeln!(out, "deleted: {id}")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(report.bytes_freed)
    )?;
    Ok(ExitCode::SUCCESS)
}
