//! [`Runtime`]: the containers of a store, and what can be done to them
//! from any forge process (create, stop, kill, pause, stats, exec, commit,
//! remove). Starting and holding a container is [`crate::monitor`]'s.
//!
//! Every state change is a read-modify-write of `state.json` under the
//! container's `lock` file (flock), written through a temporary file and
//! a rename. State files are not fsynced: they describe processes, which
//! do not survive a crash either, and a reader reconciles a stale "running"
//! with the monitor's liveness.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use forge_oci::image::{build_manifest, descriptor};
use forge_oci::layer::{Compression, SourceKind};
use forge_oci::{media_types, Digest, History, Reference};
use forge_sandbox::{Joined, ProcessSpec, Usage};
use forge_store::lock::{self, LockMode};
use forge_store::{GcRoots, ImageUse, ImagesInUse, LockGuard, Store};

use crate::config::{ContainerConfig, CreateOptions, MountConfig, NetworkMode, PortConfig};
use crate::error::{io_err, Result, RuntimeError};
use crate::image::resolve_image;
use crate::names::{generate_name, new_id, valid_name};
use crate::state::{ContainerPaths, ContainerState, ProcessId, Status};
use crate::volumes::{self, Volumes};

/// A container: its configuration and its (reconciled) state.
#[derive(Debug, Clone)]
pub struct Container {
    pub config: ContainerConfig,
    pub state: ContainerState,
}

/// What `exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: Option<forge_sandbox::WindowSize>,
    pub stdin: bool,
}

/// The containers and volumes of one store.
#[derive(Debug, Clone)]
pub struct Runtime {
    store: Store,
    containers: PathBuf,
    volumes: Volumes,
}

/// `SIGTERM`, `TERM`, `15` → the signal number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| RuntimeError::Invalid {
            what: "signal",
            value: s.to_owned(),
            reason: "not a signal name or number".to_owned(),
        })
}

fn json_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(serde_json::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Json {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Write through a temporary file and a rename, so readers see the old or
/// the new contents, never half of them.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("writing", path))
}

/// Wait until `p` has exited (pidfd poll), at most `timeout`; true if it did.
fn wait_process(p: &ProcessId, timeout: Duration) -> bool {
    if !p.alive() {
        return true;
    }
    let Ok(fd) = pidfd(p) else {
        return !p.alive();
    };
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return true;
        }
        if n == 0 || left.is_zero() {
            return !p.alive();
        }
    }
}

/// A pidfd for `p`, checked to be the same process after opening (a pid
/// recycled between the check and the open is caught by the second check).
fn pidfd(p: &ProcessId) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain system call.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    if !p.alive() {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(fd)
}

