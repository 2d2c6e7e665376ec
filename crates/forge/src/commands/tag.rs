//! `forge tag SOURCE TARGET`.

use std::path::PathBuf;
use std::process::ExitCode;

use forge_oci::Reference;

use super::human::{fail, open_store};

#[derive(clap::Args)]
pub struct Args {
    /// The image (name or id)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    /// The new name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let target = match Reference::parse(&args.target) {
        Ok(r) if r.digest().is_none() => r,
        Ok(_) => {
            return Ok(fail(format!(
                "refusing to create a tag with a digest reference: {}",
                args.target
            )))
        }
        Err(e) => return Ok(fail(e)),
    };
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let source = match store.resolve(&args.source) {
        Ok(r) => r.image,
        Err(e) => return Ok(fail(e)),
    };
    match store.tag(&source, &target) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(fail(e)),
    }
}
