//! `forge volume create|ls|inspect|rm|prune`: docker's volume commands on the
//! store's `volumes/` (forge-runtime's [`Volumes`](forge_runtime::Volumes)).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use forge_runtime::{Runtime, Volume};
use serde_json::json;

use super::human::{fail, go_json, open_store, table};

#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(NamesArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (all unused ones with -a)
    Prune(PruneArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Set metadata for a volume
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// The name (generated when omitted)
    name: Option<String>,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "VOLUME")]
    names: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    names: Vec<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt for confirmation (forge never prompts)
    #[arg(short = 'f', long)]
    force: bool,
}

fn inspect_json(v: &Volume) -> serde_json::Value {
    json!({
        "CreatedAt": v.meta.created_at,
        "Driver": "local",
        "Labels": v.meta.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.meta.name,
        "Options": null,
        "Scope": "local",
    })
}

pub fn run(root: Option<PathBuf>, cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    let rt = match open_store(root).and_then(|s| Runtime::open(s).map_err(fail)) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    let mut out = std::io::stdout().lock();
    match cmd {
        VolumeCommand::Create(a) => {
            let mut labels = BTreeMap::new();
            for l in &a.labels {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_owned(), v.to_owned());
            }
            let name = a.name.unwrap_or_else(|| {
                forge_runtime::generate_name().replace('_', "") + &std::process::id().to_string()
            });
            match rt.volumes().create(&name, labels, false) {
                Ok((v, _)) => writeln!(out, "{}", v.meta.name)?,
                Err(e) => return Ok(fail(e)),
            }
        }
        VolumeCommand::Ls(a) => {
            let list = match rt.volumes().list() {
                Ok(l) => l,
                Err(e) => return Ok(fail(e)),
            };
            if a.quiet {
                for v in &list {
                    writeln!(out, "{}", v.meta.name)?;
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_owned(), "VOLUME NAME".to_owned()]];
                for v in &list {
                    rows.push(vec!["local".to_owned(), v.meta.name.clone()]);
                }
                write!(out, "{}", table(&rows))?;
            }
        }
        VolumeCommand::Inspect(a) => {
            let mut found = Vec::new();
            let mut code = ExitCode::SUCCESS;
            for n in &a.names {
                match rt.volumes().get(n) {
                    Ok(v) => found.push(inspect_json(&v)),
                    Err(e) => code = fail(e),
                }
            }
            // docker indents inspect output by four spaces.
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&found, &mut ser)?;
            writeln!(out, "{}", go_json(String::from_utf8(buf)?))?;
            return Ok(code);
        }
        VolumeCommand::Rm(a) => {
            let mut code = ExitCode::SUCCESS;
            for n in &a.names {
                match rt.remove_volume(n, a.force) {
                    Ok(()) => writeln!(out, "{n}")?,
                    Err(e) => code = fail(e),
                }
            }
            return Ok(code);
        }
        VolumeCommand::Prune(a) => {
            let _ = a.force;
            match rt.prune_volumes(a.all) {
                Ok(names) => {
                    if !names.is_empty() {
                        writeln!(out, "Deleted Volumes:")?;
                        for n in &names {
                            writeln!(out, "{n}")?;
                        }
                        writeln!(out)?;
                    }
                    writeln!(out, "Total reclaimed space: 0B")?;
                }
                Err(e) => return Ok(fail(e)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
