//! docker's container commands: `run`, `create`, `start`, `stop`, `restart`,
//! `kill`, `rm`, `ps`, `logs`, `exec`, `pause`, `unpause`, `stats`, `commit`,
//! `container prune`, `inspect` of a container, and the hidden
//! `container-monitor` a detached container runs under. The work is
//! forge-runtime's; this module parses flags and prints.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use forge_runtime::{
    Container, CreateOptions, ExecOptions, Launcher, LogOptions, MountConfig, NetworkMode,
    PortConfig, RawMode, Runtime, RuntimeError, Status,
};
use serde_json::{json, Value};

use super::format::{label_matches, Filters, Format};
use super::human::{
    created_at, created_since, ellipsis, fail, human_duration, now_unix, open_runtime,
    padded_table, store_root, table,
};

/// docker's exit status when forge itself fails to run a container.
const EXIT_FORGE: u8 = 125;

/// `forge: <error>` and docker's `run` exit status (125, 126, 127).
fn run_failure(e: &RuntimeError) -> ExitCode {
    eprintln!("forge: {e}");
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_FORGE))
}

/// The runtime and the full id of container `name`, or the exit status after
/// saying why not.
fn open_container(root: Option<PathBuf>, name: &str) -> Result<(Runtime, String), ExitCode> {
    let rt = open_runtime(root)?;
    let id = rt.resolve(name).map_err(fail)?;
    Ok((rt, id))
}

fn launcher(root: Option<PathBuf>) -> anyhow::Result<Launcher> {
    let root = std::path::absolute(store_root(root)).context("resolving the store path")?;
    Ok(Launcher {
        program: std::env::current_exe().context("finding the forge binary")?,
        args: vec!["--root".into(), root.into(), "container-monitor".into()],
    })
}

fn unix(rfc3339: &str) -> Option<i64> {
    forge_store::images::parse_rfc3339(rfc3339)
}

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Automatically remove the container and its anonymous volumes when it exits
    #[arg(long)]
    rm: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass forge's own)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Bind mount a volume (HOST:CTR[:ro], NAME:CTR[:ro], CTR)
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Mount a tmpfs directory (PATH[:size=N,mode=M])
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Publish a container's port to the host ([IP:][HOST:]CTR[/tcp])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Network: private (default, its own namespace), none, host
    #[arg(long, default_value = "private")]
    network: String,
    /// Memory limit (e.g. 64m)
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<u64>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Run an init inside the container (always: forge's pid 1 reaps and forwards signals)
    #[arg(long)]
    init: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing", value_parser = ["always", "missing", "never"])]
    pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// The image: a name in the store, oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE
    image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// `--env-file`: `KEY=VALUE` lines, `#` comments, a bare `KEY` taken from forge's env.
fn env_entry(kv: &str) -> Option<String> {
    if kv.contains('=') {
        return Some(kv.to_owned());
    }
    std::env::var(kv).ok().map(|v| format!("{kv}={v}"))
}

fn create_options(a: &CreateArgs) -> anyhow::Result<CreateOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.extend(env_entry(line));
        }
    }
    env.extend(a.env.iter().filter_map(|kv| env_entry(kv)));
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(CreateOptions {
        name: a.name.clone(),
        entrypoint: a.entrypoint.clone(),
        cmd: a.command.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        volumes: a.volumes.clone(),
        tmpfs: a.tmpfs.clone(),
        read_only: a.read_only,
        ports: a
            .publish
            .iter()
            .map(|p| PortConfig::parse(p))
            .collect::<Result<_, _>>()?,
        publish_all: a.publish_all,
        network: NetworkMode::parse(&a.network)?,
        memory: a
            .memory
            .as_deref()
            .map(forge_runtime::parse_memory)
            .transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        labels,
        auto_remove: a.rm,
        tty: a.tty,
        open_stdin: a.interactive,
    })
}

fn create_container(rt: &Runtime, a: &CreateArgs) -> Result<Container, ExitCode> {
    let forge_error = |e: &dyn std::fmt::Display| {
        eprintln!("forge: {e:#}");
        ExitCode::from(EXIT_FORGE)
    };
    let opts = create_options(a).map_err(|e| forge_error(&format!("{e:#}")))?;
    pull_for_run(rt.store(), &a.image, &a.pull, a.quiet).map_err(|e| forge_error(&e))?;
    rt.create(&a.image, opts).map_err(|e| run_failure(&e))
}

