//! A build's base-image resolver that pulls what the store lacks: `FROM name` resolves
//! from the store as [`forge_build::build::StoreResolver`] does, and on a miss pulls the
//! image from its registry (mirrors and credentials as `forge pull`), then resolves again.
//! With `always_pull` (`--pull`) the tag is re-resolved against the registry every time;
//! a `name@sha256:…` present in the store never touches the network.

use forge_build::build::StoreResolver;
use forge_build::{ImageResolver, ResolvedImage};
use forge_oci::Reference;
use forge_registry::{Client, PullOptions};
use forge_store::{Store, StoreError};

use super::pull::LayerDisplay;

/// Resolves base images from the store, pulling missing ones.
pub struct PullingResolver<'a> {
    store: &'a Store,
    client: &'a Client,
    always_pull: bool,
    quiet: bool,
}

impl<'a> PullingResolver<'a> {
    /// `always_pull`: `--pull`; `quiet`: no per-layer lines while pulling.
    pub fn new(store: &'a Store, client: &'a Client, always_pull: bool, quiet: bool) -> Self {
        PullingResolver {
            store,
            client,
            always_pull,
            quiet,
        }
    }

    fn pull(&self, reference: &Reference) -> Result<(), String> {
        let display = LayerDisplay::new(self.quiet, Vec::new());
        let pulled = forge_registry::pull(
            self.client,
            self.store,
            reference,
            &PullOptions::default(),
            &display,
        );
        display.finish();
        pulled
            .map(|_| ())
            .map_err(|e| format!("failed to resolve source metadata for {reference}: {e}"))
    }
}

impl ImageResolver for PullingResolver<'_> {
    fn resolve(&self, reference: &str) -> Result<ResolvedImage, String> {
        let local = StoreResolver(self.store);
        let pinned = Reference::parse(reference).is_ok_and(|r| r.digest().is_some());
        match self.store.resolve(reference) {
            Ok(_) if pinned || !self.always_pull => local.resolve(reference),
            Ok(_) | Err(StoreError::NoSuchImage(_)) => {
                let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
                self.pull(&parsed)?;
                local.resolve(reference)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
