//! `forge push IMAGE [DEST]`: docker's `push`, plus an optional destination so an image
//! goes to a registry without tagging it first.

use std::path::PathBuf;
use std::process::ExitCode;

use forge_oci::Reference;

use super::human::{fail, open_store};
use super::pull::{client, LayerDisplay};

/// Blobs larger than this are uploaded in chunks of this size, so that a failure costs
/// one chunk's worth of resending on the next try, not the whole blob.
const CHUNK_SIZE: u64 = 64 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Blobs uploaded at once
    #[arg(long, default_value_t = 4, hide = true)]
    jobs: usize,
    /// Upload blobs larger than this many bytes in chunks of that size (0: every blob
    /// in one request)
    #[arg(long, default_value_t = CHUNK_SIZE, hide = true)]
    chunk_size: u64,
    /// The image (name or id)
    #[arg(value_name = "NAME[:TAG]")]
    image: String,
    /// Where to push it (default: the image's name)
    #[arg(value_name = "DEST")]
    dest: Option<String>,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let dest_text = args.dest.as_deref().unwrap_or(&args.image);
    let dest = match Reference::parse(dest_text) {
        Ok(r) => r,
        Err(e) => return Ok(fail(e)),
    };
    let image = match store.resolve(&args.image) {
        Ok(r) => r.image,
        Err(_) => {
            return Ok(fail(format!(
                "An image does not exist locally with the tag: {}",
                args.image
            )))
        }
    };
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", dest.repository());
    }
    let display = LayerDisplay::new(args.quiet, vec![image.id.clone()]);
    let opts = forge_registry::PushOptions {
        jobs: args.jobs,
        chunk_size: (args.chunk_size > 0).then_some(args.chunk_size),
    };
    let pushed = forge_registry::push(&client, &store, &image, &dest, &opts, &display);
    display.finish();
    match pushed {
        Ok(p) => {
            if args.quiet {
                println!("{}", dest.familiar());
            } else {
                println!("{}: digest: {} size: {}", p.tag, p.digest, p.size);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}
