//! `forge load [-i FILE] [-q]`: oci-archive, docker-archive or an OCI layout directory,
//! compressed or not, told apart by content; standard input when no `-i`.

use std::io::{self, BufReader, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use super::human::{fail, open_store};

#[derive(clap::Args)]
pub struct Args {
    /// Read from an archive file or an image directory instead of standard input
    #[arg(short = 'i', long = "input")]
    input: Option<PathBuf>,
    /// Suppress the load output (forge prints no progress; the result lines stay, as
    /// docker's do)
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let _ = args.quiet;
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let (result, what) = match &args.input {
        Some(p) => (store.load_path(p), p.display().to_string()),
        None => {
            if io::stdin().is_terminal() {
                return Ok(fail(
                    "requested load from stdin, but stdin is empty (use -i FILE or redirect)",
                ));
            }
            (
                store.load_reader(BufReader::with_capacity(256 * 1024, io::stdin().lock())),
                "standard input".to_string(),
            )
        }
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return Ok(fail(format!("loading {what}: {e}"))),
    };
    for r in &outcome.retagged {
        if r.previous_dangling {
            println!(
                "The image {} already exists, renaming the old one with ID {} to empty string",
                r.name.familiar(),
                r.previous_id.as_ref().unwrap_or(&r.previous)
            );
        }
    }
    for li in &outcome.images {
        for bad in &li.invalid_names {
            eprintln!("WARNING: ignoring invalid image name {bad:?} in {what}");
        }
        if li.names.is_empty() {
            println!("Loaded image ID: {}", li.image.id);
        }
        for n in &li.names {
            println!("Loaded image: {}", n.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}