/// docker's `--pull` for run and create: a store name that is missing (or any, with
/// `always`) is pulled first, its progress on stderr so stdout stays the container's.
/// Images given by transport (`oci:`, `oci-archive:`, `docker-archive:`) are files.
fn pull_for_run(
    store: &forge_store::Store,
    image: &str,
    policy: &str,
    quiet: bool,
) -> Result<(), String> {
    if ["oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .any(|t| image.starts_with(t))
        || policy == "never"
    {
        return Ok(());
    }
    let missing = matches!(
        store.resolve(image),
        Err(forge_store::StoreError::NoSuchImage(_))
    );
    if policy == "missing" && !missing {
        return Ok(());
    }
    let reference = forge_oci::Reference::parse(image).map_err(|e| e.to_string())?;
    if missing {
        eprintln!("Unable to find image '{}' locally", reference.familiar());
    }
    let client = super::pull::client().map_err(|e| format!("{e:#}"))?;
    let display = super::pull::LayerDisplay::on_stderr(quiet);
    // As docker's run: no "Using default tag" line.
    super::pull::pull_reporting(
        &client,
        store,
        &reference,
        &reference,
        &forge_registry::PullOptions::default(),
        &display,
    )
    .map_err(|e| e.to_string())
}

pub fn run(root: Option<PathBuf>, args: RunArgs) -> anyhow::Result<ExitCode> {
    let rt = match open_runtime(root.clone()) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let c = match create_container(&rt, &args.create) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let id = c.config.id.clone();
    if args.detach {
        return match rt.start(&id, &launcher(root)?) {
            Ok(()) => {
                println!("{id}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                if c.config.auto_remove {
                    let _ = rt.remove(&id, true, true);
                }
                Ok(run_failure(&e))
            }
        };
    }
    match rt.run_attached(&id) {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e) => {
            if c.config.auto_remove {
                let _ = rt.remove(&id, true, true);
            }
            Ok(run_failure(&e))
        }
    }
}

