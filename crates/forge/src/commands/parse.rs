//! `forge parse`: the parse tree in BuildKit's dump format, or the typed AST
//! as JSON.

use super::{dockerfile_path, Source};
use forge_dockerfile::{dump, instructions, parse, Diagnostic};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The Dockerfile (`-` for standard input)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// The Dockerfile, or a directory holding one
    path: Option<PathBuf>,
    /// Print the typed instructions as JSON instead of the parse tree
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = Source::read(&dockerfile_path(args.file, args.path))?;
    let fail = |d: Diagnostic| {
        source.report(&d);
        Ok(ExitCode::FAILURE)
    };
    let ast = match parse(&source.bytes) {
        Ok(ast) => ast,
        Err(e) => return fail(e.into()),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let typed = match instructions::lower(ast) {
            Ok(t) => t,
            Err(e) => return fail(e.into()),
        };
        serde_json::to_writer_pretty(&mut out, &typed)?;
        writeln!(out)?;
    } else {
        // The dump is the untyped tree (flags are not checked, as BuildKit's
        // parser does not), but an instruction nobody knows is an error.
        for node in ast
            .nodes
            .iter()
            .flat_map(|n| std::iter::once(n).chain(n.onbuild.as_deref()))
        {
            if !instructions::KNOWN_INSTRUCTIONS.contains(&node.name().as_str()) {
                if let Err(e) = instructions::instruction(node.clone()) {
                    return fail(e.into());
                }
            }
        }
        out.write_all(dump::dump(&ast).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
