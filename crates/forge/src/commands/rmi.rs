//! `forge rmi [-f] IMAGE...` (`forge image rm`): docker's untag-then-delete rules.
//! Freed blobs and snapshots are collected right away when no other forge process is
//! using the store, else by the next `forge image prune`.

use std::path::PathBuf;
use std::process::ExitCode;

use forge_store::{GcRoots, Removal};

use super::human::{fail, open_store};

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
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut code = ExitCode::SUCCESS;
    let mut deleted = false;
    for name in &args.images {
        match store.remove(name, args.force) {
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
        if let Err(e) = store.try_gc(&GcRoots::default()) {
            eprintln!("WARNING: collecting unused blobs: {e}");
        }
    }
    Ok(code)
}
