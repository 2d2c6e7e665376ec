//! forge's OCI distribution client: pull images into the store and push them out,
//! with docker's configuration and credentials files.
//!
//! How the pieces fit together:
//!
//! - [`config`] reads forge's config file (docker `daemon.json`'s `registry-mirrors` and
//!   `insecure-registries`, [`RegistryConfig`]) and the credentials file (docker
//!   `config.json`'s `auths`, [`CredentialStore`]); [`ConfigEnv`] says where both are.
//! - [`client`] is the HTTP side: a [`Client`] pings `/v2/` once per registry to choose
//!   HTTPS (system roots plus `certs.d/<host>/*.crt`) or, for insecure and loopback
//!   registries, plain HTTP, and learns the challenge; a [`Session`] on one repository
//!   carries the bearer token or basic credentials and retries 5xx answers and broken
//!   connections with backoff.
//! - [`pull`] fetches a manifest (mirrors first for docker.io), narrows an index to this
//!   platform, and streams blobs into the store's `tmp/`, several at once, resuming
//!   broken downloads with `Range` and committing each only when its digest matches;
//!   [`push`] uploads what the registry lacks (HEAD first, cross-repository mounts,
//!   monolithic or chunked) and then the manifest, byte for byte as stored.
//! - [`search`] lists a registry's `_catalog`; [`artifact`] moves OCI artifacts that
//!   are not images (forge's build cache) with the same transfers.
//!
//! Errors are one enum per operation ([`ConfigError`], [`RegistryError`], [`PullError`],
//! [`PushError`]), each variant naming the URL, file or digest it is about.

pub mod artifact;
pub mod client;
pub mod config;
pub mod error;
pub mod pull;
pub mod push;
pub mod search;

pub use client::{Client, Endpoint, RetryPolicy, Session};
pub use config::{ConfigEnv, CredentialStore, Credentials, RegistryConfig};
pub use error::{ConfigError, PullError, PushError, RegistryError};
pub use pull::{pull, LayerStatus, PlatformSpec, Progress, PullOptions, Pulled, Silent};
pub use push::{push, PushOptions, Pushed};
pub use search::search;
