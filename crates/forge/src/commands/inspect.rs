//! `forge inspect IMAGE...` (`forge image inspect`): docker's image JSON; a name that is
//! no image but a container gets `docker container inspect`'s.
//!
//! The keys are those of `docker image inspect` (API 1.45+): Id, RepoTags, RepoDigests,
//! Parent, Comment, Created, Author, Config, Architecture, Os, Size, GraphDriver, RootFS,
//! Metadata. Like docker, the history is not part of it (`forge history` shows it).
//! `-f` takes the subset of Go templates scripts use most: `{{.Field.Sub}}` and
//! `{{json .Field}}`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use forge_store::{chain_ids, ImageRecord, Store};
use serde::Serialize;
use serde_json::{json, Value};

use super::human::{fail, go_json, open_store};

#[derive(clap::Args)]
pub struct Args {
    /// Format the output with a Go-template subset (`{{.Id}}`, `{{json .Config}}`)
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Images (names or ids)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    author: String,
    config: Value,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    size: u64,
    graph_driver: Value,
    #[serde(rename = "RootFS")]
    root_fs: Value,
    metadata: Value,
}

/// What a name matched: an image, else a container.
#[derive(Serialize)]
#[serde(untagged)]
enum Found {
    Image(Box<Inspect>),
    Container(Value),
}

fn inspect(store: &Store, image: &ImageRecord) -> Inspect {
    let c = &image.config;
    let mut config = c
        .config
        .as_ref()
        .and_then(|cc| serde_json::to_value(cc).ok())
        .unwrap_or_else(|| json!({}));
    if let Value::Object(m) = &mut config {
        for (k, default) in [
            ("Cmd", Value::Null),
            ("Entrypoint", Value::Null),
            ("Env", Value::Null),
            ("Labels", Value::Null),
            ("OnBuild", Value::Null),
            ("WorkingDir", Value::String(String::new())),
        ] {
            m.entry(k).or_insert(default);
        }
    }
    let mut repo_digests: Vec<String> = Vec::new();
    for n in &image.names {
        let d = format!("{}@{}", n.familiar_name(), image.target_digest());
        if !repo_digests.contains(&d) {
            repo_digests.push(d);
        }
    }
    let chains = chain_ids(&c.rootfs.diff_ids);
    let graph_driver = if !chains.is_empty() && chains.iter().all(|ch| store.has_snapshot(ch)) {
        let lower: Vec<String> = chains
            .iter()
            .rev()
            .map(|ch| store.snapshot_fs(ch).display().to_string())
            .collect();
        json!({"Data": {"LowerDir": lower.join(":")}, "Name": "overlay"})
    } else {
        json!({"Data": null, "Name": "overlay"})
    };
    Inspect {
        id: image.id.to_string(),
        repo_tags: image.names.iter().map(|n| n.familiar()).collect(),
        repo_digests,
        parent: String::new(),
        // docker's: the config's comment, else the last history entry's.
        comment: c
            .extra
            .get("comment")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                c.history
                    .as_ref()
                    .and_then(|h| h.last())
                    .and_then(|h| h.comment.as_deref())
            })
            .unwrap_or_default()
            .to_string(),
        created: c.created.clone().unwrap_or_default(),
        author: c.author.clone().unwrap_or_default(),
        config,
        architecture: c.architecture.clone(),
        variant: c.variant.clone(),
        os: c.os.clone(),
        size: store.image_size(image),
        graph_driver,
        root_fs: json!({
            "Type": c.rootfs.fs_type,
            "Layers": c.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        }),
        metadata: json!({"LastTagTime": "0001-01-01T00:00:00Z"}),
    }
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let list = match store.images() {
        Ok(l) => l,
        Err(e) => return Ok(fail(e)),
    };
    let mut found = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for name in &args.images {
        match forge_store::images::resolve_in(&list.images, name) {
            Ok(r) => found.push(Found::Image(Box::new(inspect(&store, &r.image)))),
            // Not an image: a container, as docker's `inspect` falls back.
            Err(e) => match super::container::inspect_value(&store, name) {
                Some(c) => found.push(Found::Container(c)),
                None => code = fail(e),
            },
        }
    }
    let mut out = std::io::stdout().lock();
    match &args.format {
        Some(t) => {
            for i in &found {
                let v = serde_json::to_value(i)?;
                match super::format::render(t, &v) {
                    Ok(s) => writeln!(out, "{s}")?,
                    Err(e) => return Ok(fail(e)),
                }
            }
        }
        None => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            found.serialize(&mut ser)?;
            writeln!(out, "{}", go_json(String::from_utf8(buf)?))?;
        }
    }
    Ok(code)
}
