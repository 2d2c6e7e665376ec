//! Layer blobs written off the steps' critical path.
//!
//! A step needs only its parent's snapshot and diffID to run, so the solver commits each
//! step's snapshot as soon as its tar is hashed ([`Store::commit_diff`]) and leaves the
//! compressed blob to one writer thread, which works while the next steps run. The
//! step's [`Layer`] is *pending* until then. Whatever needs blobs waits for them:
//! cache records are queued behind the blobs they name (the writer takes jobs in order,
//! so a record is written only once every layer it names has its blob: a cache entry is
//! never trusted half-made), and [`DeferredBlobs::resolve`] blocks until a chain's
//! layers are final (the export, a `COPY --link` rebase).

use crate::cache;
use crate::solve::{Chain, Layer};
use forge_oci::Digest;
use forge_store::active::{CommitOptions, CommittedDiff};
use forge_store::Store;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Condvar, Mutex};

enum Job {
    Blob {
        diff: CommittedDiff,
        opts: CommitOptions,
        step: String,
    },
    Record {
        key: Digest,
        chain: Chain,
    },
}

#[derive(Default)]
struct State {
    /// chain ID → the final layer, or why its blob could not be written.
    done: HashMap<Digest, Result<Layer, String>>,
    /// The writer thread has stopped: nothing more will be done.
    stopped: bool,
    /// The first blob that failed, as `step: error`.
    failure: Option<String>,
}

/// The queue of blob and cache-record jobs of one solve, and their results.
pub(crate) struct DeferredBlobs {
    tx: Mutex<Option<Sender<Job>>>,
    rx: Mutex<Option<Receiver<Job>>>,
    state: Mutex<State>,
    changed: Condvar,
}

impl DeferredBlobs {
    pub(crate) fn new() -> DeferredBlobs {
        let (tx, rx) = mpsc::channel();
        DeferredBlobs {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn send(&self, job: Job) -> Result<(), String> {
        let tx = self.tx.lock().map_err(|e| e.to_string())?;
        tx.as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| "the layer blob writer has stopped".to_string())
    }

    /// Queues the blob of a committed snapshot; returns its pending layer.
    pub(crate) fn queue_blob(
        &self,
        diff: CommittedDiff,
        opts: CommitOptions,
        step: &str,
    ) -> Result<Layer, String> {
        let layer = Layer::pending(
            diff.chain_id.clone(),
            diff.diff_id.clone(),
            opts.compression.oci_media_type(),
        );
        self.send(Job::Blob {
            diff,
            opts,
            step: step.to_owned(),
        })?;
        Ok(layer)
    }

    /// Queues the cache record of `key`, written once `chain`'s blobs are. A record
    /// that cannot be written only costs a rebuild later, so it is never an error.
    pub(crate) fn queue_record(&self, key: Digest, chain: Chain) {
        let _ = self.send(Job::Record { key, chain });
    }

    /// No more jobs: the writer finishes the queue and stops.
    pub(crate) fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    /// The writer: takes jobs in order until [`close`](Self::close). Run on one thread.
    pub(crate) fn run(&self, store: &Store) {
        struct Stopped<'a>(&'a DeferredBlobs);
        impl Drop for Stopped<'_> {
            fn drop(&mut self) {
                if let Ok(mut st) = self.0.state.lock() {
                    st.stopped = true;
                }
                self.0.changed.notify_all();
            }
        }
        let _stopped = Stopped(self);
        let Some(rx) = self.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            return;
        };
        for job in rx {
            match job {
                Job::Blob { diff, opts, step } => {
                    let result = store
                        .write_snapshot_blob(&diff, &opts)
                        .map(|c| Layer {
                            chain_id: c.chain_id,
                            diff_id: c.diff_id,
                            blob: c.blob,
                            size: c.blob_size,
                            media_type: c.media_type,
                            pending: false,
                        })
                        .map_err(|e| format!("writing the layer of {step}: {e}"));
                    let mut st = self.state.lock().expect("deferred blobs lock");
                    if let Err(e) = &result {
                        st.failure.get_or_insert_with(|| e.clone());
                    }
                    st.done.insert(diff.chain_id, result);
                    drop(st);
                    self.changed.notify_all();
                }
                Job::Record { key, chain } => {
                    let finished = {
                        let st = self.state.lock().expect("deferred blobs lock");
                        finish(&st, &chain)
                    };
                    if let Some(Ok(chain)) = finished {
                        let _ = cache::put(store, &key, &chain);
                    }
                }
            }
        }
    }

    /// `chain` with every pending layer replaced by its final one, waiting for the
    /// writer as long as needed.
    pub(crate) fn resolve(&self, chain: &Chain) -> Result<Chain, String> {
        if !chain.layers.iter().any(|l| l.pending) {
            return Ok(chain.clone());
        }
        let mut st = self.state.lock().map_err(|e| e.to_string())?;
        loop {
            if let Some(done) = finish(&st, chain) {
                return done;
            }
            if st.stopped {
                return Err("the layer blob writer stopped before writing every layer".into());
            }
            st = self.changed.wait(st).map_err(|e| e.to_string())?;
        }
    }

    /// The first blob that could not be written, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.state.lock().ok().and_then(|st| st.failure.clone())
    }
}

/// `chain` made final from `st`: `None` while a pending layer is not done yet.
fn finish(st: &State, chain: &Chain) -> Option<Result<Chain, String>> {
    let mut layers = Vec::with_capacity(chain.layers.len());
    for l in &chain.layers {
        if !l.pending {
            layers.push(l.clone());
            continue;
        }
        match st.done.get(&l.chain_id)? {
            Ok(done) => layers.push(done.clone()),
            Err(e) => return Some(Err(e.clone())),
        }
    }
    Some(Ok(Chain { layers }))
}
