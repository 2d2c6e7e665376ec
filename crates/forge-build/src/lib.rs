//! # forge-build
//!
//! Dockerfile to image. [`build::build`] runs the whole thing; the pieces,
//! in the order a build runs them:
//! - [`lower`] turns typed instructions into a [`graph::Graph`] of
//!   content-addressed operations (image, exec, copy, mkdir, merge) and, per
//!   stage, the image config and history it produces, with BuildKit's ARG/ENV
//!   scoping and expansion rules.
//! - [`context`] selects COPY sources in the build context (globs,
//!   `.dockerignore`, never outside the root) and digests exactly what they
//!   select, with a stat cache so unchanged files are not read again;
//!   [`context_stream`] takes a context archive (or a lone Dockerfile) from
//!   standard input.
//! - [`solve`] runs what the target needs, in parallel where the graph
//!   allows, each step from the cache when its key (op, inputs' keys, the
//!   context content it reads) was seen before; [`export`] turns the target
//!   stage's result into an image config, manifest and names in the store.
//!   A step's snapshot is usable as soon as its tar is hashed; `deferred`
//!   compresses the layer blobs (and writes the cache records that name them)
//!   on a thread of its own while the next steps run.
//! - [`cache`] holds the cache records, locally and as an OCI artifact shared
//!   through a registry or a directory (`--cache-to`, `--cache-from`).
//! - [`progress`] is the stream of events a build reports, rendered by the CLI.
//! - [`graph`] holds the vertices; a vertex's digest covers its operation and
//!   its inputs' digests, so equal work has equal identity.
//! - [`ops`] performs the file operations of a step: [`ops::copy`] writes a
//!   COPY/ADD's new files into an empty directory that becomes its layer.
pub mod build;
pub mod cache;
pub mod context;
pub mod context_stream;
mod deferred;
pub mod export;
pub mod graph;
pub mod lower;
pub mod ops;
pub mod progress;
pub mod solve;

pub use graph::{Graph, Op, Vertex, VertexId};
pub use lower::{
    lower, ImageResolver, LowerError, LowerOptions, Plan, Platform, ResolvedImage, StageOutput,
};
