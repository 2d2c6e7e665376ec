//! Progress events of a build, for the CLI to render (BuildKit-style live
//! steps on a terminal, one line per event in CI). The solver only emits;
//! rendering is not its business.

use std::time::Duration;

/// What happened to a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The vertex started (its name: `[build 2/5] RUN make`).
    Started { vertex: usize, name: String },
    /// Its result came from the cache.
    Cached { vertex: usize, name: String },
    /// A line of the step's output (stdout and stderr interleaved).
    Output { vertex: usize, line: String },
    /// The step finished successfully.
    Done {
        vertex: usize,
        name: String,
        elapsed: Duration,
    },
    /// The step failed.
    Failed {
        vertex: usize,
        name: String,
        elapsed: Duration,
        message: String,
    },
    /// A build-level message (exporting, naming the image, ...).
    Info(String),
}

/// Where events go. Must be cheap and thread-safe: steps of parallel stages
/// report at once.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Discards everything (`--progress=quiet`, tests).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}