pub fn create(root: Option<PathBuf>, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let rt = match open_runtime(root) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    match create_container(&rt, &args) {
        Ok(c) => {
            println!("{}", c.config.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

/// The hidden `forge container-monitor ID` a detached container runs under.
pub fn monitor(root: Option<PathBuf>, id: String) -> anyhow::Result<ExitCode> {
    forge_runtime::detach().context("detaching the container monitor")?;
    let store = forge_store::Store::open(&store_root(root))?;
    let rt = Runtime::open(store)?;
    Ok(ExitCode::from(rt.monitor(&id).clamp(0, 255) as u8))
}

/// Runs `f` on each named container, printing the name on success as docker
/// does; exit status 1 if any failed.
fn each(
    root: Option<PathBuf>,
    names: &[String],
    mut f: impl FnMut(&Runtime, &str) -> Result<(), RuntimeError>,
) -> anyhow::Result<ExitCode> {
    let rt = match open_runtime(root) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let mut code = ExitCode::SUCCESS;
    for name in names {
        match rt.resolve(name).and_then(|id| f(&rt, &id)) {
            Ok(()) => println!("{name}"),
            Err(e) => code = fail(e),
        }
    }
    Ok(code)
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward the exit code
    #[arg(short = 'a', long)]
    attach: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn start(root: Option<PathBuf>, args: StartArgs) -> anyhow::Result<ExitCode> {
    if args.attach {
        let [name] = args.containers.as_slice() else {
            return Ok(fail(
                "you cannot start and attach multiple containers at once",
            ));
        };
        let (rt, id) = match open_container(root, name) {
            Ok(x) => x,
            Err(c) => return Ok(c),
        };
        return match rt.run_attached(&id) {
            Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
            Err(e) => Ok(fail(e)),
        };
    }
    let l = launcher(root.clone())?;
    each(root, &args.containers, |rt, id| rt.start(id, &l))
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    time: Option<u64>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn stop(root: Option<PathBuf>, args: StopArgs) -> anyhow::Result<ExitCode> {
    each(root, &args.containers, |rt, id| rt.stop(id, args.time))
}

pub fn restart(root: Option<PathBuf>, args: StopArgs) -> anyhow::Result<ExitCode> {
    let l = launcher(root.clone())?;
    each(root, &args.containers, |rt, id| {
        rt.stop(id, args.time)?;
        rt.start(id, &l)
    })
}

#[derive(clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn kill(root: Option<PathBuf>, args: KillArgs) -> anyhow::Result<ExitCode> {
    let sig = match forge_runtime::parse_signal(&args.signal) {
        Ok(s) => s,
        Err(e) => return Ok(fail(e)),
    };
    each(root, &args.containers, |rt, id| rt.kill(id, sig))
}

/// `docker wait`: each container's exit status once it has stopped.
pub fn wait(root: Option<PathBuf>, args: NamesArgs) -> anyhow::Result<ExitCode> {
    let rt = match open_runtime(root) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let mut code = ExitCode::SUCCESS;
    for name in &args.containers {
        match rt.resolve(name).and_then(|id| rt.wait(&id)) {
            Ok(status) => println!("{status}"),
            Err(e) => code = fail(e),
        }
    }
    Ok(code)
}

#[derive(clap::Args)]
pub struct DiffArgs {
    container: String,
}

/// `docker diff`: `C /etc`, `A /etc/new`, `D /bin/ls`.
pub fn diff(root: Option<PathBuf>, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    match rt.diff(&id) {
        Ok(changes) => {
            for c in changes {
                println!("{} {}", c.kind.letter(), c.path);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    container: String,
}

/// `docker export`: the container's filesystem as a tar archive.
pub fn export(root: Option<PathBuf>, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let written = super::save::write_archive(args.output.as_deref(), "exporting", |w| {
        rt.export(&id, w).map(drop).map_err(|e| e.to_string())
    });
    Ok(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    })
}

#[derive(clap::Args)]
pub struct TopArgs {
    container: String,
    /// Options for ps (default -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    ps_args: Vec<String>,
}

/// `docker top`: the host's `ps` (default `-ef`), only the container's rows.
pub fn top(root: Option<PathBuf>, args: TopArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let pids = match rt.processes(&id) {
        Ok(p) => p,
        Err(e) => return Ok(fail(e)),
    };
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_args
    };
    let out = match std::process::Command::new("ps").args(&ps_args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            return Ok(fail(format!("ps {}: {}", ps_args.join(" "), err.trim())));
        }
        Err(e) => return Ok(fail(format!("running ps: {e}"))),
    };
    // As docker's daemon parses it: titles split on blanks, the last
    // column (the command) takes the rest of each line.
    let mut lines = out.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let Some(pid_col) = titles.iter().position(|c| c == "PID") else {
        return Ok(fail(format!(
            "Couldn't find PID field in ps output: {}",
            titles.join(" ")
        )));
    };
    let mut rows = vec![titles.clone()];
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let pid = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok());
        if fields.len() < titles.len() || !pid.is_some_and(|p| pids.contains(&p)) {
            continue;
        }
        let last = titles.len() - 1;
        let mut row: Vec<String> = fields[..last].iter().map(|f| (*f).to_owned()).collect();
        row.push(fields[last..].join(" "));
        rows.push(row);
    }
    print!("{}", padded_table(&rows, 20));
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy (forge prints none)
    #[arg(short = 'q', long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, or a host path, or - for a tar on stdin
    #[arg(value_name = "SRC")]
    source: String,
    /// CONTAINER:DEST_PATH, or a host path, or - for a tar on stdout
    #[arg(value_name = "DEST")]
    destination: String,
}

/// docker's reading of a `cp` argument: `CONTAINER:PATH`, unless it has no
/// colon or starts like a local path (`/`, `.`).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

/// `docker cp`: between a container and the host, or a tar stream.
pub fn cp(root: Option<PathBuf>, args: CpArgs) -> anyhow::Result<ExitCode> {
    let _ = args.quiet;
    let opts = forge_runtime::CopyOptions {
        follow_link: args.follow_link,
        archive: args.archive,
    };
    let (from, to) = (
        container_path(&args.source),
        container_path(&args.destination),
    );
    let (name, outward) = match (from, to) {
        (Some(_), Some(_)) => {
            return Ok(fail("copying between containers is not supported"));
        }
        (None, None) => {
            return Ok(fail("must specify at least one container source"));
        }
        (Some((name, _)), None) => (name, true),
        (None, Some((name, _))) => (name, false),
    };
    let (rt, id) = match open_container(root, name) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let result = if outward {
        let src = from.map(|(_, p)| p).unwrap_or_default();
        if args.destination == "-" {
            let stdout = std::io::stdout();
            rt.copy_out_tar(&id, name, src, opts, std::io::BufWriter::new(stdout.lock()))
                .and_then(|mut w| {
                    w.flush().map_err(|source| RuntimeError::Io {
                        op: "writing",
                        path: PathBuf::from("-"),
                        source,
                    })
                })
        } else {
            rt.copy_out(&id, name, src, Path::new(&args.destination), opts)
        }
    } else {
        let dest = to.map(|(_, p)| p).unwrap_or_default();
        if args.source == "-" {
            rt.copy_in_tar(&id, name, std::io::stdin().lock(), dest, opts)
        } else {
            rt.copy_in(&id, name, Path::new(&args.source), dest, opts)
        }
    };
    Ok(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    })
}

#[derive(clap::Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn rename(root: Option<PathBuf>, args: RenameArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    match rt.rename(&id, &args.new_name) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(fail(e)),
    }
}

