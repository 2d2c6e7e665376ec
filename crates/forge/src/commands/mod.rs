//! One module per subcommand: its clap arguments and a `run` that calls the
//! library and prints.

pub mod build;
pub mod check;
pub mod container;
pub mod df;
pub mod format;
pub mod history;
pub mod human;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod load;
pub mod login;
pub mod logout;
pub mod parse;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod pull_resolver;
pub mod push;
pub mod registry_cache;
pub mod rmi;
pub mod save;
pub mod search;
pub mod tag;
pub mod volume;

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// A Dockerfile read from a path (`-` is standard input), with the name
/// diagnostics show for it.
pub struct Source {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Source {
    pub fn read(path: &Path) -> anyhow::Result<Source> {
        if path == Path::new("-") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading Dockerfile from standard input")?;
            return Ok(Source {
                name: "<stdin>".into(),
                bytes,
            });
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Source {
            name: path.display().to_string(),
            bytes,
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Prints a diagnostic about this source to standard error.
    pub fn report(&self, diagnostic: &forge_dockerfile::Diagnostic) {
        eprint!("{}", diagnostic.render(&self.name, &self.text()));
    }
}

/// `-f FILE` wins; else the positional path (a file, or a context directory
/// holding `Dockerfile`); else `./Dockerfile`.
pub fn dockerfile_path(file: Option<PathBuf>, positional: Option<PathBuf>) -> PathBuf {
    if let Some(f) = file {
        return f;
    }
    match positional {
        Some(p) if p.is_dir() => p.join("Dockerfile"),
        Some(p) => p,
        None => PathBuf::from("Dockerfile"),
    }
}
