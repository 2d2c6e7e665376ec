//! A build context given on standard input (`forge build - < ctx.tar.gz`), as docker
//! takes it: a tar archive (plain, gzip, bzip2, xz or zstd) is the context, with the
//! Dockerfile inside it; anything else is a lone Dockerfile and the build has no
//! context.
//!
//! The stream is spooled to the store's `tmp/` (it can be large and is read twice:
//! once to tell what it is, once to extract), then extracted by the copy engine's ADD
//! path, so the archive rules are ADD's: entries never land outside the directory,
//! whatever their names or links say.

use crate::graph::{self, AddOptions, Source};
use crate::ops::archive::is_tar;
use crate::ops::copy::{self, CopyError, CopyRequest, CopySource};
use forge_store::Store;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What standard input held.
pub enum StdinContext {
    /// A Dockerfile's bytes; no context.
    Dockerfile(Vec<u8>),
    /// An archive extracted into a directory, removed on drop.
    Archive(ExtractedContext),
}

/// A context directory made from an archive, under the store's `tmp/`.
pub struct ExtractedContext {
    dir: PathBuf,
}

impl ExtractedContext {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ExtractedContext {
    fn drop(&mut self) {
        let _ = forge_store::snapshot::remove_tree(&self.dir);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StdinContextError {
    #[error("reading the build context from standard input: {0}")]
    Read(#[source] io::Error),
    #[error("spooling the build context to {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("extracting the build context from standard input: {0}")]
    Extract(#[source] CopyError),
}

/// Reads `input` to its end and tells a context archive from a Dockerfile.
pub fn read_stdin_context(
    store: &Store,
    mut input: impl Read,
) -> Result<StdinContext, StdinContextError> {
    let spool = SpoolDir::create(store.tmp_path("context-stream"))?;
    let stream_path = spool.0.join("context");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&stream_path)
        .map_err(|source| StdinContextError::Spool {
            path: stream_path.clone(),
            source,
        })?;
    io::copy(&mut input, &mut file).map_err(StdinContextError::Read)?;
    if !is_tar(&mut file) {
        drop(file);
        let bytes = std::fs::read(&stream_path).map_err(|source| StdinContextError::Spool {
            path: stream_path.clone(),
            source,
        })?;
        return Ok(StdinContext::Dockerfile(bytes));
    }
    drop(file);
    let extracted = ExtractedContext {
        dir: store.tmp_path("context"),
    };
    std::fs::create_dir(&extracted.dir).map_err(|source| StdinContextError::Spool {
        path: extracted.dir.clone(),
        source,
    })?;
    let add = graph::Copy {
        from: Source::Context,
        sources: vec!["context".into()],
        inline: Vec::new(),
        dest: "/".into(),
        chown: None,
        chmod: None,
        link: false,
        exclude: Vec::new(),
        parents: false,
        add: Some(AddOptions {
            unpack: Some(true),
            checksum: None,
            keep_git_dir: false,
        }),
    };
    copy::copy(&CopyRequest {
        op: &add,
        source: CopySource::Tree(&spool.0),
        dest_view: None,
        users_view: None,
        diff_dir: &extracted.dir,
        downloads: None,
    })
    .map_err(StdinContextError::Extract)?;
    Ok(StdinContext::Archive(extracted))
}

/// The spool directory, removed on drop (also when extraction fails).
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn create(path: PathBuf) -> Result<SpoolDir, StdinContextError> {
        std::fs::create_dir(&path).map_err(|source| StdinContextError::Spool {
            path: path.clone(),
            source,
        })?;
        Ok(SpoolDir(path))
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = forge_store::snapshot::remove_tree(&self.0);
    }
}
