//! `forge check`: BuildKit's build checks, without building — what
//! `docker build --check` prints, in buildx's format, on standard output.
//! Exit status 1 when any check fires (or the Dockerfile does not parse).

use super::{dockerfile_path, Source};
use anyhow::Context as _;
use forge_dockerfile::check::{self, CheckError, CheckOptions, CheckReport, Warning};
use forge_dockerfile::{instructions, parse, Diagnostic};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` for standard input)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// The build context (its `.dockerignore` is read)
    context: Option<PathBuf>,
    /// A build argument, `KEY=VALUE` (or `KEY` to take the value from the
    /// environment); `BUILDKIT_DOCKERFILE_CHECK` replaces the `# check=` directive
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The target platform, e.g. `linux/arm64` (default: this machine's)
    #[arg(long)]
    platform: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let context = match &args.context {
        Some(p) if p.is_dir() => p.clone(),
        // A file given as the positional is the Dockerfile; its directory is
        // the context.
        Some(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        None => PathBuf::from("."),
    };
    let path = dockerfile_path(args.file, args.context);
    let source = Source::read(&path)?;
    let fail = |d: Diagnostic| {
        source.report(&d);
        Ok(ExitCode::FAILURE)
    };
    let ast = match parse(&source.bytes) {
        Ok(ast) => ast,
        Err(e) => return fail(e.into()),
    };
    let dockerfile = match instructions::lower(ast.clone()) {
        Ok(d) => d,
        Err(e) => return fail(e.into()),
    };
    let opts = CheckOptions {
        build_args: build_args(&args.build_args),
        dockerignore: read_dockerignore(&path, &context)?,
        platform: args.platform,
        images: None,
    };
    let report = match check::check(&ast, &dockerfile, &opts) {
        Ok(r) => r,
        Err(e @ CheckError::Directive { .. }) => return fail(e.into()),
        Err(e @ CheckError::BuildArg { .. }) => {
            eprintln!("ERROR: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // `./Dockerfile` shows as `Dockerfile`, as docker names it.
    let name = source.name.strip_prefix("./").unwrap_or(&source.name);
    let text = render(&report, name, &source.text());
    std::io::stdout().lock().write_all(text.as_bytes())?;
    if let Some(error) = report.error() {
        eprintln!("ERROR: {error}");
    }
    Ok(if report.warnings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--build-arg` values as docker reads them: `KEY=VALUE`, or `KEY` alone for
/// the environment's value (skipped when the environment has none).
fn build_args(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}

/// The `.dockerignore` BuildKit would use: `<Dockerfile>.dockerignore` beside
/// the Dockerfile first, else the context's `.dockerignore`.
fn read_dockerignore(dockerfile: &Path, context: &Path) -> anyhow::Result<Vec<String>> {
    let mut candidates = Vec::new();
    if dockerfile != Path::new("-") {
        if let Some(name) = dockerfile.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(specific));
        }
    }
    candidates.push(context.join(".dockerignore"));
    for candidate in candidates {
        match std::fs::read_to_string(&candidate) {
            Ok(text) => return Ok(forge_dockerfile::dockerignore::read(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", candidate.display())),
        }
    }
    Ok(Vec::new())
}

/// The report as buildx prints a lint result: the count, then per warning
/// its rule, URL, message and the source around it.
pub fn render(report: &CheckReport, file_name: &str, source: &str) -> String {
    let mut out = String::new();
    match report.warnings.len() {
        0 => out.push_str("Check complete, no warnings found.\n"),
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => {
            let _ = writeln!(out, "Check complete, {n} warnings have been found!");
        }
    }
    let lines: Vec<&str> = source.split('\n').collect();
    for w in &report.warnings {
        print_warning(&mut out, w, file_name, &lines);
    }
    if report.error().is_some() && !report.warnings.is_empty() {
        out.push('\n');
    }
    out
}

/// BuildKit's `Warning.PrintTo` and `errdefs.Source.Print`: the file and
/// first line, then the lines of the instruction (marked `>>>`) with up to
/// four lines of context (two when the instruction spans several lines).
fn print_warning(out: &mut String, w: &Warning, file_name: &str, lines: &[&str]) {
    let _ = write!(out, "\nWARNING: {}", w.rule);
    if !w.url.is_empty() {
        let _ = write!(out, " - {}", w.url);
    }
    let _ = writeln!(out, "\n{}", w.message);
    let (first, last) = (w.span.start.line as usize, w.span.end.line as usize);
    let mut start = first;
    let mut end = last.max(first).min(lines.len());
    if start < 1 || start > lines.len() {
        return;
    }
    let pad = if end == start { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let _ = writeln!(out, "{file_name}:{first}\n--------------------");
    for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
        let n = i + 1;
        let mark = if n >= first && n <= last.max(first) {
            ">>>"
        } else {
            "   "
        };
        let _ = writeln!(out, " {n:>3} | {mark} {}", line.trim_end_matches('\r'));
    }
    out.push_str("--------------------\n");
}
