//! Containers and volumes on a forge store, without a daemon.
//!
//! A [`Runtime`] opens the store's `containers/` and `volumes/`.
//! [`Runtime::create`] turns an image (a store reference, or an `oci:` /
//! `oci-archive:` / `docker-archive:` path; module `image`) and docker's
//! [`CreateOptions`] into a [`ContainerConfig`] as docker's daemon does
//! (ENTRYPOINT + CMD, Env, WorkingDir, User, VOLUMEs as anonymous volumes,
//! ExposedPorts for `-P`, StopSignal) and lays out `containers/<id>/`:
//!
//! ```text
//! config.json     the ContainerConfig (fixed)
//! state.json      the ContainerState: status, pids, cgroups, ports, exit code
//! lock            flock around every state change
//! upper/ work/    the overlay's writable layer (kept across restarts; `commit` reads it)
//! run/            the sandbox's lock file and cgroup records
//! container.log   docker json-file lines with timestamps
//! ```
//!
//! Module `monitor` runs containers: [`Runtime::start`] re-executes forge as
//! a detached monitor per container ([`Launcher`]) that holds the
//! [`forge_sandbox::Sandbox`], forwards its ports, writes its logs and
//! records its end; [`Runtime::run_attached`] does the same inside forge.
//! Everything else ([`Runtime::stop`], [`Runtime::kill`],
//! [`Runtime::set_paused`], [`Runtime::stats`], [`Runtime::exec`],
//! [`Runtime::commit`], [`Runtime::remove`]) works from any process on the
//! recorded pids (checked by start time) and cgroups. A monitor that died
//! shows its container as exited ([`Runtime::state`] reconciles).
//! [`Volumes`] holds named and anonymous volumes.

mod changes;
mod config;
mod copy;
mod error;
mod image;
mod logs;
mod monitor;
mod names;
mod runtime;
mod state;
mod volumes;

pub use changes::{Change, ChangeKind};
pub use config::{
    parse_memory, ContainerConfig, CreateOptions, MountConfig, NetworkMode, PortConfig,
};
pub use copy::CopyOptions;
pub use error::{Result, RuntimeError};
pub use image::resolve_image;
pub use logs::{copy_entries, LogEntry, LogOptions, LogWriter};
pub use monitor::{detach, terminal_size, Launcher, RawMode};
pub use names::{generate_name, valid_name};
pub use runtime::{parse_signal, parse_tmpfs, parse_volume, Container, ExecOptions, Runtime};
pub use state::{ContainerPaths, ContainerState, ProcessId, Status};
pub use volumes::{Volume, VolumeMeta, Volumes};