pub(crate) fn send_signal(p: &ProcessId, signal: i32) -> io::Result<()> {
    let fd = pidfd(p)?;
    // SAFETY: plain system call on our pidfd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// docker's identity for a container process: the user's ids, its primary group also
/// among the supplementary ones (docker shows `groups=0(root)`, `groups=1000`), and
/// `HOME` from the user's passwd entry unless the environment sets it.
pub(crate) fn apply_user(p: &mut ProcessSpec, u: forge_sandbox::users::User) {
    p.uid = u.uid;
    p.gid = u.gid;
    p.additional_gids = std::iter::once(u.gid)
        .chain(u.additional_gids.into_iter().filter(|g| *g != u.gid))
        .collect();
    if !p.env.iter().any(|kv| kv.starts_with("HOME=")) {
        p.env.push(format!("HOME={}", u.home.display()));
    }
}

impl Runtime {
    pub fn open(store: Store) -> Result<Runtime> {
        let containers = store.dir(forge_store::StoreDir::Containers);
        let volumes = store.dir(forge_store::StoreDir::Volumes);
        for d in [&containers, &volumes, &containers.join(".names")] {
            fs::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        Ok(Runtime {
            store,
            containers,
            volumes: Volumes::new(volumes),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    pub fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths::new(&self.containers, id)
    }

    fn name_link(&self, name: &str) -> PathBuf {
        self.containers.join(".names").join(name)
    }

    /// Every container id.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.containers).map_err(io_err("reading", &self.containers))? {
            let e = e.map_err(io_err("reading", &self.containers))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && e.path().join("config.json").exists()
            {
                ids.push(name);
            }
        }
        Ok(ids)
    }

    /// A full id from a name, a full id or an unambiguous id prefix, as docker.
    pub fn resolve(&self, s: &str) -> Result<String> {
        if valid_name(s) {
            if let Ok(id) = fs::read_to_string(self.name_link(s)) {
                if self.paths(id.trim()).config().exists() {
                    return Ok(id.trim().to_owned());
                }
            }
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<String> = self
                .ids()?
                .into_iter()
                .filter(|id| id.starts_with(s))
                .collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().unwrap_or_default()),
                0 => {}
                _ => {
                    return Err(RuntimeError::Ambiguous {
                        prefix: s.to_owned(),
                        matches,
                    })
                }
            }
        }
        Err(RuntimeError::NoSuchContainer(s.to_owned()))
    }

    pub fn config(&self, id: &str) -> Result<ContainerConfig> {
        let p = self.paths(id).config();
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RuntimeError::NoSuchContainer(id.to_owned()))
            }
            Err(e) => return Err(io_err("reading", &p)(e)),
        };
        serde_json::from_slice(&bytes).map_err(json_err("reading", &p))
    }

    fn read_state(&self, id: &str) -> Result<ContainerState> {
        let p = self.paths(id).state();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(json_err("reading", &p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ContainerState::default()),
            Err(e) => Err(io_err("reading", &p)(e)),
        }
    }

    pub(crate) fn lock(&self, id: &str) -> Result<LockGuard> {
        let p = self.paths(id).lock();
        if !self.paths(id).dir.exists() {
            return Err(RuntimeError::NoSuchContainer(id.to_owned()));
        }
        Ok(lock::lock(&p, LockMode::Exclusive)?)
    }

    /// Change the state under the container's lock; returns the new state.
    pub fn update_state(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerState) -> Result<()>,
    ) -> Result<ContainerState> {
        let _guard = self.lock(id)?;
        let before = self.read_state(id)?;
        let mut st = before.clone();
        f(&mut st)?;
        let p = self.paths(id).state();
        let bytes = serde_json::to_vec_pretty(&st).map_err(json_err("writing", &p))?;
        // A check that changed nothing writes nothing.
        if serde_json::to_vec_pretty(&before).ok().as_deref() != Some(&bytes[..]) {
            write_atomic(&p, &bytes)?;
        }
        Ok(st)
    }

    /// The state, with a dead monitor's container marked exited (its
    /// sandbox was killed with it: the lifeline) and its leftovers removed.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let st = self.read_state(id)?;
        if !st.status.is_live() || st.monitor.is_some_and(|m| m.alive()) {
            return Ok(st);
        }
        let run_dir = self.paths(id).run_dir();
        self.update_state(id, |st| {
            if st.status.is_live() && !st.monitor.is_some_and(|m| m.alive()) {
                st.status = Status::Exited;
                st.exit_code = 137;
                st.error = "the container's monitor process died".to_owned();
                st.finished_at = forge_store::import::now_rfc3339();
                st.pid = None;
                st.monitor = None;
                let _ = forge_sandbox::cleanup_stale(&run_dir);
            }
            Ok(())
        })
    }

    pub fn get(&self, id: &str) -> Result<Container> {
        Ok(Container {
            config: self.config(id)?,
            state: self.state(id)?,
        })
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            // A container removed while listing is simply not listed.
            match self.get(&id) {
                Ok(c) => out.push(c),
                Err(RuntimeError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(out)
    }

    /// What garbage collection must keep for the containers: their images
    /// and the snapshots under them.
    pub fn gc_roots(&self) -> Result<GcRoots> {
        let mut roots = GcRoots::default();
        for id in self.ids()? {
            if let Ok(cfg) = self.config(&id) {
                if let Ok(d) = Digest::parse(&cfg.image_id) {
                    roots.blobs.insert(d);
                }
                if let Some(c) = cfg.top_chain.as_deref().and_then(|c| Digest::parse(c).ok()) {
                    let mut next = Some(c);
                    while let Some(c) = next {
                        next = self
                            .store
                            .snapshot_meta(&c)
                            .ok()
                            .flatten()
                            .and_then(|m| m.parent);
                        roots.snapshots.insert(c);
                    }
                }
            }
        }
        Ok(roots)
    }

    /// The images containers use, for `rmi` and `image prune` to respect.
    pub fn images_in_use(&self) -> Result<ImagesInUse> {
        let mut used = ImagesInUse::new();
        for id in self.ids()? {
            let Ok(cfg) = self.config(&id) else { continue };
            let Ok(image) = Digest::parse(&cfg.image_id) else {
                continue;
            };
            let running = self.state(&id).is_ok_and(|st| st.status.is_live());
            used.entry(image)
                .and_modify(|u| u.running |= running)
                .or_insert_with(|| ImageUse {
                    container: id[..12].to_string(),
                    running,
                });
        }
        Ok(used)
    }

    /// `docker create`: resolve the image, apply its config, create the
    /// container's directory, volumes and name.
    pub fn create(&self, image_name: &str, opts: CreateOptions) -> Result<Container> {
        let image = resolve_image(&self.store, image_name)?;
        let chains = self.store.unpack(&image)?;
        let ic = image.config.config.clone().unwrap_or_default();

        let (entrypoint, cmd) = match &opts.entrypoint {
            Some(ep) => (
                if ep.is_empty() {
                    Vec::new()
                } else {
                    vec![ep.clone()]
                },
                opts.cmd.clone(),
            ),
            None => (
                ic.entrypoint.clone().unwrap_or_default(),
                if opts.cmd.is_empty() {
                    ic.cmd.clone().unwrap_or_default()
                } else {
                    opts.cmd.clone()
                },
            ),
        };
        if entrypoint.is_empty() && cmd.is_empty() {
            return Err(RuntimeError::NoCommand);
        }
        let id = new_id();
        let hostname = opts.hostname.clone().unwrap_or_else(|| id[..12].to_owned());
        let mut env: Vec<String> = ic.env.clone().unwrap_or_default();
        let mut set_env = |kv: String| {
            let key = kv.split('=').next().unwrap_or("").to_owned();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(kv);
        };
        for kv in &opts.env {
            set_env(kv.clone());
        }
        let mut env_final = env;
        if !env_final.iter().any(|e| e.starts_with("PATH=")) {
            env_final.insert(0, format!("PATH={}", forge_sandbox::DEFAULT_PATH));
        }
        if !env_final.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env_final.insert(1.min(env_final.len()), format!("HOSTNAME={hostname}"));
        }
        if opts.tty && !env_final.iter().any(|e| e.starts_with("TERM=")) {
            env_final.push("TERM=xterm".to_owned());
        }
        let working_dir = opts
            .workdir
            .clone()
            .or(ic.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        if !working_dir.starts_with('/') {
            return Err(RuntimeError::Invalid {
                what: "working directory",
                value: working_dir,
                reason: "must be an absolute path".to_owned(),
            });
        }
        let stop_signal = opts
            .stop_signal
            .clone()
            .or(ic.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".to_owned());
        parse_signal(&stop_signal)?;

        let mut ports = opts.ports.clone();
        if opts.publish_all {
            for p in ic.exposed_ports.iter().flat_map(|m| m.keys()) {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if proto != "tcp" {
                    continue;
                }
                if let Ok(port) = num.parse::<u16>() {
                    if !ports.iter().any(|q| q.container_port == port) {
                        ports.push(PortConfig {
                            host_ip: std::net::IpAddr::from([0, 0, 0, 0]),
                            host_port: 0,
                            container_port: port,
                        });
                    }
                }
            }
        }
        if !ports.is_empty() && opts.network != NetworkMode::Private {
            return Err(RuntimeError::Invalid {
                what: "port mapping",
                value: format!("--network {}", opts.network.name()),
                reason: "ports are published only with the private network".to_owned(),
            });
        }

        let mut mounts: Vec<MountConfig> = Vec::new();
        for v in &opts.volumes {
            mounts.push(parse_volume(v)?);
        }
        for t in &opts.tmpfs {
            mounts.push(parse_tmpfs(t)?);
        }
        for target in ic.volumes.iter().flat_map(|m| m.keys()) {
            let target = normalize_target(target);
            if !mounts.iter().any(|m| m.target() == target) {
                mounts.push(MountConfig::Volume {
                    name: String::new(),
                    target,
                    readonly: false,
                    anonymous: true,
                });
            }
        }

        let name = match &opts.name {
            Some(n) if !valid_name(n) => return Err(RuntimeError::InvalidName(n.clone())),
            Some(n) => n.clone(),
            None => String::new(),
        };
        let paths = self.paths(&id);
        let staging = self.containers.join(format!(".new-{id}"));
        fs::create_dir(&staging).map_err(io_err("creating", &staging))?;
        let result = (|| -> Result<Container> {
            for d in ["upper", "work", "run"] {
                fs::create_dir(staging.join(d)).map_err(io_err("creating", staging.join(d)))?;
            }
            let lowerdirs = self.store.view(chains.last())?;
            // Volumes: anonymous ones get a name, new ones the image's content.
            for m in &mut mounts {
                if let MountConfig::Volume {
                    name,
                    target,
                    anonymous,
                    ..
                } = m
                {
                    if *anonymous {
                        *name = new_id();
                    }
                    let (vol, created) = self.volumes.create(name, BTreeMap::new(), *anonymous)?;
                    if created && !lowerdirs.is_empty() {
                        seed_from_image(&lowerdirs, target, &vol.mountpoint)?;
                    }
                }
            }
            let name = if name.is_empty() {
                self.reserve_generated_name(&id)?
            } else {
                self.reserve_name(&name, &id)?;
                name.clone()
            };
            let cfg = ContainerConfig {
                id: id.clone(),
                name,
                created: forge_store::import::now_rfc3339(),
                image: image_name.to_owned(),
                image_id: image.id.to_string(),
                top_chain: chains.last().map(|c| c.to_string()),
                entrypoint,
                cmd,
                env: env_final,
                working_dir,
                user: opts.user.clone().or(ic.user.clone()).unwrap_or_default(),
                hostname,
                network: opts.network,
                mounts,
                ports,
                memory: opts.memory,
                cpus: opts.cpus,
                pids_limit: opts.pids_limit,
                stop_signal,
                stop_timeout: opts.stop_timeout.unwrap_or(10),
                labels: opts.labels.clone(),
                auto_remove: opts.auto_remove,
                read_only: opts.read_only,
                tty: opts.tty,
                open_stdin: opts.open_stdin,
            };
            let p = staging.join("config.json");
            let bytes = serde_json::to_vec_pretty(&cfg).map_err(json_err("writing", &p))?;
            fs::write(&p, bytes).map_err(io_err("writing", &p))?;
            let st = ContainerState::default();
            let p = staging.join("state.json");
            let bytes = serde_json::to_vec_pretty(&st).map_err(json_err("writing", &p))?;
            fs::write(&p, bytes).map_err(io_err("writing", &p))?;
            fs::rename(&staging, &paths.dir).map_err(io_err("creating", &paths.dir))?;
            Ok(Container {
                config: cfg,
                state: st,
            })
        })();
        if result.is_err() {
            let _ = forge_store::snapshot::remove_tree(&staging);
        }
        result
    }

    fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let link = self.name_link(name);
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&link)
            {
                Ok(mut f) => {
                    io::Write::write_all(&mut f, id.as_bytes())
                        .map_err(io_err("writing", &link))?;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let other = fs::read_to_string(&link).unwrap_or_default();
                    let other = other.trim();
                    // A name left by a container that is gone (or one being
                    // written right now, seen empty) is not taken.
                    if !other.is_empty()
                        && !self.paths(other).dir.exists()
                        && !self.containers.join(format!(".new-{other}")).exists()
                    {
                        let _ = fs::remove_file(&link);
                        continue;
                    }
                    return Err(RuntimeError::NameInUse {
                        name: name.to_owned(),
                        id: other.to_owned(),
                    });
                }
                Err(e) => return Err(io_err("creating", &link)(e)),
            }
        }
    }

    fn reserve_generated_name(&self, id: &str) -> Result<String> {
        // docker appends a digit once random picks keep colliding.
        let mut attempt = 0u32;
        loop {
            let mut name = generate_name();
            if attempt > 5 {
                name.push_str(&attempt.to_string());
            }
            match self.reserve_name(&name, id) {
                Ok(()) => return Ok(name),
                Err(RuntimeError::NameInUse { .. }) if attempt < 1000 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The chain ID of the image's top layer under a container.
    pub(crate) fn top_chain(&self, cfg: &ContainerConfig) -> Result<Option<Digest>> {
        cfg.top_chain
            .as_deref()
            .map(Digest::parse)
            .transpose()
            .map_err(|e| RuntimeError::Image {
                image: cfg.image.clone(),
                reason: e.to_string(),
            })
    }

    /// The snapshot dirs of a container's image, top-most first.
    pub(crate) fn image_lowerdirs(&self, cfg: &ContainerConfig) -> Result<Vec<PathBuf>> {
        Ok(self.store.view(self.top_chain(cfg)?.as_ref())?)
    }

    /// A read-only look at a container's filesystem as it stands: its image
    /// with its upper dir on top, mounted detached.
    pub(crate) fn merged_view(&self, cfg: &ContainerConfig) -> Result<forge_sandbox::RootFsView> {
        Ok(forge_sandbox::RootFsView::open(
            &forge_sandbox::RootFs::Overlay {
                lowerdirs: self.image_lowerdirs(cfg)?,
                upperdir: Some(self.paths(&cfg.id).upper()),
                workdir: None,
            },
        )?)
    }

    /// Runs `f` with a running container paused (the freezer), so what it
    /// reads of the container's files is one moment's; resumed afterwards.
    fn while_paused<T>(&self, c: &Container, f: impl FnOnce() -> T) -> T {
        let id = &c.config.id;
        let paused_here = c.state.status == Status::Running && self.set_paused(id, true).is_ok();
        let result = f();
        if paused_here {
            let _ = self.set_paused(id, false);
        }
        result
    }

    /// `docker diff`: the container's changes to its image's filesystem.
    pub fn diff(&self, id: &str) -> Result<Vec<crate::Change>> {
        let cfg = self.config(id)?;
        crate::changes::changes(&self.paths(id).upper(), &self.image_lowerdirs(&cfg)?)
    }

    /// `docker export`: the container's whole filesystem (its image with its
    /// changes applied) as one plain tar into `w`. A running container is
    /// paused meanwhile, as for commit, so the tar is one moment's tree.
    pub fn export<W: io::Write>(&self, id: &str, w: W) -> Result<W> {
        let c = self.get(id)?;
        let view = self.merged_view(&c.config)?;
        let written = self.while_paused(&c, || {
            forge_oci::layer::write_layer(
                &view.path(),
                &forge_oci::layer::LayerOptions::with_compression(Compression::None),
                w,
            )
        });
        Ok(written?.0)
    }

    /// The host pids of a running container's processes (its cgroup's), for
    /// `docker top`; without forge's own pid 1, which only reaps and forwards.
    pub fn processes(&self, id: &str) -> Result<Vec<u32>> {
        let c = self.get(id)?;
        let Some(cgroup) = c.state.cgroups.first().filter(|_| c.state.status.is_live()) else {
            return Err(RuntimeError::State {
                id: id.to_owned(),
                state: c.state.status.name(),
                action: "it is not running",
            });
        };
        let p = cgroup.join("cgroup.procs");
        let procs = fs::read_to_string(&p).map_err(io_err("reading", &p))?;
        let init = c.state.pid.map(|p| p.pid);
        Ok(procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|p| Some(*p) != init)
            .collect())
    }

    /// `docker rename`: the container answers to `new` from now on; the old
    /// name is free. Allowed in any state, as docker.
    pub fn rename(&self, id: &str, new: &str) -> Result<()> {
        if !valid_name(new) {
            return Err(RuntimeError::InvalidName(new.to_owned()));
        }
        let _guard = self.lock(id)?;
        let mut cfg = self.config(id)?;
        if cfg.name == new {
            return Err(RuntimeError::Invalid {
                what: "name",
                value: new.to_owned(),
                reason: "Renaming a container with the same name as its current name".to_owned(),
            });
        }
        self.reserve_name(new, id)?;
        let old = std::mem::replace(&mut cfg.name, new.to_owned());
        let p = self.paths(id).config();
        let written = serde_json::to_vec_pretty(&cfg)
            .map_err(json_err("writing", &p))
            .and_then(|bytes| write_atomic(&p, &bytes));
        if let Err(e) = written {
            let _ = fs::remove_file(self.name_link(new));
            return Err(e);
        }
        let link = self.name_link(&old);
        if fs::read_to_string(&link).is_ok_and(|s| s.trim() == id) {
            let _ = fs::remove_file(&link);
        }
        Ok(())
    }

    /// `docker stop`: the stop signal, then SIGKILL after `timeout` seconds
    /// (the container's `--stop-timeout` when `None`).
    pub fn stop(&self, id: &str, timeout: Option<u64>) -> Result<()> {
        let c = self.get(id)?;
        if !c.state.status.is_live() {
            return Ok(());
        }
        let Some(pid) = c.state.pid else {
            return Ok(());
        };
        let signal = parse_signal(&c.config.stop_signal)?;
        let _ = send_signal(&pid, signal);
        if c.state.status == Status::Paused {
            let _ = forge_sandbox::freeze(&c.state.cgroups, false);
        }
        let timeout = Duration::from_secs(timeout.unwrap_or(c.config.stop_timeout));
        if !wait_process(&pid, timeout) {
            let _ = send_signal(&pid, libc::SIGKILL);
            wait_process(&pid, Duration::from_secs(10));
        }
        self.wait_recorded(id, Duration::from_secs(10))
    }

    /// Wait until the monitor has recorded the end (or died).
    fn wait_recorded(&self, id: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = match self.state(id) {
                Ok(st) => st,
                // Removed by its monitor (--rm): over.
                Err(RuntimeError::NoSuchContainer(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if !st.status.is_live() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::State {
                    id: id.to_owned(),
                    state: st.status.name(),
                    action: "its monitor did not record the exit in time",
                });
            }
            if let Some(m) = st.monitor {
                // The monitor exits right after recording; for an attached
                // run (forge itself) poll instead.
                if m.pid != std::process::id() {
                    wait_process(&m, Duration::from_millis(50));
                    continue;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where `forge wait`s register, so a `--rm` container's monitor can
    /// hand them the exit status before the container is gone.
    fn waiters_dir(&self) -> PathBuf {
        self.containers.join(".waiters")
    }

    /// `docker wait`: block until the container stops; its exit status.
    /// A container that is not running (created, exited) answers at once.
    pub fn wait(&self, id: &str) -> Result<i32> {
        let dir = self.waiters_dir();
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let me = dir.join(format!("{id}.{}", std::process::id()));
        fs::write(&me, b"").map_err(io_err("creating", &me))?;
        let told = || {
            fs::read_to_string(&me)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        };
        let result = (|| {
            let first = self.state(id)?;
            let Some(monitor) = first.monitor.filter(|_| first.status.is_live()) else {
                return Ok(first.exit_code);
            };
            loop {
                if let Some(code) = told() {
                    return Ok(code);
                }
                // The monitor records the end and exits; a restart meanwhile
                // brings a new monitor, and this wait is for the first end.
                let ended = wait_process(&monitor, Duration::from_millis(200));
                if let Some(code) = told() {
                    return Ok(code);
                }
                if !self.paths(id).config().exists() {
                    return Err(RuntimeError::NoSuchContainer(id.to_owned()));
                }
                if ended {
                    return Ok(self.state(id)?.exit_code);
                }
            }
        })();
        let _ = fs::remove_file(&me);
        result
    }

    /// Give every live `forge wait` of `id` its exit status (atomically:
    /// a waiter reads either nothing or the whole number); files of waiters
    /// that died are removed.
    pub(crate) fn tell_waiters(&self, id: &str, code: i32) {
        let dir = self.waiters_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((of, pid)) = name.split_once('.') else {
                continue;
            };
            // Other names are another monitor's temp files, about to be renamed.
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if ProcessId::of(pid).is_none() {
                let _ = fs::remove_file(e.path());
            } else if of == id {
                let _ = write_atomic(&e.path(), code.to_string().as_bytes());
            }
        }
    }

    /// `docker kill -s SIG`.
    pub fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let c = self.get(id)?;
        let pid = match (c.state.status.is_live(), c.state.pid) {
            (true, Some(pid)) => pid,
            _ => {
                return Err(RuntimeError::State {
                    id: id.to_owned(),
                    state: c.state.status.name(),
                    action: "cannot kill a container that is not running",
                })
            }
        };
        send_signal(&pid, signal).map_err(|e| {
            RuntimeError::Sandbox(forge_sandbox::SandboxError::Signal {
                signal,
                source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ESRCH)),
            })
        })?;
        if signal == libc::SIGKILL {
            if c.state.status == Status::Paused {
                let _ = forge_sandbox::freeze(&c.state.cgroups, false);
            }
            wait_process(&pid, Duration::from_secs(10));
            self.wait_recorded(id, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// `docker pause` / `unpause` (cgroup freezer).
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.update_state(id, |st| {
            let (want, action) = if paused {
                (Status::Running, "cannot pause it")
            } else {
                (Status::Paused, "cannot unpause it")
            };
            let live = st.monitor.is_some_and(|m| m.alive());
            if st.status != want || !live {
                return Err(RuntimeError::State {
                    id: id.to_owned(),
                    state: if live {
                        st.status.name()
                    } else {
                        "not running"
                    },
                    action,
                });
            }
            forge_sandbox::freeze(&st.cgroups, paused)?;
            st.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
            Ok(())
        })
        .map(|_| ())
    }

    /// Current cgroup figures of a running container.
    pub fn stats(&self, id: &str) -> Result<Usage> {
        let st = self.state(id)?;
        if !st.status.is_live() {
            return Ok(Usage::default());
        }
        Ok(forge_sandbox::usage_of(&st.cgroups))
    }

    /// `docker rm [-f] [-v]`.
    pub fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let st = self.state(id)?;
        if st.status.is_live() {
            if !force {
                return Err(RuntimeError::RemoveRunning {
                    id: id.to_owned(),
                    state: st.status.name(),
                });
            }
            if let Some(pid) = st.pid {
                let _ = send_signal(&pid, libc::SIGKILL);
                if st.status == Status::Paused {
                    let _ = forge_sandbox::freeze(&st.cgroups, false);
                }
                wait_process(&pid, Duration::from_secs(10));
            }
            // The monitor removes the sandbox's cgroups and closes its host
            // ports as it exits: wait for it.
            if let Some(m) = st.monitor {
                if m.pid != std::process::id() {
                    wait_process(&m, Duration::from_secs(10));
                }
            }
            match self.wait_recorded(id, Duration::from_secs(10)) {
                Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.remove_stopped(id, volumes)
    }

    /// Remove a container whose processes are gone.
    pub(crate) fn remove_stopped(&self, id: &str, volumes: bool) -> Result<()> {
        let cfg = match self.config(id) {
            Ok(c) => c,
            Err(RuntimeError::NoSuchContainer(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let paths = self.paths(id);
        let _ = forge_sandbox::cleanup_stale(&paths.run_dir());
        let doomed = self.containers.join(format!(".removing-{id}"));
        match fs::rename(&paths.dir, &doomed) {
            Ok(()) => {}
            // Removed by someone else meanwhile (its --rm monitor, another rm).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("removing", &paths.dir)(e)),
        }
        let link = self.name_link(&cfg.name);
        if fs::read_to_string(&link).is_ok_and(|s| s.trim() == id) {
            let _ = fs::remove_file(&link);
        }
        forge_store::snapshot::remove_tree(&doomed).map_err(io_err("removing", &doomed))?;
        if volumes {
            for m in &cfg.mounts {
                if let MountConfig::Volume {
                    name,
                    anonymous: true,
                    ..
                } = m
                {
                    if self.volume_users(name)?.is_empty() {
                        match self.volumes.remove(name) {
                            Ok(()) | Err(RuntimeError::NoSuchVolume(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// docker's `system df`: the store's images (those containers use are active
    /// and not reclaimable) and build cache, the containers (running ones active;
    /// the stopped ones' writable layers reclaimable) and the volumes (those a
    /// container mounts active; the others reclaimable).
    pub fn disk_usage(&self) -> Result<forge_store::DiskUsage> {
        let mut du = self.store.disk_usage(&self.images_in_use()?)?;
        let mut mounted: BTreeSet<String> = BTreeSet::new();
        for c in self.list()? {
            let size = forge_store::snapshot::tree_size(&self.paths(&c.config.id).upper());
            du.containers += 1;
            du.containers_size += size;
            if c.state.status.is_live() {
                du.containers_active += 1;
            } else {
                du.containers_reclaimable += size;
            }
            for m in &c.config.mounts {
                if let MountConfig::Volume { name, .. } = m {
                    mounted.insert(name.clone());
                }
            }
        }
        for v in self.volumes.list()? {
            let size = forge_store::snapshot::tree_size(&v.mountpoint);
            du.volumes += 1;
            du.volumes_size += size;
            if mounted.contains(&v.meta.name) {
                du.volumes_active += 1;
            } else {
                du.volumes_reclaimable += size;
            }
        }
        Ok(du)
    }

    /// Containers (names) that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        let mut users = Vec::new();
        for id in self.ids()? {
            if let Ok(cfg) = self.config(&id) {
                if cfg
                    .mounts
                    .iter()
                    .any(|m| matches!(m, MountConfig::Volume { name: n, .. } if n == name))
                {
                    users.push(cfg.name.clone());
                }
            }
        }
        Ok(users)
    }

    /// `docker volume rm`: refused while a container uses it.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let users = self.volume_users(name)?;
        if !users.is_empty() && !force {
            return Err(RuntimeError::VolumeInUse {
                name: name.to_owned(),
                users,
            });
        }
        self.volumes.remove(name)
    }

    /// `docker volume prune [-a]`: unused anonymous volumes (all unused with `all`).
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.volumes.list()? {
            if (all || v.meta.anonymous) && self.volume_users(&v.meta.name)?.is_empty() {
                self.volumes.remove(&v.meta.name)?;
                removed.push(v.meta.name);
            }
        }
        Ok(removed)
    }

    /// `docker container prune`: every container not running.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for c in self.list()? {
            if !c.state.status.is_live() {
                self.remove_stopped(&c.config.id, false)?;
                removed.push(c.config.id);
            }
        }
        Ok(removed)
    }

    /// `docker exec`: a process in the running container's namespaces and cgroups.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<Joined> {
        let c = self.get(id)?;
        let pid = match (c.state.status, c.state.pid) {
            (Status::Running, Some(pid)) if pid.alive() => pid,
            (Status::Paused, _) => {
                return Err(RuntimeError::State {
                    id: id.to_owned(),
                    state: "paused",
                    action: "unpause the container before exec",
                })
            }
            _ => {
                return Err(RuntimeError::State {
                    id: id.to_owned(),
                    state: "not running",
                    action: "cannot exec in it",
                })
            }
        };
        if opts.cmd.is_empty() {
            return Err(RuntimeError::NoCommand);
        }
        let mut p = ProcessSpec::new(opts.cmd.clone());
        p.no_new_privileges = false;
        let mut env = c.config.env.clone();
        for kv in &opts.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.env = env;
        p.cwd = PathBuf::from(opts.workdir.clone().unwrap_or(c.config.working_dir.clone()));
        let mut user = opts.user.clone().unwrap_or(c.config.user.clone());
        if user.is_empty() {
            user = "0".into();
        }
        let root = PathBuf::from(format!("/proc/{}/root", pid.pid));
        let dir = fs::File::open(&root).map_err(io_err("opening", &root))?;
        let u = forge_sandbox::users::resolve_user_in(dir.as_fd(), &user).map_err(|e| {
            RuntimeError::User {
                user: user.clone(),
                reason: e.to_string(),
            }
        })?;
        apply_user(&mut p, u);
        p.tty = opts.tty;
        p.stdin = if opts.stdin {
            forge_sandbox::Stdio::Inherit
        } else {
            forge_sandbox::Stdio::Null
        };
        Ok(forge_sandbox::exec_in(pid.pid, &c.state.cgroups, &p)?)
    }

    /// `docker commit`: the container's changes (its upper dir) become a
    /// layer on top of its image; the new image gets `name` if given.
    /// A running container is paused meanwhile. Returns the image id.
    pub fn commit(&self, id: &str, name: Option<&Reference>, comment: &str) -> Result<Digest> {
        let c = self.get(id)?;
        self.while_paused(&c, || self.commit_inner(&c, name, comment))
    }

    fn commit_inner(
        &self,
        c: &Container,
        name: Option<&Reference>,
        comment: &str,
    ) -> Result<Digest> {
        let image = self.store.resolve(&c.config.image_id)?.image;
        let upper = self.paths(&c.config.id).upper();
        let layer = self.store.write_layer_blob(
            &upper,
            SourceKind::OverlayUpper,
            Compression::Gzip,
            None,
            None,
        )?;
        let mut config = image.config.clone();
        let now = forge_store::import::now_rfc3339();
        config.created = Some(now.clone());
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        let mut cc = config.config.clone().unwrap_or_default();
        cc.env = Some(c.config.env.clone());
        cc.cmd = Some(c.config.cmd.clone());
        cc.entrypoint = (!c.config.entrypoint.is_empty()).then(|| c.config.entrypoint.clone());
        config.config = Some(cc);
        config.history.get_or_insert_with(Vec::new).push(History {
            created: Some(now),
            created_by: Some(c.config.args().join(" ")),
            comment: (!comment.is_empty()).then(|| comment.to_owned()),
            ..History::default()
        });
        let config_desc = self
            .store
            .put_json(media_types::OCI_CONFIG, &config, "config")?;
        let mut layers = image.layers.clone();
        layers.push(descriptor(
            layer.compression.oci_media_type(),
            &layer.digest,
            layer.size,
        ));
        let manifest = build_manifest(config_desc.clone(), layers, None, false);
        let manifest_desc =
            self.store
                .put_json(media_types::OCI_MANIFEST, &manifest, "manifest")?;
        let parent = self.top_chain(&c.config)?;
        self.store
            .snapshot_layer(parent.as_ref(), &layer.digest, &layer.diff_id)?;
        let names: Vec<Reference> = name.into_iter().cloned().collect();
        self.store.add_image(&manifest_desc, &names)?;
        Ok(Digest::from_oci(config_desc.digest()).map_err(|source| {
            forge_store::StoreError::Digest {
                what: "config".to_owned(),
                source,
            }
        })?)
    }
}

/// `/a/b/` → `/a/b`.
fn normalize_target(t: &str) -> String {
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// docker's `-v`: `/host:/ctr[:ro|rw]`, `name:/ctr[:ro|rw]`, `/ctr` (anonymous).
pub fn parse_volume(spec: &str) -> Result<MountConfig> {
    let invalid = |reason: &str| RuntimeError::Invalid {
        what: "volume",
        value: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [s, t] if t.starts_with('/') => (Some(*s), *t, ""),
        [t, m] => (None, *t, *m),
        [s, t, m] => (Some(*s), *t, *m),
        _ => return Err(invalid("use SOURCE:TARGET[:ro]")),
    };
    if !target.starts_with('/') {
        return Err(invalid("the target must be an absolute path"));
    }
    let readonly = match mode {
        "" | "rw" => false,
        "ro" => true,
        _ => return Err(invalid("the mode must be ro or rw")),
    };
    let target = normalize_target(target);
    Ok(match source {
        None => MountConfig::Volume {
            name: String::new(),
            target,
            readonly,
            anonymous: true,
        },
        Some(s) if s.starts_with('/') => {
            // docker's daemon refuses a bind source that does not exist.
            fs::metadata(s).map_err(|e| invalid(&format!("bind source: {e}")))?;
            MountConfig::Bind {
                source: s.to_owned(),
                target,
                readonly,
            }
        }
        Some(s) => {
            if !valid_name(s) {
                return Err(RuntimeError::InvalidVolumeName(s.to_owned()));
            }
            MountConfig::Volume {
                name: s.to_owned(),
                target,
                readonly,
                anonymous: false,
            }
        }
    })
}

/// docker's `--tmpfs /path[:size=64m,mode=1777]`.
pub fn parse_tmpfs(spec: &str) -> Result<MountConfig> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !target.starts_with('/') {
        return Err(RuntimeError::Invalid {
            what: "tmpfs",
            value: spec.to_owned(),
            reason: "the target must be an absolute path".to_owned(),
        });
    }
    let mut size = None;
    let mut mode = 0o1777;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if let Some(v) = o.strip_prefix("size=") {
            size = Some(crate::config::parse_memory(v)?);
        } else if let Some(v) = o.strip_prefix("mode=") {
            mode = u32::from_str_radix(v, 8).map_err(|_| RuntimeError::Invalid {
                what: "tmpfs mode",
                value: v.to_owned(),
                reason: "an octal mode".to_owned(),
            })?;
        }
    }
    Ok(MountConfig::Tmpfs {
        target: normalize_target(target),
        size,
        mode,
    })
}

/// Copy what the image has at `target` into a new volume, reading the
/// image through a detached read-only view of its layers.
fn seed_from_image(lowerdirs: &[PathBuf], target: &str, dest: &Path) -> Result<()> {
    let view = forge_sandbox::RootFsView::open(&forge_sandbox::RootFs::Overlay {
        lowerdirs: lowerdirs.to_vec(),
        upperdir: None,
        workdir: None,
    })?;
    let base = view.path();
    // Walk the target one component at a time and refuse symlinks, so the
    // copy never reads outside the image.
    let mut src = base.clone();
    for comp in Path::new(target).components().skip(1) {
        src.push(comp);
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => {}
            _ => return Ok(()),
        }
    }
    volumes::seed(&src, dest)
}
