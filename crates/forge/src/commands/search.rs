//! `forge search [--limit N] REGISTRY/TERM`: repositories of a registry's `_catalog` whose
//! name contains TERM, in docker's NAME/DESCRIPTION/STARS/OFFICIAL columns (a catalog
//! has no descriptions, stars or official marks, so those stay empty).

use std::process::ExitCode;

use super::human::{fail, table};
use super::pull::client;

#[derive(clap::Args)]
pub struct Args {
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    limit: usize,
    /// Don't truncate output (names are never truncated)
    #[arg(long)]
    no_trunc: bool,
    /// REGISTRY/TERM (e.g. localhost:5000/app)
    #[arg(value_name = "TERM")]
    term: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = args.no_trunc;
    let Some((registry, term)) = args
        .term
        .split_once('/')
        .filter(|(r, _)| r.contains(['.', ':']) || *r == "localhost")
    else {
        return Ok(fail(format!(
            "{}: give the registry to search, as REGISTRY/TERM (Docker Hub's search API is not a registry catalog)",
            args.term
        )));
    };
    if args.limit == 0 || args.limit > 100 {
        return Ok(fail(format!(
            "Limit {} is outside the range of [1, 100]",
            args.limit
        )));
    }
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Ok(fail(format!("{e:#}"))),
    };
    let found = match forge_registry::search(&client, registry, term, args.limit) {
        Ok(f) => f,
        Err(e) => return Ok(fail(e)),
    };
    let mut rows = vec![vec![
        "NAME".to_string(),
        "DESCRIPTION".to_string(),
        "STARS".to_string(),
        "OFFICIAL".to_string(),
    ]];
    for name in found {
        rows.push(vec![
            format!("{registry}/{name}"),
            String::new(),
            "0".to_string(),
            String::new(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}
