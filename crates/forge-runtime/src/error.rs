//! [`RuntimeError`]: what can go wrong with containers and volumes.

use std::io;
use std::path::PathBuf;

use forge_sandbox::SandboxError;
use forge_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    Json {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("multiple containers match {prefix:?}: {}", matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("invalid volume name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidVolumeName(String),
    #[error("remove volume {name}: volume is in use - [{}]", users.join(", "))]
    VolumeInUse { name: String, users: Vec<String> },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("No command specified")]
    NoCommand,
    #[error("container {id} is {state}: {action}")]
    State {
        id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("You cannot remove a {state} container {id}. Stop the container before attempting removal or force remove")]
    RemoveRunning { id: String, state: &'static str },
    #[error("starting container {id}: {reason}")]
    Start {
        id: String,
        reason: String,
        code: i32,
    },
    #[error("the container monitor of {id} could not be started: {source}")]
    Monitor { id: String, source: io::Error },
    /// `docker cp` refusals: `no such directory: c1:/x`.
    #[error("{reason}: {path}")]
    Copy { path: String, reason: String },
    #[error("archiving the container's files: {0}")]
    Archive(#[from] forge_oci::layer::LayerWriteError),
    #[error("user {user}: {reason}")]
    User { user: String, reason: String },
}

impl RuntimeError {
    /// docker's exit status for a failed `run`/`start`/`exec`: 127 when the
    /// command is not found, 126 when it cannot be executed, 125 for the rest.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Sandbox(e) => e.exit_code().unwrap_or(125),
            RuntimeError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io { op, path, source }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
