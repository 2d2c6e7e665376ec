//! `forge history IMAGE`: IMAGE CREATED CREATED BY SIZE COMMENT, newest first, as docker.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use forge_oci::image::rfc3339_utc;
use forge_store::chain_ids;
use forge_store::images::parse_rfc3339;

use super::format::Format;
use super::human::{created_since, ellipsis, fail, image_size, open_store};

#[derive(clap::Args)]
pub struct Args {
    /// Format output: `table`, `json`, `table TEMPLATE` or a Go template (`{{.CreatedBy}}`)
    #[arg(long)]
    format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The image (name or id)
    #[arg(value_name = "IMAGE")]
    image: String,
}

pub fn run(root: Option<PathBuf>, args: Args) -> anyhow::Result<ExitCode> {
    let store = match open_store(root) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let image = match store.resolve(&args.image) {
        Ok(r) => r.image,
        Err(e) => return Ok(fail(e)),
    };
    let chains = chain_ids(&image.config.rootfs.diff_ids);
    let layer_size = |i: usize| -> u64 {
        match chains.get(i).map(|c| store.snapshot_meta(c)) {
            Some(Ok(Some(m))) => m.size,
            _ => image.layers.get(i).map_or(0, |l| l.size()),
        }
    };
    let mut rows = Vec::new();
    let mut layer = 0usize;
    for h in image.config.history.iter().flatten() {
        let size = if h.empty_layer == Some(true) {
            0
        } else {
            layer += 1;
            layer_size(layer - 1)
        };
        rows.push((h, size));
    }
    rows.reverse();
    let id = if args.no_trunc {
        image.id.to_string()
    } else {
        image.id.short_id().to_string()
    };
    let mut out = std::io::stdout().lock();
    let ids = (0..rows.len()).map(|i| {
        if i == 0 {
            id.clone()
        } else {
            "<missing>".to_string()
        }
    });
    if args.quiet {
        for i in ids {
            writeln!(out, "{i}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let values: Vec<serde_json::Value> = rows
        .iter()
        .zip(ids)
        .map(|((h, size), i)| {
            let by = h.created_by.clone().unwrap_or_default().replace('\t', " ");
            let by = if args.no_trunc { by } else { ellipsis(&by, 45) };
            let created = h.created.as_deref().and_then(parse_rfc3339);
            // docker's: whole seconds, RFC 3339.
            let created_at = created.map(rfc3339_utc).unwrap_or_default();
            let (since, size) = if args.human {
                (created_since(created), image_size(*size))
            } else {
                (created_at.clone(), size.to_string())
            };
            serde_json::json!({
                "Comment": h.comment.clone().unwrap_or_default(),
                "CreatedAt": created_at,
                "CreatedBy": by,
                "CreatedSince": since,
                "ID": i,
                "Size": size,
            })
        })
        .collect();
    let columns = [
        ("IMAGE", "ID"),
        (
            if args.human { "CREATED" } else { "CREATED AT" },
            "CreatedSince",
        ),
        ("CREATED BY", "CreatedBy"),
        ("SIZE", "Size"),
        ("COMMENT", "Comment"),
    ];
    let headers = [
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ];
    match Format::parse(args.format.as_deref()).render(&values, &columns, &headers) {
        Ok(text) => out.write_all(text.as_bytes())?,
        Err(e) => return Ok(fail(e)),
    }
    Ok(ExitCode::SUCCESS)
}
