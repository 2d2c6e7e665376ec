//! `forge import FILE|- [NAME[:TAG]]`: a rootfs tarball becomes a one-layer image, as
//! `docker import`; `--change` applies the Dockerfile instructions docker accepts there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use forge_dockerfile::shell::Lexer;
use forge_dockerfile::{parse_dockerfile, InstructionKind};
use forge_oci::image::EmptyObject;
use forge_oci::{ContainerConfig, Reference};
use forge_store::ImportOptions;

use super::human::{fail, open_store, source_date_epoch};

#[derive(clap::Args)]
pub struct Args {
    /// The tarball (plain, gzip or zstd), or `-` for standard input
    #[arg(value_name = "file|-")]
    file: PathBuf,
    /// Name for the new image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    name: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Commit message for the imported image
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// gzip level of the layer, 0-9 (forge extension; default 6, as docker's gzip)
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    compression_level: Option<u32>,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let names = match &args.name {
        Some(n) => match Reference::parse(n) {
            Ok(r) if r.digest().is_none() => vec![r],
            Ok(_) => {
                return Ok(fail(format!(
                    "invalid reference format: {n:?}: a digest is not a tag"
                )))
            }
            Err(e) => return Ok(fail(e)),
        },
        None => Vec::new(),
    };
    let config = match apply_changes(&args.changes) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let stdin = args.file.as_os_str() == "-";
    let opts = ImportOptions {
        // docker records a local file as "-" too: its CLI streams the file to the daemon.
        source: "-".into(),
        message: args.message.clone(),
        config: Some(config),
        source_date_epoch: source_date_epoch(),
        level: args.compression_level,
        ..ImportOptions::default()
    };
    let display = if stdin {
        "standard input".to_string()
    } else {
        args.file.display().to_string()
    };
    let result = if stdin {
        store.import(BufReader::new(io::stdin().lock()), &opts, &names)
    } else {
        match File::open(&args.file) {
            Ok(f) => store.import(BufReader::with_capacity(256 * 1024, f), &opts, &names),
            Err(e) => return Ok(fail(format!("opening {display}: {e}"))),
        }
    };
    match result {
        Ok(imported) => {
            println!("{}", imported.image.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(forge_store::StoreError::Apply { source, .. }) => {
            Ok(fail(format!("importing {display}: {source}")))
        }
        Err(e) => Ok(fail(format!("importing {display}: {e}"))),
    }
}

/// Applies `--change` instructions to an empty config, as docker's
/// `dockerfile.BuildFromConfig` does: arguments are expanded with the ENV set so far.
pub fn apply_changes(changes: &[String]) -> Result<ContainerConfig, String> {
    let mut c = ContainerConfig::default();
    let lexer = Lexer::new('\\');
    let mut cmd_set = false;
    for change in changes {
        let text = format!("FROM scratch\n{change}\n");
        let df = parse_dockerfile(text.as_bytes())
            .map_err(|d| format!("processing --change {change:?}: {}", d.message))?;
        let Some(stage) = df.stages.first() else {
            continue;
        };
        for ins in &stage.instructions {
            let env: Vec<(String, String)> = c
                .env
                .iter()
                .flatten()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            let word = |s: &str| {
                lexer
                    .process_word(s, &env)
                    .map_err(|e| format!("processing --change {change:?}: {e}"))
            };
            let shell = || {
                c.shell
                    .clone()
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
            };
            match &ins.kind {
                InstructionKind::Cmd(cl) | InstructionKind::Entrypoint(cl) => {
                    let args: Vec<String> = cl.args.iter().map(|a| a.value.clone()).collect();
                    let argv = if cl.json {
                        args
                    } else {
                        let mut v = shell();
                        v.push(args.join(" "));
                        v
                    };
                    if matches!(ins.kind, InstructionKind::Cmd(_)) {
                        c.cmd = Some(argv);
                        cmd_set = true;
                    } else {
                        c.entrypoint = Some(argv);
                        // As in a Dockerfile: ENTRYPOINT resets a CMD not set here.
                        if !cmd_set {
                            c.cmd = None;
                        }
                    }
                }
                InstructionKind::Env(kvs) => {
                    for kv in kvs {
                        let key = word(&kv.key.value)?;
                        let value = word(&kv.value.value)?;
                        let env = c.env.get_or_insert_with(Vec::new);
                        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
                        env.push(format!("{key}={value}"));
                    }
                }
                InstructionKind::Label(kvs) => {
                    for kv in kvs {
                        let key = word(&kv.key.value)?;
                        let value = word(&kv.value.value)?;
                        c.labels
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key, value);
                    }
                }
                InstructionKind::Expose(ports) => {
                    for p in ports {
                        for port in expose_ports(&word(&p.value)?)? {
                            c.exposed_ports
                                .get_or_insert_with(BTreeMap::new)
                                .insert(port, EmptyObject {});
                        }
                    }
                }
                InstructionKind::Onbuild(o) => {
                    c.on_build
                        .get_or_insert_with(Vec::new)
                        .push(o.expression.clone());
                }
                InstructionKind::Stopsignal(s) => c.stop_signal = Some(word(&s.value)?),
                InstructionKind::User(u) => c.user = Some(word(&u.value)?),
                InstructionKind::Volume(v) => {
                    for p in &v.paths {
                        let p = word(&p.value)?;
                        if p.is_empty() {
                            return Err("VOLUME specified can not be an empty string".into());
                        }
                        c.volumes
                            .get_or_insert_with(BTreeMap::new)
                            .insert(p, EmptyObject {});
                    }
                }
                InstructionKind::Workdir(w) => {
                    let w = word(&w.value)?;
                    let joined = if w.starts_with('/') {
                        w
                    } else {
                        let base = c.working_dir.clone().unwrap_or_else(|| "/".into());
                        format!("{}/{w}", base.trim_end_matches('/'))
                    };
                    c.working_dir = Some(joined);
                }
                _ => {
                    return Err(format!(
                        "{} is not a valid change command",
                        ins.keyword.value.to_uppercase()
                    ))
                }
            }
        }
    }
    Ok(c)
}

/// EXPOSE's `80`, `80/udp`, `8000-8002/tcp` as `port/proto` keys.
fn expose_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_build_a_config() {
        let c = apply_changes(&[
            "ENV A=1 B=\"two words\"".into(),
            "ENV C=${A}x".into(),
            "CMD [\"/bin/sh\"]".into(),
            "EXPOSE 80 8000-8001/udp".into(),
            "LABEL a=b".into(),
            "WORKDIR /srv".into(),
            "WORKDIR app".into(),
            "USER nobody".into(),
            "VOLUME /data".into(),
            "STOPSIGNAL SIGINT".into(),
            "ONBUILD RUN echo hi".into(),
        ])
        .expect("valid changes");
        assert_eq!(
            c.env.as_deref(),
            Some(&["A=1".to_string(), "B=two words".into(), "C=1x".into()][..])
        );
        assert_eq!(c.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
        assert_eq!(c.exposed_ports.as_ref().map(|p| p.len()), Some(3));
        assert_eq!(
            c.on_build.as_deref(),
            Some(&["RUN echo hi".to_string()][..])
        );
        let shell = apply_changes(&["ENTRYPOINT exec app".into()]).expect("entrypoint");
        assert_eq!(
            shell.entrypoint.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), "exec app".into()][..])
        );
        let err = apply_changes(&["RUN make".into()]).expect_err("RUN is refused");
        assert!(err.contains("RUN is not a valid change command"), "{err}");
    }
}
