//! `forge rmi [-f] IMAGE...` (`forge image rm`): docker's untag-then-delete rules.
//! Freed blobs and snapshots are collected right away when no other forge process is
//! using the store, else by the next `forge image prune`. An image a container uses
//! stays (docker's conflicts).

use std::path::PathBuf;
use std::process::ExitCode;

use forge_store::Removal;

use super::human::{fail, open_runtime};

#[derive(clap::Args)]
pub struct Args {
    /// Remove an image given by id even if it is tagged in several repositories
    #[arg(short = 'f', long)]
    force: bool,
    /// Do not delete untagged parents (accepted for docker compatibility; forge images
    /// have no parents)
    #[arg(long)]
    no_prune: bool,
    /// Images (names or ids)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let _ = args.no_prune;
    let runtime = match open_runtime(root) {
        Ok(rt) => rt,
        Err(code) => return Ok(code),
    };
    let store = runtime.store();
    let in_use = match runtime.images_in_use() {
        Ok(u) => u,
        Err(e) => return Ok(fail(e)),
    };
    let mut code = ExitCode::SUCCESS;
    let mut deleted = false;
    for name in &args.images {
        match store.remove(name, args.force, &in_use) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removal::Untagged(r) => println!("Untagged: {}", r.familiar()),
                        Removal::Deleted(id) => {
                            deleted = true;
                            println!("Deleted: {id}")
                        }
                    }
                }
            }
            Err(e) => code = fail(e),
        }
    }
    if deleted {
        let collected = runtime
            .gc_roots()
            .map_err(|e| e.to_string())
            .and_then(|roots| store.try_gc(&roots).map_err(|e| e.to_string()));
        if let Err(e) = collected {
            eprintln!("WARNING: collecting unused blobs: {e}");
        }
    }
    Ok(code)
}
