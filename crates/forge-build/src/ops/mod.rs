//! The file operations of a build step that forge performs itself (RUN is
//! the sandbox's business).
//!
//! - [`copy`]: COPY and ADD with BuildKit's semantics, writing the step's
//!   new files into an empty directory that becomes its layer.
//! - `workdir`: the directory a WORKDIR makes in its layer.
//! - [`reuse`]: hard-links the unchanged files of a COPY's previous result
//!   instead of writing them again.
//!
//! Everything below works on directory descriptors, one path component at a
//! time without following symlinks (`fsx`), so sources never leave their
//! root and writes never leave the layer directory.
pub(crate) mod archive;
pub mod copy;
mod dest;
mod fetch;
pub use fetch::Downloads;
mod fsx;
mod mode;
pub mod reuse;
mod source;
pub(crate) mod workdir;

pub use copy::{copy, CopyError, CopyOutcome, CopyRequest, CopySource, FetchedUrl};
pub use mode::ChmodError;
