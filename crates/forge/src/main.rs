//! The `forge` command line: flags parsed by clap, work done by the library
//! crates, results printed here, errors mapped to docker's exit codes (125 for
//! forge's own failures).

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "forge",
    version,
    about = "Build, store and run OCI container images from Dockerfiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a Dockerfile's parse tree (BuildKit's dump format, or JSON)
    Parse(commands::parse::Args),
    /// Lint a Dockerfile with BuildKit's build checks
    Check(commands::check::Args),
}

/// Exit status for failures of forge itself, as docker's.
pub const EXIT_FORGE_ERROR: u8 = 125;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => commands::parse::run(args),
        Command::Check(args) => commands::check::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`forge parse | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("forge: {err:#}");
            ExitCode::from(EXIT_FORGE_ERROR)
        }
    }
}