#[derive(clap::Args)]
pub struct PortArgs {
    container: String,
    /// Only this container port: PORT or PORT/tcp
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

/// `docker port`: the published ports of a running container,
/// `80/tcp -> 0.0.0.0:8080`, or the host addresses of one port.
pub fn port(root: Option<PathBuf>, args: PortArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let c = match rt.get(&id) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    let mut ports = live_ports(&c).to_vec();
    ports.sort_by_key(|p| (p.container_port, p.host_ip, p.host_port));
    let address = |p: &forge_runtime::PortConfig| {
        std::net::SocketAddr::new(p.host_ip, p.host_port).to_string()
    };
    let Some(wanted) = &args.port else {
        for p in &ports {
            println!("{}/tcp -> {}", p.container_port, address(p));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let (number, proto) = wanted.split_once('/').unwrap_or((wanted, "tcp"));
    let Ok(number) = number.parse::<u16>() else {
        return Ok(fail(format!("Invalid port: {wanted}")));
    };
    let matching: Vec<_> = ports
        .iter()
        .filter(|p| proto == "tcp" && p.container_port == number)
        .collect();
    if matching.is_empty() {
        return Ok(fail(format!(
            "No public port '{number}/{proto}' published for {}",
            args.container
        )));
    }
    for p in matching {
        println!("{}", address(p));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn pause(root: Option<PathBuf>, args: NamesArgs, paused: bool) -> anyhow::Result<ExitCode> {
    each(root, &args.containers, |rt, id| rt.set_paused(id, paused))
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

pub fn rm(root: Option<PathBuf>, args: RmArgs) -> anyhow::Result<ExitCode> {
    each(root, &args.containers, |rt, id| {
        rt.remove(id, args.force, args.volumes)
    })
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation (forge never prompts)
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn prune(root: Option<PathBuf>, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let _ = args.force;
    let rt = match open_runtime(root) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    match rt.prune() {
        Ok(ids) => {
            if !ids.is_empty() {
                println!("Deleted Containers:");
                for id in &ids {
                    println!("{id}");
                }
                println!();
            }
            println!("Total reclaimed space: 0B");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Filter output based on conditions provided (status, name, id, label, ancestor, exited)
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_negative_numbers = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Format output: `table`, `json`, `table TEMPLATE` or a Go template (`{{.Names}}`)
    #[arg(long)]
    format: Option<String>,
}

/// What each field is called in a table header (docker's).
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("State", "STATE"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// docker's STATUS column.
fn status_text(c: &Container) -> String {
    let st = &c.state;
    let ago = |t: &str| human_duration(now_unix() - unix(t).unwrap_or_else(now_unix));
    match st.status {
        Status::Created => "Created".to_owned(),
        Status::Running => format!("Up {}", ago(&st.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(&st.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
    }
}

/// docker's PORTS column: `127.0.0.1:8080->80/tcp`.
/// The ports a container publishes now: none once it has stopped.
fn live_ports(c: &Container) -> &[forge_runtime::PortConfig] {
    if c.state.status.is_live() {
        &c.state.ports
    } else {
        &[]
    }
}

fn ports_text(c: &Container) -> String {
    live_ports(c)
        .iter()
        .map(|p| format!("{}:{}->{}/tcp", p.host_ip, p.host_port, p.container_port))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ps(root: Option<PathBuf>, args: PsArgs) -> anyhow::Result<ExitCode> {
    let rt = match open_runtime(root) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let filters = match Filters::parse(
        &args.filters,
        &["status", "name", "id", "label", "ancestor", "exited"],
    ) {
        Ok(f) => f,
        Err(e) => return Ok(fail(e)),
    };
    let mut list = match rt.list() {
        Ok(l) => l,
        Err(e) => return Ok(fail(e)),
    };
    // Newest first, as docker lists them.
    list.sort_by_key(|c| std::cmp::Reverse(unix(&c.config.created)));
    // As docker: -n/-l and the status and exited filters look at every container.
    let all = args.all
        || args.latest
        || args.last >= 0
        || !filters.get("status").is_empty()
        || !filters.get("exited").is_empty();
    let mut shown: Vec<&Container> = list
        .iter()
        .filter(|c| all || c.state.status.is_live())
        .filter(|c| filters.allows("status", |s| s == c.state.status.name()))
        .filter(|c| {
            filters.allows("exited", |code| {
                c.state.status == Status::Exited && code.parse() == Ok(c.state.exit_code)
            })
        })
        .filter(|c| {
            filters.allows("name", |n| {
                c.config.name.contains(n.trim_start_matches('/'))
            })
        })
        .filter(|c| filters.allows("id", |id| c.config.id.starts_with(id)))
        .filter(|c| filters.allows("label", |l| label_matches(l, &c.config.labels)))
        .filter(|c| {
            filters.allows("ancestor", |a| {
                c.config.image == a
                    || c.config
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(a.trim_start_matches("sha256:"))
                    || forge_oci::Reference::parse(a)
                        .ok()
                        .zip(forge_oci::Reference::parse(&c.config.image).ok())
                        .is_some_and(|(x, y)| x == y)
            })
        })
        .collect();
    if args.latest {
        shown.truncate(1);
    } else if let Ok(n) = usize::try_from(args.last) {
        shown.truncate(n);
    }
    let short = |id: &str| {
        if args.no_trunc {
            id.to_owned()
        } else {
            id[..12.min(id.len())].to_owned()
        }
    };
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for c in shown {
            writeln!(out, "{}", short(&c.config.id))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Value> = shown
        .iter()
        .map(|c| {
            let cmd = c.config.command_line();
            json!({
                "Command": forge_dockerfile::dump::go_quote(&if args.no_trunc {
                    cmd
                } else {
                    ellipsis(&cmd, 20)
                }),
                "CreatedAt": created_at(unix(&c.config.created)),
                "ID": short(&c.config.id),
                "Image": c.config.image,
                "Labels": c.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "LocalVolumes": c.config.mounts.iter().filter(|m| matches!(m, MountConfig::Volume { .. })).count().to_string(),
                // docker's: a volume's name or a bind's source, each cut to 15 characters.
                "Mounts": c.config.mounts.iter().filter_map(|m| match m {
                    MountConfig::Volume { name, .. } => Some(name),
                    MountConfig::Bind { source, .. } => Some(source),
                    _ => None,
                }).map(|m| if args.no_trunc { m.clone() } else { ellipsis(m, 15) }).collect::<Vec<_>>().join(","),
                "Names": c.config.name,
                "Networks": c.config.network.name(),
                "Ports": ports_text(c),
                "RunningFor": created_since(unix(&c.config.created)),
                "State": c.state.status.name(),
                "Status": status_text(c),
            })
        })
        .collect();
    let format = Format::parse(args.format.as_deref());
    let columns = [
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    match format.render(&rows, &columns, PS_HEADERS) {
        Ok(text) => write!(out, "{text}")?,
        Err(e) => return Ok(fail(e)),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    container: String,
}

pub fn logs(root: Option<PathBuf>, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => match n.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => return Ok(fail(format!("invalid --tail {n:?}"))),
        },
    };
    let path = rt.paths(&id).log();
    let mut opts = LogOptions {
        tail,
        timestamps: args.timestamps,
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut offset = forge_runtime::copy_entries(&path, 0, &opts, &mut stdout, &mut stderr)?;
    opts.tail = None;
    if args.follow {
        loop {
            let live = match rt.state(&id) {
                Ok(st) => st.status.is_live(),
                Err(_) => false,
            };
            offset = forge_runtime::copy_entries(&path, offset, &opts, &mut stdout, &mut stderr)?;
            if !live {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn exec(root: Option<PathBuf>, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let opts = ExecOptions {
        cmd: args.command.clone(),
        env: args.env.iter().filter_map(|kv| env_entry(kv)).collect(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty.then(|| {
            forge_runtime::terminal_size()
                .unwrap_or(forge_sandbox::WindowSize { rows: 24, cols: 80 })
        }),
        stdin: args.interactive && !args.tty && !args.detach,
    };
    let mut joined = match rt.exec(&id, &opts) {
        Ok(j) => j,
        // docker exec answers a stopped or paused container with the daemon's
        // error and status 1; 125-127 are for the command it could not start.
        Err(e @ RuntimeError::State { .. }) => return Ok(fail(e)),
        Err(e) => return Ok(run_failure(&e)),
    };
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let mut raw = None;
    let mut pump = None;
    if let Some(pty) = joined.take_pty() {
        if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            raw = RawMode::enter();
        }
        if args.interactive {
            if let Ok(mut to_pty) = pty.try_clone() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut stdin = std::io::stdin().lock();
                    while let Ok(n) = stdin.read(&mut buf) {
                        if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        let mut from = pty;
        pump = Some(std::thread::spawn(move || {
            let mut out = std::io::stdout();
            let mut buf = [0u8; 4096];
            // EIO once the command (every holder of the terminal) is gone.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        }));
    }
    let status = joined.wait();
    if let Some(p) = pump {
        let _ = p.join();
    }
    drop(raw);
    match status {
        Ok(s) => Ok(ExitCode::from(s.code().clamp(0, 255) as u8)),
        Err(e) => Ok(run_failure(&RuntimeError::from(e))),
    }
}

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// go-units' binary sizes, as docker's stats: `1.5MiB`.
fn bytes_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{}{}", super::human::go_g(v, 4), UNITS[i])
}

pub fn stats(root: Option<PathBuf>, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let rt = match open_runtime(root) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let ids: Vec<String> = if args.containers.is_empty() {
        match rt.list() {
            Ok(l) => l
                .into_iter()
                .filter(|c| args.all || c.state.status.is_live())
                .map(|c| c.config.id)
                .collect(),
            Err(e) => return Ok(fail(e)),
        }
    } else {
        let mut v = Vec::new();
        for n in &args.containers {
            match rt.resolve(n) {
                Ok(id) => v.push(id),
                Err(e) => return Ok(fail(e)),
            }
        }
        v
    };
    let host_mem = host_memory();
    loop {
        let first: Vec<_> = ids.iter().map(|id| rt.stats(id).ok()).collect();
        let interval = Duration::from_millis(500);
        std::thread::sleep(interval);
        let mut rows = vec![[
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
        ]
        .map(String::from)
        .to_vec()];
        for (id, before) in ids.iter().zip(first) {
            let Ok(c) = rt.get(id) else { continue };
            let now = rt.stats(id).unwrap_or_default();
            let cpu = match (before.and_then(|b| b.cpu), now.cpu) {
                (Some(a), Some(b)) => {
                    b.saturating_sub(a).as_secs_f64() / interval.as_secs_f64() * 100.0
                }
                _ => 0.0,
            };
            let mem = now.memory_current.unwrap_or(0);
            let limit = c.config.memory.unwrap_or(host_mem);
            let mem_pct = if limit > 0 {
                mem as f64 / limit as f64 * 100.0
            } else {
                0.0
            };
            rows.push(vec![
                id[..12].to_owned(),
                c.config.name.clone(),
                format!("{cpu:.2}%"),
                format!("{} / {}", bytes_size(mem), bytes_size(limit)),
                format!("{mem_pct:.2}%"),
                now.pids_current.unwrap_or(0).to_string(),
            ]);
        }
        let mut out = std::io::stdout().lock();
        write!(out, "{}", table(&rows))?;
        out.flush()?;
        if args.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[derive(clap::Args)]
pub struct CommitArgs {
    /// Commit message
    #[arg(short = 'm', long)]
    message: Option<String>,
    container: String,
    /// The new image's name (REPOSITORY[:TAG])
    image: Option<String>,
}

pub fn commit(root: Option<PathBuf>, args: CommitArgs) -> anyhow::Result<ExitCode> {
    let (rt, id) = match open_container(root, &args.container) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let name = match args
        .image
        .as_deref()
        .map(forge_oci::Reference::parse)
        .transpose()
    {
        Ok(n) => n,
        Err(e) => return Ok(fail(e)),
    };
    match rt.commit(&id, name.as_ref(), args.message.as_deref().unwrap_or("")) {
        Ok(image) => {
            println!("{image}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

/// `docker container inspect`'s JSON for one container, if `name` is one.
pub fn inspect_value(store: &forge_store::Store, name: &str) -> Option<Value> {
    let rt = Runtime::open(store.clone()).ok()?;
    let id = rt.resolve(name).ok()?;
    let c = rt.get(&id).ok()?;
    let cfg = &c.config;
    let st = &c.state;
    let mut ports = serde_json::Map::new();
    for p in &st.ports {
        ports.insert(
            format!("{}/tcp", p.container_port),
            json!([{"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}]),
        );
    }
    // docker's MountPoint shape; tmpfs mounts are listed in HostConfig.Tmpfs.
    let mut mounts = Vec::new();
    let mut tmpfs = serde_json::Map::new();
    for m in &cfg.mounts {
        match m {
            MountConfig::Bind {
                source,
                target,
                readonly,
            } => mounts.push(json!({
                "Type": "bind",
                "Source": source,
                "Destination": target,
                "Mode": if *readonly { "ro" } else { "" },
                "RW": !readonly,
                "Propagation": "rprivate",
            })),
            MountConfig::Volume {
                name,
                target,
                readonly,
                ..
            } => mounts.push(json!({
                "Type": "volume",
                "Name": name,
                "Source": rt.volumes().get(name).map(|v| v.mountpoint).unwrap_or_default(),
                "Destination": target,
                "Driver": "local",
                "Mode": if *readonly { "ro" } else { "" },
                "RW": !readonly,
                "Propagation": "",
            })),
            MountConfig::Tmpfs { target, size, mode } => {
                let mut opts = Vec::new();
                if let Some(size) = size {
                    opts.push(format!("size={size}"));
                }
                opts.push(format!("mode={mode:o}"));
                tmpfs.insert(target.clone(), json!(opts.join(",")));
            }
        }
    }
    Some(json!({
        "Id": cfg.id,
        "Created": cfg.created,
        "Path": cfg.args().first().cloned().unwrap_or_default(),
        "Args": cfg.args().into_iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.name(),
            "Running": st.status.is_live(),
            "Paused": st.status == Status::Paused,
            "OOMKilled": st.oom_killed,
            "Pid": st.pid.map_or(0, |p| p.pid),
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": if st.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { &st.started_at },
            "FinishedAt": if st.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { &st.finished_at },
        },
        "Image": cfg.image_id,
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "HostConfig": {
            "NetworkMode": cfg.network.name(),
            "AutoRemove": cfg.auto_remove,
            "ReadonlyRootfs": cfg.read_only,
            "Memory": cfg.memory.unwrap_or(0),
            "NanoCpus": cfg.cpus.map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": cfg.pids_limit,
            "Tmpfs": tmpfs,
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Image": cfg.image,
            "WorkingDir": cfg.working_dir,
            "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
        },
        "NetworkSettings": { "Ports": ports },
        "LogPath": rt.paths(&id).log(),
        "SizeRw": forge_store::snapshot::tree_size(&rt.paths(&id).upper()),
    }))
}
